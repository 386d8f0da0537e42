"""Idempotency-Key: one row per (tenant, user, key) holding the first request's fingerprint
and, once it answered, its response; and the function that purges expired rows.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

from adx_core.db.migration_role import app_role

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CURRENT_TENANT = "NULLIF(current_setting('app.tenant_id', true), '')::uuid"
TABLE = "idempotency_records"


def upgrade() -> None:
    role = app_role()
    op.create_table(
        TABLE,
        # No foreign key to tenants: a row is scoped by the token's tenant claim, and it
        # must never turn a request into a 500 (the purge removes it in time either way).
        sa.Column("tenant_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("user_id", sa.String(255), primary_key=True),
        sa.Column("key", sa.String(200), primary_key=True),
        # Which request holds the row: only it may store its response or release the key.
        sa.Column("attempt", UUID(as_uuid=True), nullable=False),
        sa.Column("method", sa.String(10), nullable=False),
        sa.Column("route", sa.String(255), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        # The response; NULL while the first request is still running.
        sa.Column("status", sa.SmallInteger),
        sa.Column("headers", JSONB, nullable=False, server_default=sa.text("'{}'")),
        sa.Column("body", sa.LargeBinary),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_idempotency_records_expires", TABLE, ["expires_at"])
    op.execute(f"ALTER TABLE {TABLE} ENABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {TABLE} FORCE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY tenant_isolation ON {TABLE} USING (tenant_id = {CURRENT_TENANT}) "
        f"WITH CHECK (tenant_id = {CURRENT_TENANT})"
    )
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {TABLE} TO {role}")

    # The purge crosses tenants, which the app role never can: this function (run as the
    # owner, and only while it runs) deletes expired rows and nothing else, a batch at a
    # time so that no transaction holds many locks. The API calls it periodically.
    op.execute(
        f"CREATE POLICY expiry_purge ON {TABLE} FOR ALL TO CURRENT_USER "
        "USING (current_setting('adx.idempotency_purge', true) = 'on')"
    )
    op.execute(
        f"""
        CREATE FUNCTION adx_purge_idempotency_records(p_limit integer) RETURNS integer
        LANGUAGE sql VOLATILE SECURITY DEFINER
        SET search_path = pg_catalog, public
        SET adx.idempotency_purge = 'on'
        AS $$
            WITH gone AS (
                DELETE FROM public.{TABLE} WHERE ctid IN (
                    SELECT ctid FROM public.{TABLE} WHERE expires_at <= now()
                    LIMIT greatest(1, least(p_limit, 10000))
                )
                RETURNING 1
            )
            SELECT count(*)::integer FROM gone
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION adx_purge_idempotency_records(integer) FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION adx_purge_idempotency_records(integer) TO {role}")


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS adx_purge_idempotency_records(integer)")
    op.drop_table(TABLE)
