"""PostgreSQL: typed models, the async engine, tenant-scoped sessions and repositories."""
