"""Search attributes every ADX workflow sets, so the API and the Temporal UI can find it."""

from __future__ import annotations

from typing import Any

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

TENANT_ID = SearchAttributeKey.for_keyword("TenantId")
STEP = SearchAttributeKey.for_keyword("Step")
CORRELATION_ID = SearchAttributeKey.for_keyword("CorrelationId")
VARIANT = SearchAttributeKey.for_keyword("Variant")
# How far a long operation (a file migration) has got, 0 to 100: visibility queries such as
# `ProgressPercent < 50` and the UI's search attribute list show it.
PERCENT = SearchAttributeKey.for_int("ProgressPercent")

KEYWORDS: tuple[SearchAttributeKey[str], ...] = (TENANT_ID, STEP, CORRELATION_ID, VARIANT)
ALL: tuple[SearchAttributeKey[Any], ...] = (*KEYWORDS, PERCENT)


def registration() -> dict[str, str]:
    """Each attribute's name and type as ``temporal server start-dev --search-attribute``
    takes them."""
    types = {str: "Keyword", int: "Int"}
    return {key.name: types[key.origin_value_type] for key in ALL}


def start_attributes(owner_tenant_id: str, correlation_id: str) -> TypedSearchAttributes:
    """What every operation is started with, by the API or the operator: the owning tenant
    (checked on every lookup), the correlation id, and the first step."""
    return TypedSearchAttributes(
        [
            SearchAttributePair(TENANT_ID, owner_tenant_id),
            SearchAttributePair(CORRELATION_ID, correlation_id),
            SearchAttributePair(STEP, "pending"),
            SearchAttributePair(VARIANT, "default"),
        ]
    )
