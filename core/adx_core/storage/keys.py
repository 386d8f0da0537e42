"""Storage keys. Only validated ids go into a key, so no input can climb out of a prefix."""

from __future__ import annotations

import uuid


def tenant_prefix(tenant_id: str | uuid.UUID) -> str:
    """``tenants/<uuid>/``. Raises ``ValueError`` for anything that is not a UUID."""
    return f"tenants/{uuid.UUID(str(tenant_id))}/"
