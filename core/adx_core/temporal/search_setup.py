"""Register ADX's search attributes in a Temporal namespace, once, before anything starts.

Every workflow is started with them (TenantId scopes every lookup), so a namespace without them
refuses every start. Self-hosted Temporal adds them through the OperatorService; Temporal Cloud
does not offer that call (its attributes are added with tcld or the Cloud API).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.service import RPCError, RPCStatusCode

# How long an added attribute may take to show in the namespace's list (with Elasticsearch
# the server adds it through a system workflow).
VISIBLE_WITHIN = 30.0


class SearchAttributeSetupError(Exception):
    pass


class SearchAttributeConflictError(SearchAttributeSetupError):
    pass


def wanted(keys: tuple[SearchAttributeKey[Any], ...]) -> dict[str, IndexedValueType.ValueType]:
    return {key.name: IndexedValueType.ValueType(key.indexed_value_type) for key in keys}


def type_name(value: IndexedValueType.ValueType) -> str:
    return IndexedValueType.Name(value).removeprefix("INDEXED_VALUE_TYPE_").title()


async def existing(client: Client, namespace: str) -> dict[str, IndexedValueType.ValueType]:
    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    return {**listed.system_attributes, **listed.custom_attributes}


def refuse_conflicts(
    namespace: str,
    want: Mapping[str, IndexedValueType.ValueType],
    have: Mapping[str, IndexedValueType.ValueType],
) -> None:
    problems = [
        f"{name} is {type_name(have[name])}, ADX needs {type_name(kind)}"
        for name, kind in want.items()
        if name in have and have[name] != kind
    ]
    if problems:
        raise SearchAttributeConflictError(f"in namespace {namespace}: {'; '.join(problems)}")


async def ensure_search_attributes(
    client: Client, namespace: str, want: Mapping[str, IndexedValueType.ValueType]
) -> list[str]:
    """Add the attributes of ``want`` that ``namespace`` lacks; return their names. Raises
    SearchAttributeConflictError when one exists with another type (nothing is changed)."""
    have = await existing(client, namespace)
    refuse_conflicts(namespace, want, have)
    missing = {name: kind for name, kind in want.items() if name not in have}
    if not missing:
        return []
    try:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
        )
    except RPCError as err:
        # Another installer added them meanwhile: the list below says whether all are there.
        if err.status != RPCStatusCode.ALREADY_EXISTS:
            raise
    await _until_listed(client, namespace, want)
    return sorted(missing)


async def _until_listed(
    client: Client, namespace: str, want: Mapping[str, IndexedValueType.ValueType]
) -> None:
    have: dict[str, IndexedValueType.ValueType] = {}
    try:
        async with asyncio.timeout(VISIBLE_WITHIN):
            while True:
                have = await existing(client, namespace)
                refuse_conflicts(namespace, want, have)
                if all(name in have for name in want):
                    return
                await asyncio.sleep(0.5)
    except TimeoutError:
        missing = sorted(name for name in want if name not in have)
        raise SearchAttributeSetupError(
            f"in namespace {namespace}: {', '.join(missing)} still not listed "
            f"{VISIBLE_WITHIN:g} s after they were added"
        ) from None
