"""Payload encryption seen from outside: history read without the codec is ciphertext.

A tenant is provisioned through the API; then its history is fetched by a client with no
codec (what anyone with access to the Temporal cluster or its database would see). Every
payload, the ``adx-context`` header included, must be encrypted with the active key, and
none of the tenant's data may appear in the raw bytes. The configured client still reads all
of it. Also here: the API's logs never contain the caller's token.
"""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from google.protobuf.message import Message
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.api.common.v1 import Payload
from temporalio.api.history.v1 import History
from temporalio.client import Client, WorkflowFailureError, WorkflowHistory
from temporalio.exceptions import ActivityError
from temporalio.worker import Worker

from adx_core.auth import Role
from adx_core.contracts import search
from adx_core.contracts.progress import PROGRESS_MEMO_PATCH
from adx_core.contracts.tenants import (
    TENANT_PROVISIONING_WORKFLOW,
    Plan,
    TenantAdmin,
    TenantCreationRequest,
)
from adx_core.logging import configure_logging
from adx_core.settings import Settings
from adx_core.temporal.client import data_converter
from adx_core.temporal.codec import ENCODING, KEY_ID
from adx_core.temporal.interceptor import HEADER
from tests.conftest import TokenFactory

ApiClient = TestClient[web.Request, web.Application]

SLUG = "acme-secret-slug"
DISPLAY_NAME = "Acme Confidential Inc"
EMAIL = "ada@acme.test"
ADMIN_NAME = "Ada Lovelace-Byron"
REQUEST_ID = "codec-check-request-1"
BODY = {
    "slug": SLUG,
    "display_name": DISPLAY_NAME,
    "plan": "enterprise",
    "admin": {"email": EMAIL, "name": ADMIN_NAME},
}
SEARCH_ATTRIBUTES = "temporal.api.common.v1.SearchAttributes"


def _walk(message: Message, path: str = "") -> Iterator[tuple[str, Payload]]:
    """Every Payload anywhere in a protobuf message, with its path. Search attributes are
    skipped: they are indexed in plaintext on purpose (ids and step names only)."""
    if isinstance(message, Payload):
        yield path, message
        return
    for field, value in message.ListFields():
        if field.message_type is None or field.message_type.full_name == SEARCH_ATTRIBUTES:
            continue
        name = f"{path}.{field.name}"
        if field.message_type.GetOptions().map_entry:
            for key, item in value.items():
                if isinstance(item, Message):
                    yield from _walk(item, f"{name}[{key}]")
        elif field.is_repeated:
            for index, item in enumerate(value):
                yield from _walk(item, f"{name}[{index}]")
        else:
            yield from _walk(value, name)


def _payloads(history: WorkflowHistory) -> list[tuple[str, Payload]]:
    return [
        (f"{event.event_id}:{event.WhichOneof('attributes')}{path}", payload)
        for event in history.events
        for path, payload in _walk(event)
    ]


def _raw(history: WorkflowHistory) -> tuple[bytes, str]:
    return History(events=history.events).SerializeToString(), history.to_json()


@pytest.fixture
async def plain_client(settings: Settings) -> Client:
    """A client with no codec and no interceptors: an outsider's view of the cluster."""
    return await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace)


async def _provision(api: ApiClient, admin_token: str) -> str:
    response = await api.post(
        "/v1/tenants",
        json=BODY,
        headers={
            "Authorization": f"Bearer {admin_token}",
            "Prefer": "wait=30",
            "X-Request-ID": REQUEST_ID,
        },
    )
    assert response.status == 200, await response.text()
    operation = await response.json()
    assert operation["status"] == "succeeded", operation
    return str(operation["id"])


async def test_history_holds_only_ciphertext(
    api: ApiClient,
    token: TokenFactory,
    tenants_worker: Worker,
    plain_client: Client,
    temporal_client: Client,
    settings: Settings,
) -> None:
    """Workflow input, memo, headers, activity inputs and results and the workflow result
    are binary/encrypted under k1, and no tenant data is readable in the raw history."""
    user_id = str(uuid.uuid4())
    operation_id = await _provision(api, token(user_id=user_id))
    history = await plain_client.get_workflow_handle(operation_id).fetch_history()

    payloads = _payloads(history)
    kinds = {path.split(".")[0].split(":")[1] for path, _ in payloads}
    assert {
        "workflow_execution_started_event_attributes",
        "activity_task_scheduled_event_attributes",
        "activity_task_completed_event_attributes",
        "workflow_execution_completed_event_attributes",
    } <= kinds
    for path, payload in payloads:
        if "marker_recorded_event_attributes.details[patch-data]" in path:
            # The SDK writes a patch's marker itself, outside the codec; it holds only the
            # patch id, which is ours and names no tenant.
            assert json.loads(payload.data)["id"] == PROGRESS_MEMO_PATCH, path
            continue
        assert payload.metadata.get("encoding") == ENCODING, path
        assert payload.metadata.get(KEY_ID) == b"k1", path
        assert set(payload.metadata) == {"encoding", KEY_ID}, path
    # The progress events the workflow writes to its memo are encrypted like the rest.
    assert any("workflow_properties_modified" in path for path, _ in payloads)

    headers = [(path, p) for path, p in payloads if f".fields[{HEADER}]" in path]
    started = [path for path, _ in headers if path.startswith("1:workflow_execution_started")]
    child = [path for path, _ in headers if "child_workflow_execution_started" in path]
    scheduled = [path for path, _ in headers if "activity_task_scheduled" in path]
    assert len(started) == 1, [path for path, _ in headers]
    assert len(child) == 1, [path for path, _ in headers]  # the monitoring child
    assert len(scheduled) == 7, [path for path, _ in headers]  # one per activity step
    assert any(".memo." in path for path, _ in payloads)

    raw_bytes, raw_json = _raw(history)
    for secret in (SLUG, DISPLAY_NAME, EMAIL, ADMIN_NAME, user_id, "platform-admin"):
        assert secret.encode() not in raw_bytes, secret
        assert secret not in raw_json, secret

    # The one plaintext part is the search attributes, and they carry no tenant data.
    description = await plain_client.get_workflow_handle(operation_id).describe()
    assert description.typed_search_attributes.get(search.CORRELATION_ID) == REQUEST_ID

    # The configured client (with the codec) reads everything back.
    result = await temporal_client.get_workflow_handle(operation_id).result()
    assert result["slug"] == SLUG
    assert result["display_name"] == DISPLAY_NAME
    codec = data_converter(settings).payload_codec
    assert codec is not None
    [header] = await codec.decode([headers[0][1]])
    ctx = json.loads(header.data)
    assert ctx["correlation_id"] == REQUEST_ID
    assert ctx["user_id"] == user_id
    assert ctx["roles"] == [Role.PLATFORM_ADMIN.value]


