"""The application role may read the schema revision (alembic_version), so that a worker
build can check, before it takes traffic, that the database carries the schema its code
was written for. Reading a revision number reveals nothing a tenant owns; writing it stays
the owner's alone.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from adx_core.db.migration_role import app_role

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(f"GRANT SELECT ON alembic_version TO {app_role()}")


def downgrade() -> None:
    op.execute(f"REVOKE ALL ON alembic_version FROM {app_role()}")
