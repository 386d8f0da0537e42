"""Files: idempotent storage activities and file_migration_workflow (task queue ``files``)."""
