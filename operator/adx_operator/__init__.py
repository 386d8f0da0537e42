"""The kopf operator for Tenant and StorageMigration resources (built in its own issue)."""
