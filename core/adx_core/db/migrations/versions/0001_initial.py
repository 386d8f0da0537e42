"""Initial schema: tenants, users, memberships, files, audit log; the app role and RLS.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PLATFORM_TENANT_ID = "00000000-0000-4000-8000-000000000000"

# The tenant of the current transaction, NULL when none is set. NULLIF matters: once a
# pooled connection has seen the setting, an unset value reads as '' rather than NULL.
CURRENT_TENANT = "NULLIF(current_setting('app.tenant_id', true), '')::uuid"


def _app_role() -> str:
    role = op.get_context().config.attributes.get("app_role", "adx_app")  # type: ignore[union-attr]
    if not isinstance(role, str) or not role.replace("_", "").isalnum():
        raise ValueError(f"unsafe application role name {role!r}")
    return role


def _timestamps() -> list[sa.Column[object]]:
    return [
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
    ]


def upgrade() -> None:
    role = _app_role()
    op.execute(
        f"""
        DO $$ BEGIN
          IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
            CREATE ROLE {role} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
          END IF;
        END $$;
        """
    )

    op.create_table(
        "tenants",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("slug", sa.String(40), nullable=False, unique=True),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("plan", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("storage_prefix", sa.String(200), nullable=False),
        *_timestamps(),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint("slug ~ '^[a-z][a-z0-9-]{1,38}[a-z0-9]$'", name="slug_format"),
        sa.CheckConstraint("plan IN ('free', 'pro', 'enterprise')", name="plan_known"),
        sa.CheckConstraint(
            "status IN ('provisioning', 'active', 'failed', 'suspended', 'deprovisioned')",
            name="status_known",
        ),
    )
    op.create_table(
        "users",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("email", sa.String(320), nullable=False, unique=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("status", sa.String(20), nullable=False, server_default="active"),
        *_timestamps(),
    )
    op.create_table(
        "memberships",
        sa.Column(
            "tenant_id",
            UUID(as_uuid=True),
            sa.ForeignKey("tenants.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "user_id",
            UUID(as_uuid=True),
            sa.ForeignKey("users.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("role", sa.String(20), nullable=False),
        *_timestamps(),
        sa.CheckConstraint(
            "role IN ('platform-admin', 'tenant-admin', 'member', 'viewer')", name="role_known"
        ),
    )
    op.create_table(
        "files",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column(
            "tenant_id",
            UUID(as_uuid=True),
            sa.ForeignKey("tenants.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("content_type", sa.String(255), nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("checksum_sha256", sa.String(64)),
        sa.Column("storage_key", sa.String(1024), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("created_by", UUID(as_uuid=True)),
        *_timestamps(),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
    )
    op.create_index("ix_files_tenant_created", "files", ["tenant_id", "created_at"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column(
            "tenant_id",
            UUID(as_uuid=True),
            sa.ForeignKey("tenants.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("actor_id", sa.String(64)),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("subject", sa.String(200)),
        sa.Column("correlation_id", sa.String(128)),
        sa.Column("details", JSONB, nullable=False, server_default="{}"),
        *_timestamps(),
    )
    op.create_index("ix_audit_tenant_created", "audit_log", ["tenant_id", "created_at"])

    # Row-level security. FORCE makes it apply to the table owner too, so a mistake in
    # role setup fails closed instead of silently seeing everything.
    op.execute("ALTER TABLE tenants ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE tenants FORCE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY tenant_isolation ON tenants USING (id = {CURRENT_TENANT}) "
        f"WITH CHECK (id = {CURRENT_TENANT})"
    )
    for table in ("memberships", "files", "audit_log"):
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_isolation ON {table} USING (tenant_id = {CURRENT_TENANT}) "
            f"WITH CHECK (tenant_id = {CURRENT_TENANT})"
        )
    # A user is visible to a tenant that they belong to. Creating the identity is global
    # (the membership that follows is what is tenant-scoped).
    op.execute("ALTER TABLE users ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE users FORCE ROW LEVEL SECURITY")
    member_of_current = (
        "EXISTS (SELECT 1 FROM memberships m WHERE m.user_id = users.id "
        f"AND m.tenant_id = {CURRENT_TENANT})"
    )
    op.execute(f"CREATE POLICY member_read ON users FOR SELECT USING ({member_of_current})")
    op.execute(f"CREATE POLICY member_update ON users FOR UPDATE USING ({member_of_current})")
    op.execute(f"CREATE POLICY member_delete ON users FOR DELETE USING ({member_of_current})")
    op.execute("CREATE POLICY identity_insert ON users FOR INSERT WITH CHECK (true)")

    # Slug lookup crosses tenants by design (login, tokens, uniqueness checks). It is the
    # one hole in RLS, so it returns only an id and nothing else.
    op.execute(
        """
        CREATE FUNCTION adx_tenant_id_for_slug(p_slug text) RETURNS uuid
        LANGUAGE sql STABLE SECURITY DEFINER
        SET search_path = pg_catalog, public
        SET adx.slug_lookup = 'on'
        AS $$ SELECT id FROM public.tenants WHERE slug = p_slug $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION adx_tenant_id_for_slug(text) FROM PUBLIC")
    # FORCE applies RLS to the owner too, so the function (running as the owner, with
    # adx.slug_lookup set by its SET clause) needs a policy of its own.
    op.execute(
        "CREATE POLICY slug_lookup ON tenants FOR SELECT TO CURRENT_USER "
        "USING (current_setting('adx.slug_lookup', true) = 'on')"
    )

    op.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}")
    op.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}")
    op.execute(f"GRANT EXECUTE ON FUNCTION adx_tenant_id_for_slug(text) TO {role}")
    op.execute(f"REVOKE ALL ON alembic_version FROM {role}")

    # The platform tenant: where platform operators' memberships and audit entries live.
    op.execute(f"SELECT set_config('app.tenant_id', '{PLATFORM_TENANT_ID}', true)")
    op.execute(
        f"""
        INSERT INTO tenants (id, slug, display_name, plan, status, storage_prefix)
        VALUES ('{PLATFORM_TENANT_ID}', 'platform', 'Platform operators', 'enterprise',
                'active', 'tenants/{PLATFORM_TENANT_ID}/')
        """
    )


def downgrade() -> None:
    role = _app_role()
    op.execute("DROP FUNCTION IF EXISTS adx_tenant_id_for_slug(text)")
    for table in ("audit_log", "files", "memberships", "users", "tenants"):
        op.drop_table(table)
    op.execute(f"REVOKE ALL ON SCHEMA public FROM {role}")
