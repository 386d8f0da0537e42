"""The file service: upload state and processing results on files, permissions on files,
shares (grants and links), groups, and resumable upload sessions.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

from adx_core.db.migration_role import app_role

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CURRENT_TENANT = "NULLIF(current_setting('app.tenant_id', true), '')::uuid"
NEW_TABLES = (
    "groups",
    "group_members",
    "file_shares",
    "file_permissions",
    "upload_sessions",
    "upload_parts",
)


def _tenant() -> sa.Column[object]:
    return sa.Column(
        "tenant_id",
        UUID(as_uuid=True),
        sa.ForeignKey("tenants.id", ondelete="CASCADE"),
        nullable=False,
    )


def _created() -> sa.Column[object]:
    return sa.Column(
        "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
    )


def upgrade() -> None:
    role = app_role()
    for name, kind, default in (
        ("metadata", JSONB, "{}"),
        ("thumbnails", JSONB, "[]"),
        # Each optional step's state: {"thumbnails": "done", "analysis": "pending", ...}
        ("processing", JSONB, "{}"),
    ):
        op.add_column(
            "files", sa.Column(name, kind, nullable=False, server_default=sa.text(f"'{default}'"))
        )
    op.add_column("files", sa.Column("analysis", JSONB))
    # Why an upload was rejected: {"reason": "infected", "detail": "<signature>"}.
    op.add_column("files", sa.Column("rejection", JSONB))
    op.create_check_constraint(
        "status_known", "files", "status IN ('scanning', 'ready', 'rejected', 'deleted')"
    )

    op.create_table(
        "groups",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        _tenant(),
        sa.Column("name", sa.String(100), nullable=False),
        _created(),
        sa.UniqueConstraint("tenant_id", "name", name="uq_groups_tenant_name"),
    )
    op.create_table(
        "group_members",
        sa.Column(
            "group_id",
            UUID(as_uuid=True),
            sa.ForeignKey("groups.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "user_id",
            UUID(as_uuid=True),
            sa.ForeignKey("users.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        _tenant(),
    )
    op.create_table(
        "file_shares",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        _tenant(),
        sa.Column(
            "file_id",
            UUID(as_uuid=True),
            sa.ForeignKey("files.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "kind",
            sa.String(8),
            sa.CheckConstraint("kind IN ('grant', 'link')", name="kind_known"),
            nullable=False,
        ),
        sa.Column(
            "role",
            sa.String(8),
            sa.CheckConstraint("role IN ('viewer', 'editor')", name="role_known"),
            nullable=False,
        ),
        # A link's token and password are kept only as hashes.
        sa.Column("token_hash", sa.String(64), unique=True),
        sa.Column("password_hash", sa.String(255)),
        sa.Column("expires_at", sa.DateTime(timezone=True)),
        sa.Column("created_by", UUID(as_uuid=True)),
        sa.Column("grantees", JSONB, nullable=False, server_default=sa.text("'[]'")),
        _created(),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("(kind = 'link') = (token_hash IS NOT NULL)", name="link_has_token"),
    )
    op.create_index("ix_file_shares_file", "file_shares", ["tenant_id", "file_id"])
    # Who may do what with a file: its owner, and each grant of a share.
    op.create_table(
        "file_permissions",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        _tenant(),
        sa.Column(
            "file_id",
            UUID(as_uuid=True),
            sa.ForeignKey("files.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "principal_kind",
            sa.String(8),
            sa.CheckConstraint("principal_kind IN ('user', 'group')", name="principal_known"),
            nullable=False,
        ),
        sa.Column("principal_id", UUID(as_uuid=True), nullable=False),
        sa.Column(
            "role",
            sa.String(8),
            sa.CheckConstraint("role IN ('owner', 'editor', 'viewer')", name="role_known"),
            nullable=False,
        ),
        sa.Column(
            "share_id", UUID(as_uuid=True), sa.ForeignKey("file_shares.id", ondelete="CASCADE")
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True)),
        _created(),
    )
    op.create_index("ix_file_permissions_file", "file_permissions", ["file_id"])
    op.create_index(
        "ix_file_permissions_principal", "file_permissions", ["tenant_id", "principal_id"]
    )
    op.create_table(
        "upload_sessions",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        _tenant(),
        sa.Column("owner_id", UUID(as_uuid=True), nullable=False),
        sa.Column("file_id", UUID(as_uuid=True), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("content_type", sa.String(255), nullable=False),
        sa.Column("length", sa.BigInteger, nullable=False),
        sa.Column("received", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("provider", sa.String(16), nullable=False),
        sa.Column(
            "status",
            sa.String(12),
            sa.CheckConstraint("status IN ('open', 'complete', 'cancelled')", name="status_known"),
            nullable=False,
        ),
        sa.Column("operation_id", sa.String(100)),
        _created(),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("received >= 0 AND received <= length", name="received_in_range"),
    )
    op.create_table(
        "upload_parts",
        sa.Column(
            "upload_id",
            UUID(as_uuid=True),
            sa.ForeignKey("upload_sessions.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("offset", sa.BigInteger, primary_key=True),
        _tenant(),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("key", sa.String(1024), nullable=False),
    )

    for table in NEW_TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_isolation ON {table} USING (tenant_id = {CURRENT_TENANT}) "
            f"WITH CHECK (tenant_id = {CURRENT_TENANT})"
        )
        op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {role}")

    # GET /s/{token} has no tenant context: this finds the tenant of a link from its token
    # hash, and nothing else. RLS still guards every row read after it.
    op.execute(
        "CREATE POLICY token_lookup ON file_shares FOR SELECT TO CURRENT_USER "
        "USING (current_setting('adx.share_lookup', true) = 'on')"
    )
    op.execute(
        """
        CREATE FUNCTION adx_tenant_of_share_token(p_hash text) RETURNS uuid
        LANGUAGE sql STABLE SECURITY DEFINER
        SET search_path = pg_catalog, public
        SET adx.share_lookup = 'on'
        AS $$ SELECT tenant_id FROM public.file_shares WHERE token_hash = p_hash $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION adx_tenant_of_share_token(text) FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION adx_tenant_of_share_token(text) TO {role}")


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS adx_tenant_of_share_token(text)")
    for table in reversed(NEW_TABLES):
        op.drop_table(table)
    op.drop_constraint("status_known", "files")
    for name in ("rejection", "analysis", "processing", "thumbnails", "metadata"):
        op.drop_column("files", name)
