"""Storage providers: where each tenant's and each file's bytes live, and the bookkeeping
of file_migration_workflow (a row per migration, a row per object it copied).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CURRENT_TENANT = "NULLIF(current_setting('app.tenant_id', true), '')::uuid"
NEW_TABLES = ("storage_migrations", "storage_migration_items")
PROVIDERS = "('local', 's3', 'gcs', 'azure')"


def _app_role() -> str:
    role = op.get_context().config.attributes.get("app_role", "adx_app")  # type: ignore[union-attr]
    if not isinstance(role, str) or not role.replace("_", "").isalnum():
        raise ValueError(f"unsafe application role name {role!r}")
    return role


def upgrade() -> None:
    role = _app_role()
    # Existing rows were written by the local provider, the only one there was.
    for table in ("tenants", "files"):
        op.add_column(
            table,
            sa.Column(
                "storage_provider",
                sa.String(16),
                sa.CheckConstraint(
                    f"storage_provider IN {PROVIDERS}", name="storage_provider_known"
                ),
                nullable=False,
                server_default="local",
            ),
        )
    op.create_index("ix_files_tenant_key", "files", ["tenant_id", "storage_key"])

    op.create_table(
        "storage_migrations",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column(
            "tenant_id",
            UUID(as_uuid=True),
            sa.ForeignKey("tenants.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("source", sa.String(16), nullable=False),
        # The primary target first, then the fallbacks, in order.
        sa.Column("targets", JSONB, nullable=False),
        sa.Column("target_used", sa.String(16)),
        sa.Column("prefix", sa.String(1024), nullable=False),
        sa.Column("delete_source", sa.Boolean, nullable=False),
        sa.Column(
            "status",
            sa.String(16),
            sa.CheckConstraint(
                "status IN ('running', 'committed', 'rolled_back', 'failed')", name="status_known"
            ),
            nullable=False,
        ),
        sa.Column("result", JSONB),
        sa.Column("failure", sa.Text),
        sa.Column("requested_by", UUID(as_uuid=True)),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
    )
    op.create_index(
        "ix_storage_migrations_tenant", "storage_migrations", ["tenant_id", "created_at"]
    )
    # One row per object a migration wrote (or found already written) on a target. Written
    # as 'copying' before the bytes move and 'verified' after the checksum matched: a crash
    # in between leaves a row that says the copy is ours and must be redone, not trusted.
    op.create_table(
        "storage_migration_items",
        sa.Column(
            "migration_id",
            UUID(as_uuid=True),
            sa.ForeignKey("storage_migrations.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("target", sa.String(16), primary_key=True),
        sa.Column("key", sa.String(1024), primary_key=True),
        sa.Column(
            "tenant_id",
            UUID(as_uuid=True),
            sa.ForeignKey("tenants.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64)),
        # False when the target already held these bytes: a rollback must leave them.
        sa.Column("created", sa.Boolean, nullable=False),
        sa.Column(
            "state",
            sa.String(16),
            sa.CheckConstraint("state IN ('copying', 'verified')", name="state_known"),
            nullable=False,
        ),
    )

    for table in NEW_TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_isolation ON {table} USING (tenant_id = {CURRENT_TENANT}) "
            f"WITH CHECK (tenant_id = {CURRENT_TENANT})"
        )
        op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {role}")


def downgrade() -> None:
    for table in reversed(NEW_TABLES):
        op.drop_table(table)
    op.drop_index("ix_files_tenant_key", "files")
    for table in ("files", "tenants"):
        op.drop_column(table, "storage_provider")
