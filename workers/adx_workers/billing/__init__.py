"""Billing: tenant_upgrade_workflow and its child payment_workflow (tenants task queue)."""
