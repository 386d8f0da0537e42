"""Tenant service: quotas, role permissions, usage, alerts, payments, sessions, invitations.

Also: a failed or deprovisioned tenant keeps its row (with the failure recorded) but no
longer holds its slug; platform-scoped sessions may read every tenant row; and two narrow
cross-tenant lookups (a user by e-mail, a user's memberships).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

from adx_core.db.migration_role import app_role

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PLATFORM_TENANT_ID = "00000000-0000-4000-8000-000000000000"
CURRENT_TENANT = "NULLIF(current_setting('app.tenant_id', true), '')::uuid"
LIVE = "status NOT IN ('failed', 'deprovisioned')"
NEW_TABLES = (
    "tenant_quotas",
    "tenant_role_permissions",
    "tenant_usage",
    "tenant_alerts",
    "payments",
    "auth_sessions",
    "invitations",
    "notifications_sent",
)


def _tenant_fk(primary_key: bool = False) -> sa.Column[object]:
    return sa.Column(
        "tenant_id",
        UUID(as_uuid=True),
        sa.ForeignKey("tenants.id", ondelete="CASCADE"),
        primary_key=primary_key,
        nullable=False,
    )


def _user_fk() -> sa.Column[object]:
    return sa.Column(
        "user_id", UUID(as_uuid=True), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )


def _now(name: str = "created_at") -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False)


def upgrade() -> None:
    role = app_role()

    # A failed or removed tenant stays on record, and its slug becomes free again.
    op.add_column("tenants", sa.Column("failure", JSONB))
    op.add_column(
        "tenants", sa.Column("settings", JSONB, nullable=False, server_default=sa.text("'{}'"))
    )
    op.drop_constraint("tenants_slug_key", "tenants", type_="unique")
    op.create_index(
        "uq_tenants_live_slug", "tenants", ["slug"], unique=True, postgresql_where=sa.text(LIVE)
    )
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION adx_tenant_id_for_slug(p_slug text) RETURNS uuid
        LANGUAGE sql STABLE SECURITY DEFINER
        SET search_path = pg_catalog, public
        SET adx.slug_lookup = 'on'
        AS $$ SELECT id FROM public.tenants WHERE slug = p_slug AND {LIVE} $$
        """
    )
    # Platform operators act in the platform tenant's scope; there they may read (not
    # change) every tenant's row, to list and inspect tenants. Tenant data stays scoped.
    op.execute(
        "CREATE POLICY platform_read ON tenants FOR SELECT "
        f"USING ({CURRENT_TENANT} = '{PLATFORM_TENANT_ID}'::uuid)"
    )

    op.add_column(
        "users",
        sa.Column(
            "active_tenant_id", UUID(as_uuid=True), sa.ForeignKey("tenants.id", ondelete="SET NULL")
        ),
    )

    op.create_table(
        "tenant_quotas",
        _tenant_fk(primary_key=True),
        sa.Column("storage_bytes", sa.BigInteger, nullable=False),
        sa.Column("files", sa.BigInteger, nullable=False),
        sa.Column("users", sa.BigInteger, nullable=False),
        sa.Column("db_rows", sa.BigInteger, nullable=False),
        sa.Column("file_bytes", sa.BigInteger, nullable=False),
        sa.Column("features", JSONB, nullable=False, server_default=sa.text("'[]'")),
        sa.Column("overrides", JSONB, nullable=False, server_default=sa.text("'{}'")),
        _now("updated_at"),
    )
    op.create_table(
        "tenant_role_permissions",
        _tenant_fk(primary_key=True),
        sa.Column("role", sa.String(20), primary_key=True),
        sa.Column("permission", sa.String(64), primary_key=True),
        sa.CheckConstraint("role IN ('tenant-admin', 'member', 'viewer')", name="role_known"),
    )
    op.create_table(
        "tenant_usage",
        _tenant_fk(primary_key=True),
        sa.Column("storage_bytes", sa.BigInteger, nullable=False),
        sa.Column("files", sa.BigInteger, nullable=False),
        sa.Column("users", sa.BigInteger, nullable=False),
        sa.Column("db_rows", sa.BigInteger, nullable=False),
        sa.Column("sampled_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "tenant_alerts",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        _tenant_fk(),
        # Derived from the monitoring workflow and its crossing, so a retried activity
        # cannot record the same alert twice.
        sa.Column("key", sa.String(200), nullable=False, unique=True),
        sa.Column("resource", sa.String(32), nullable=False),
        sa.Column("threshold_percent", sa.Integer, nullable=False),
        sa.Column("usage", sa.BigInteger, nullable=False),
        sa.Column("quota", sa.BigInteger, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        _now(),
        sa.CheckConstraint("state IN ('raised', 'cleared')", name="state_known"),
    )
    op.create_index("ix_tenant_alerts_tenant", "tenant_alerts", ["tenant_id", "created_at"])
    op.create_table(
        "payments",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        _tenant_fk(),
        # Derived from the workflow id: the record that makes payment exactly-once even
        # with a provider that ignores Idempotency-Key.
        sa.Column("idempotency_key", sa.String(200), nullable=False, unique=True),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("intent_id", sa.String(255)),
        sa.Column("amount_cents", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("failure", sa.String(500)),
        _now(),
        _now("updated_at"),
        sa.CheckConstraint(
            "status IN ('created', 'authorized', 'captured', 'refunded', 'cancelled', 'declined')",
            name="status_known",
        ),
        sa.CheckConstraint("amount_cents >= 0", name="amount_not_negative"),
    )
    op.create_table(
        "auth_sessions",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        _user_fk(),
        _tenant_fk(),
        _now(),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_auth_sessions_user", "auth_sessions", ["tenant_id", "user_id"])
    op.create_table(
        "invitations",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        _tenant_fk(),
        _user_fk(),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True)),
        _now(),
    )
    op.create_table(
        "notifications_sent",
        # The notification's idempotency key: one send per key, however often retried.
        sa.Column("key", sa.String(200), primary_key=True),
        _tenant_fk(),
        sa.Column("template", sa.String(64), nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        _now("sent_at"),
    )

    for table in NEW_TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_isolation ON {table} USING (tenant_id = {CURRENT_TENANT}) "
            f"WITH CHECK (tenant_id = {CURRENT_TENANT})"
        )
        op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {role}")
    op.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}")

    # Cross-tenant lookups, each returning as little as its caller needs. An identity is
    # global (one person, several tenants), but RLS shows a tenant only its own members.
    op.execute(
        """
        CREATE FUNCTION adx_user_id_for_email(p_email text) RETURNS uuid
        LANGUAGE sql STABLE SECURITY DEFINER
        SET search_path = pg_catalog, public
        SET adx.identity_lookup = 'on'
        AS $$ SELECT id FROM public.users WHERE email = lower(p_email) $$
        """
    )
    # Creating an identity may meet one that exists in another tenant (the same e-mail):
    # INSERT ... ON CONFLICT needs to see the conflicting row, which RLS hides. This
    # returns the id of the identity for the e-mail, creating it under ``p_id`` if new.
    op.execute(
        """
        CREATE FUNCTION adx_ensure_identity(p_id uuid, p_email text, p_name text) RETURNS uuid
        LANGUAGE plpgsql VOLATILE SECURITY DEFINER
        SET search_path = pg_catalog, public
        SET adx.identity_lookup = 'on'
        AS $$
        DECLARE
          found uuid;
        BEGIN
          INSERT INTO public.users (id, email, name) VALUES (p_id, lower(p_email), p_name)
          ON CONFLICT (email) DO NOTHING;
          SELECT id INTO found FROM public.users WHERE email = lower(p_email);
          RETURN found;
        END
        $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION adx_memberships_of_user(p_user uuid)
        RETURNS TABLE (tenant_id uuid, slug text, display_name text, status text, role text)
        LANGUAGE sql STABLE SECURITY DEFINER
        SET search_path = pg_catalog, public
        SET adx.identity_lookup = 'on'
        AS $$
          SELECT t.id, t.slug::text, t.display_name::text, t.status::text, m.role::text
          FROM public.memberships m JOIN public.tenants t ON t.id = m.tenant_id
          WHERE m.user_id = p_user AND t.status NOT IN ('failed', 'deprovisioned')
          ORDER BY t.slug
        $$
        """
    )
    for name, table in (
        ("identity_lookup", "users"),
        ("identity_lookup", "memberships"),
        ("identity_lookup", "tenants"),
    ):
        op.execute(
            f"CREATE POLICY {name} ON {table} FOR SELECT TO CURRENT_USER "
            "USING (current_setting('adx.identity_lookup', true) = 'on')"
        )
    for function in (
        "adx_user_id_for_email(text)",
        "adx_memberships_of_user(uuid)",
        "adx_ensure_identity(uuid, text, text)",
    ):
        op.execute(f"REVOKE ALL ON FUNCTION {function} FROM PUBLIC")
        op.execute(f"GRANT EXECUTE ON FUNCTION {function} TO {role}")


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS adx_ensure_identity(uuid, text, text)")
    op.execute("DROP FUNCTION IF EXISTS adx_memberships_of_user(uuid)")
    op.execute("DROP FUNCTION IF EXISTS adx_user_id_for_email(text)")
    for table in ("users", "memberships", "tenants"):
        op.execute(f"DROP POLICY IF EXISTS identity_lookup ON {table}")
    for table in reversed(NEW_TABLES):
        op.drop_table(table)
    op.drop_column("users", "active_tenant_id")
    op.execute("DROP POLICY IF EXISTS platform_read ON tenants")
    op.execute(
        """
        CREATE OR REPLACE FUNCTION adx_tenant_id_for_slug(p_slug text) RETURNS uuid
        LANGUAGE sql STABLE SECURITY DEFINER
        SET search_path = pg_catalog, public
        SET adx.slug_lookup = 'on'
        AS $$ SELECT id FROM public.tenants WHERE slug = p_slug $$
        """
    )
    op.drop_index("uq_tenants_live_slug", "tenants")
    op.create_unique_constraint("tenants_slug_key", "tenants", ["slug"])
    op.drop_column("tenants", "settings")
    op.drop_column("tenants", "failure")
