"""Two operator replicas in one peering: exactly one acts, and the other takes over when it
goes. Also the probes `adx operator` serves."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml

from tests.operator.conftest import TENANTS, OperatorFactory, phase, tenant_manifest, wait_for
from tests.support.kube import KubeHandle

PEERING = "adx-peers"


def login_as(kube: KubeHandle, path: Path, token: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The next operator started logs in with ``token``: its requests carry it, which tells
    the replicas apart in the request log."""
    kube.write_kubeconfig(path)
    config = yaml.safe_load(path.read_text())
    config["users"][0]["user"]["token"] = token
    path.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("KUBECONFIG", str(path))


def writers(kube: KubeHandle) -> set[str]:
    """Whose tokens wrote Tenants (status included)."""
    requests = kube.status_writes(TENANTS) + kube.main_writes(TENANTS)
    return {str(r.headers.get("Authorization", "")).removeprefix("Bearer ") for r in requests}


async def test_one_replica_acts_and_the_other_takes_over(
    kube: KubeHandle,
    operators: OperatorFactory,
    tenants_worker: object,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await kube.apply(
        {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": PEERING}}
    )
    login_as(kube, tmp_path / "a", "replica-a", monkeypatch)
    first = operators(priority=200, peering=PEERING)
    await first.ready()
    login_as(kube, tmp_path / "b", "replica-b", monkeypatch)
    second = operators(priority=100, peering=PEERING)
    await second.ready()

    created = await kube.apply(tenant_manifest())
    await wait_for(
        kube, TENANTS, "default", created["metadata"]["name"], lambda o: phase(o) == "Ready"
    )
    assert writers(kube) == {"replica-a"}

    await asyncio.to_thread(first.stop)
    later = await kube.apply(tenant_manifest())
    await wait_for(
        kube, TENANTS, "default", later["metadata"]["name"], lambda o: phase(o) == "Ready"
    )
    assert writers(kube) == {"replica-a", "replica-b"}
    late_writes = [r for r in kube.status_writes(TENANTS) if r.name == later["metadata"]["name"]]
    assert {str(r.headers.get("Authorization")) for r in late_writes} == {"Bearer replica-b"}


async def test_probes(kube: KubeHandle, operators: OperatorFactory) -> None:
    operator = operators()
    await operator.ready()
    status, body = await operator.probe("/healthz")
    assert (status, body) == (200, {"status": "ok"})
    status, body = await operator.probe("/readyz")
    assert status == 200
    assert body["checks"] == {"kubernetes": "ok", "temporal": "ok"}