async def test_plain_client_cannot_read_the_result(
    api: ApiClient, token: TokenFactory, tenants_worker: Worker, plain_client: Client
) -> None:
    """Without the codec the result comes back as the encrypted payload, not as data."""
    operation_id = await _provision(api, token())
    with pytest.raises(KeyError, match="binary/encrypted") as info:
        await plain_client.get_workflow_handle(operation_id).result()
    assert SLUG not in str(info.value)


async def test_failure_details_are_encrypted(
    api: ApiClient,
    token: TokenFactory,
    tenants_worker: Worker,
    plain_client: Client,
    temporal_client: Client,
    settings: Settings,
) -> None:
    """A failed run (the slug is taken) leaves no tenant data in failure messages either,
    while the configured client still sees why it failed."""
    await _provision(api, token())
    tenant_id = str(uuid.uuid4())
    handle = await temporal_client.start_workflow(
        TENANT_PROVISIONING_WORKFLOW,
        TenantCreationRequest(
            tenant_id=tenant_id,
            slug=SLUG,
            display_name=DISPLAY_NAME,
            plan=Plan.PRO,
            admin=TenantAdmin(email=EMAIL, name=ADMIN_NAME),
            requested_by="codec-test",
        ),
        id=f"tenant-provisioning-{tenant_id}",
        task_queue=settings.task_queue("tenants"),
    )
    with pytest.raises(WorkflowFailureError) as info:
        await handle.result()
    # The configured client decodes the failure: the activity's message is readable.
    activity_error = info.value.cause
    assert isinstance(activity_error, ActivityError)
    assert activity_error.cause is not None
    assert SLUG in str(activity_error.cause)

    history = await plain_client.get_workflow_handle(handle.id).fetch_history()
    raw_bytes, raw_json = _raw(history)
    for secret in (SLUG, DISPLAY_NAME, EMAIL, ADMIN_NAME):
        assert secret.encode() not in raw_bytes, secret
        assert secret not in raw_json, secret
    assert b"INSERT INTO" not in raw_bytes  # nor the SQL of the failed statement


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """Every log line of the process, rendered as in production, into a buffer."""
    buffer = io.StringIO()
    configure_logging("DEBUG", "json", stream=buffer)
    try:
        yield buffer
    finally:
        configure_logging("INFO", "json")


async def test_api_logs_never_contain_the_token(
    api: ApiClient,
    token: TokenFactory,
    tenants_worker: Worker,
    captured_logs: io.StringIO,
    owner_engine: AsyncEngine,
) -> None:
    """Through real requests (accepted, refused, provisioning run by the worker) the logs
    hold the correlation id but never the bearer token or the admin's e-mail."""
    admin = token()
    viewer = token(role=Role.VIEWER)
    expired = token(ttl_seconds=-3600)
    logging.getLogger("aiohttp.access").setLevel(logging.DEBUG)  # even the access log
    for bearer, expected in ((admin, 200), (viewer, 403), (expired, 401)):
        response = await api.post(
            "/v1/tenants",
            json=BODY,
            headers={
                "Authorization": f"Bearer {bearer}",
                "Prefer": "wait=30",
                "X-Request-ID": REQUEST_ID,
            },
        )
        assert response.status == expected, await response.text()
    missing = await api.get(f"/v1/operations/nope-{uuid.uuid4()}", headers={"Authorization": admin})
    assert missing.status == 401

    output = captured_logs.getvalue()
    lines = [json.loads(line) for line in output.splitlines()]
    assert any(line.get("correlation_id") == REQUEST_ID for line in lines)
    for secret in (admin, viewer, expired, *admin.split(".")[1:], EMAIL):
        assert secret not in output
    async with owner_engine.connect() as conn:
        assert (
            await conn.execute(text("SELECT count(*) FROM tenants WHERE slug = :s"), {"s": SLUG})
        ).scalar() == 1
