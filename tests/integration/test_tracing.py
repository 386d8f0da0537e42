"""One trace from the caller's traceparent through the API, the workflow and activities."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestClient
from temporalio.worker import Worker

from adx_core import telemetry
from tests.conftest import TokenFactory
from tests.integration.test_tenant_slice import BODY, auth
from tests.support.otlp import TraceReceiver

Client = TestClient[web.Request, web.Application]

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


async def test_request_workflow_and_activities_share_the_callers_trace(
    traces: TraceReceiver, api: Client, token: TokenFactory, tenants_worker: Worker
) -> None:
    response = await api.post(
        "/v1/tenants",
        json=BODY,
        headers={
            **auth(token()),
            "Prefer": "wait=20",
            "traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01",
        },
    )
    assert response.status == 200
    # Without X-Request-ID the trace id is the correlation id, so logs and traces join up.
    assert response.headers["X-Request-ID"] == TRACE_ID
    assert telemetry.flush_tracing()
    names = {name for _, name, trace_id in traces.spans() if trace_id.hex() == TRACE_ID}
    assert "POST /v1/tenants" in names
    assert "StartWorkflow:tenant_provisioning_workflow" in names
    assert "RunWorkflow:tenant_provisioning_workflow" in names
    assert "RunActivity:create_tenant_record_activity" in names
    assert "RunActivity:activate_tenant_activity" in names
