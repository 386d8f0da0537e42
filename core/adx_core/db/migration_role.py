"""The application role's name inside a migration, for its GRANTs.

``adx migrate`` passes it in the Alembic config (``Settings.app_role``). It is spliced into
DDL, where bind parameters cannot go, so only a plain identifier is accepted.
"""

from __future__ import annotations

from alembic import op


def app_role() -> str:
    role = op.get_context().config.attributes.get("app_role", "adx_app")  # type: ignore[union-attr]
    if not isinstance(role, str) or not role.replace("_", "").isalnum():
        raise ValueError(f"unsafe application role name {role!r}")
    return role
