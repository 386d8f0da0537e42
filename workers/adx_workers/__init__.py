"""ADX workers: one package per domain (tenants, files, users), each with workflows.py,
activities.py and worker.py. Every worker process is dual-mode: a Temporal worker plus a
small HTTP server for health, readiness and metrics."""
