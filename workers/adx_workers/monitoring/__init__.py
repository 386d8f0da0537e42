"""Tenant monitoring: tenant_monitoring_workflow and its activities (tenants task queue)."""
