"""Search attributes every ADX workflow sets, so the API and the Temporal UI can find it."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

TENANT_ID = SearchAttributeKey.for_keyword("TenantId")
STEP = SearchAttributeKey.for_keyword("Step")
CORRELATION_ID = SearchAttributeKey.for_keyword("CorrelationId")
VARIANT = SearchAttributeKey.for_keyword("Variant")

ALL: tuple[SearchAttributeKey[str], ...] = (TENANT_ID, STEP, CORRELATION_ID, VARIANT)
