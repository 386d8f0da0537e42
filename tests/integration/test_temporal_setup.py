"""`adx temporal setup` (the chart's pre-install hook) on the real Temporal dev server: a fresh
namespace refuses ADX's workflow starts until the command has added the search attributes;
a second run changes nothing; an attribute of another type is refused and nothing is added."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from google.protobuf.duration_pb2 import Duration
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.api.workflowservice.v1 import (
    ListWorkflowExecutionsRequest,
    RegisterNamespaceRequest,
)
from temporalio.client import Client
from temporalio.service import RPCError

from adx_core.contracts import search
from adx_core.contracts.tenants import TENANT_PROVISIONING_WORKFLOW
from adx_core.settings import Settings
from adx_core.temporal.search_setup import existing
from tests.integration.test_worker_versioning import adx


async def fresh_namespace(client: Client) -> str:
    """A namespace of its own, once the server's namespace cache serves it."""
    name = f"setup-{uuid.uuid4().hex[:10]}"
    await client.workflow_service.register_namespace(
        RegisterNamespaceRequest(
            namespace=name, workflow_execution_retention_period=Duration(seconds=86400)
        )
    )
    for _ in range(100):
        try:
            await client.workflow_service.list_workflow_executions(
                ListWorkflowExecutionsRequest(namespace=name)
            )
            return name
        except RPCError:
            await asyncio.sleep(0.2)
    raise AssertionError(f"namespace {name} never became usable")


async def start_like_the_api(client: Client, namespace: str, settings: Settings) -> None:
    """Start a workflow the way the API and the operator do: with ADX's search attributes."""
    scoped = Client(client.service_client, namespace=namespace)
    await scoped.start_workflow(
        TENANT_PROVISIONING_WORKFLOW,
        id=f"setup-check-{uuid.uuid4().hex[:8]}",
        task_queue=settings.task_queue("tenants"),
        search_attributes=search.start_attributes(str(uuid.uuid4()), "setup-check"),
    )


async def test_setup_adds_the_missing_attributes_once(
    settings: Settings, temporal_client: Client
) -> None:
    namespace = await fresh_namespace(temporal_client)
    with pytest.raises(RPCError, match="no mapping defined for search attribute"):
        await start_like_the_api(temporal_client, namespace, settings)

    in_namespace = settings.model_copy(update={"temporal_namespace": namespace})
    first = await adx(in_namespace, "temporal", "setup")
    assert first.exit_code == 0, first.output
    names = sorted(search.registration())
    assert f"{namespace}: added search attributes {', '.join(names)}" in first.output
    have = await existing(temporal_client, namespace)
    assert have["ProgressPercent"] == IndexedValueType.INDEXED_VALUE_TYPE_INT
    assert have["TenantId"] == IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
    await start_like_the_api(temporal_client, namespace, settings)

    again = await adx(in_namespace, "temporal", "setup")
    assert again.exit_code == 0, again.output
    assert f"{namespace}: every search attribute is there" in again.output


async def test_an_attribute_of_another_type_is_refused_and_nothing_is_added(
    settings: Settings, temporal_client: Client
) -> None:
    namespace = await fresh_namespace(temporal_client)
    await temporal_client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=namespace,
            search_attributes={"TenantId": IndexedValueType.INDEXED_VALUE_TYPE_TEXT},
        )
    )
    refused = await adx(
        settings.model_copy(update={"temporal_namespace": namespace}), "temporal", "setup"
    )
    assert refused.exit_code == 1, refused.output
    assert f"in namespace {namespace}: TenantId is Text, ADX needs Keyword" in refused.output
    have = await existing(temporal_client, namespace)
    assert "Step" not in have


async def test_an_unknown_namespace_fails_with_a_clear_message(settings: Settings) -> None:
    missing = settings.model_copy(update={"temporal_namespace": "no-such-namespace"})
    failed = await adx(missing, "temporal", "setup")
    assert failed.exit_code == 1, failed.output
    assert "Temporal refused to add search attributes (NOT_FOUND" in failed.output
