"""A Tenant resource through its life, driven the way a platform operator does it:
create, change the plan, pause, delete; against the emulated API server, the real
Temporal dev server, PostgreSQL and the tenants worker."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.worker import Worker

from adx_core.contracts.monitoring import STATUS_QUERY, MonitoringStatus, monitoring_workflow_id
from adx_core.contracts.tenants import deprovisioning_workflow_id, provisioning_workflow_id
from adx_operator.naming import FINALIZER, upgrade_workflow_id
from tests.operator.conftest import (
    TENANTS,
    OperatorFactory,
    conditions,
    phase,
    tenant_manifest,
    wait_for,
)
from tests.support.kube import KubeHandle


async def tenant_row(owner_engine: AsyncEngine, tenant_id: str) -> dict[str, Any] | None:
    async with owner_engine.connect() as conn:
        row = (
            (
                await conn.execute(
                    text("SELECT slug, plan, status FROM tenants WHERE id = :id"), {"id": tenant_id}
                )
            )
            .mappings()
            .first()
        )
    return dict(row) if row else None


def events_for(kube: KubeHandle, uid: str) -> list[tuple[str, str]]:
    found = []
    for (resource, _, _), obj in kube.emulator.objects.items():
        if resource.plural != "events" or obj.deleted:
            continue
        if obj.get("involvedObject", {}).get("uid") == uid:
            found.append((obj.get("type", ""), obj.get("reason", "")))
    return found


async def test_create_upgrade_pause_and_delete(
    kube: KubeHandle,
    operators: OperatorFactory,
    tenants_worker: Worker,
    temporal_client: Client,
    owner_engine: AsyncEngine,
) -> None:
    operator = operators()
    await operator.ready()
    created = await kube.apply(tenant_manifest())
    name, uid = created["metadata"]["name"], created["metadata"]["uid"]

    ready = await wait_for(kube, TENANTS, "default", name, lambda o: phase(o) == "Ready")
    assert ready is not None
    status = ready["status"]
    assert status["tenantId"] == uid
    assert status["workflowId"] == provisioning_workflow_id(uid)
    assert status["observedGeneration"] == 1
    assert status["plan"] == "free"
    assert conditions(ready) == {
        "Ready": ("True", "Ready"),
        "Provisioned": ("True", "Provisioned"),
        "PlanApplied": ("True", "PlanApplied"),
        "SpecApplied": ("True", "Applied"),
        "MonitoringPaused": ("False", "Running"),
    }
    assert FINALIZER in ready["metadata"]["finalizers"]
    description = await temporal_client.get_workflow_handle(status["workflowId"]).describe()
    assert description.run_id == status["runId"]
    assert description.status == WorkflowExecutionStatus.COMPLETED
    assert await tenant_row(owner_engine, uid) == {"slug": name, "plan": "free", "status": "active"}

    # A plan change is an upgrade, keyed by the generation that asked for it.
    await kube.patch(TENANTS, "default", name, {"spec": {"plan": "pro"}})
    upgraded = await wait_for(
        kube,
        TENANTS,
        "default",
        name,
        lambda o: phase(o) == "Ready" and (o or {}).get("status", {}).get("plan") == "pro",
        what="the upgrade",
    )
    assert upgraded is not None
    assert upgraded["status"]["workflowId"] == upgrade_workflow_id(uid, 2)
    assert upgraded["status"]["observedGeneration"] == 2
    assert conditions(upgraded)["PlanApplied"] == ("True", "PlanApplied")
    assert (await tenant_row(owner_engine, uid) or {})["plan"] == "pro"

    # What only provisioning applies is reported when edited later, not silently dropped.
    await kube.patch(TENANTS, "default", name, {"spec": {"displayName": "Renamed"}})
    edited = await wait_for(
        kube,
        TENANTS,
        "default",
        name,
        lambda o: conditions(o or {}).get("SpecApplied", ("", ""))[0] == "False",
        what="SpecApplied to turn False",
    )
    assert edited is not None
    assert conditions(edited)["SpecApplied"] == ("False", "ProvisioningOnly")
    assert phase(edited) == "Ready"

    # Pause: the monitoring workflow is told, and status shows what it says.
    await kube.patch(TENANTS, "default", name, {"spec": {"paused": True}})
    paused = await wait_for(
        kube,
        TENANTS,
        "default",
        name,
        lambda o: conditions(o or {}).get("MonitoringPaused", ("", ""))[0] == "True",
        what="monitoring to pause",
    )
    assert paused is not None
    assert paused["status"]["monitoringPaused"] is True
    monitoring = temporal_client.get_workflow_handle(monitoring_workflow_id(uid))
    assert (await monitoring.query(STATUS_QUERY, result_type=MonitoringStatus)).paused
    await kube.patch(TENANTS, "default", name, {"spec": {"paused": False}})
    await wait_for(
        kube,
        TENANTS,
        "default",
        name,
        lambda o: conditions(o or {}).get("MonitoringPaused", ("", ""))[0] == "False",
        what="monitoring to resume",
    )

    # Delete: the finalizer holds the resource until deprovisioning has completed.
    await kube.delete(TENANTS, "default", name)
    await wait_for(kube, TENANTS, "default", name, lambda o: o is None, what="the deletion")
    removal = await temporal_client.get_workflow_handle(deprovisioning_workflow_id(uid)).describe()
    assert removal.status == WorkflowExecutionStatus.COMPLETED
    assert (await tenant_row(owner_engine, uid) or {})["status"] == "deprovisioned"

    # Events on every phase change; status only ever through /status.
    reasons = [reason for _, reason in events_for(kube, uid)]
    for expected in ("Provisioning", "Ready", "Upgrading", "Deleting"):
        assert expected in reasons, reasons
    assert kube.status_writes(TENANTS), "status was never written"
    for request in kube.main_writes(TENANTS):
        assert "status" not in (request.data or {}), request
