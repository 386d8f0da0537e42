"""Shared foundations of ADX Core: settings, logging, telemetry, auth context, the Temporal
client factory, contracts, database and storage. Nothing here imports the API, the
workers or the operator."""
