"""tenant_monitoring_workflow: under the time-skipping test server and the real dev server."""
