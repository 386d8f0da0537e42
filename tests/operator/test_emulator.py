"""The Kubernetes API emulator the operator tests run against (tests/support/kube.py), over
real HTTP: the API server's metadata, patch types, status subresource, CRD validation,
deletion, discovery and watches, and kopf itself running a handler against it."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import re
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import kmock
import kopf
import pytest

from tests.support.kube import KubeApiError, KubeHandle, serve_kubernetes

Body = dict[str, Any]
NextEvent = Callable[[], Awaitable[Body]]

NAMESPACE = "adx"
TENANT: Body = {
    "apiVersion": "adx.dev/v1alpha1",
    "kind": "Tenant",
    "metadata": {"name": "globex", "namespace": NAMESPACE},
    "spec": {
        "displayName": "Globex",
        "plan": "free",
        "admin": {"email": "hank@globex.example", "name": "Hank"},
    },
}
RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


@pytest.fixture
async def kube() -> AsyncIterator[KubeHandle]:
    async with serve_kubernetes() as handle:
        yield handle


def tenant(name: str = "globex", **spec: Any) -> Body:
    body = copy.deepcopy(TENANT)
    body["metadata"]["name"] = name
    body["spec"].update(spec)
    return body


def revision(body: Body) -> int:
    return int(body["metadata"]["resourceVersion"])


async def stored(kube: KubeHandle, name: str = "globex") -> Body:
    found = await kube.get("tenants", NAMESPACE, name)
    assert found is not None
    return found


@contextlib.asynccontextmanager
async def watching(kube: KubeHandle, path: str, **params: str) -> AsyncIterator[NextEvent]:
    """A watch request on ``path``; yields a function that reads its next event."""
    query = {"watch": "true", **params}
    async with kube.client.get(path, params=query) as response:
        assert response.status == 200

        async def next_event() -> Body:
            async with asyncio.timeout(2):
                line = await response.content.readline()
            event: Body = json.loads(line)
            return event

        yield next_event


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 4) -> None:
    async with asyncio.timeout(seconds):
        while True:
            if await check():
                return
            await asyncio.sleep(0.02)


async def test_a_create_gets_uid_timestamp_generation_and_a_revision_that_every_write_raises(
    kube: KubeHandle,
) -> None:
    first = await kube.apply(tenant())
    meta = first["metadata"]
    assert uuid.UUID(meta["uid"]).version == 4
    assert RFC3339_UTC.fullmatch(meta["creationTimestamp"])
    assert meta["generation"] == 1
    second = await kube.apply(tenant("initech"))
    assert revision(second) > revision(first)
    assert second["metadata"]["uid"] != meta["uid"]

    labelled = await kube.patch(
        "tenants", NAMESPACE, "globex", {"metadata": {"labels": {"a": "b"}}}
    )
    assert revision(labelled) > revision(second)
    assert (labelled["metadata"]["uid"], labelled["metadata"]["creationTimestamp"]) == (
        meta["uid"],
        meta["creationTimestamp"],
    )
    assert await stored(kube) == labelled


async def test_a_create_of_an_existing_name_conflicts(kube: KubeHandle) -> None:
    await kube.apply(tenant())
    with pytest.raises(KubeApiError) as refused:
        await kube.apply(tenant())
    assert (refused.value.status, refused.value.reason) == (409, "AlreadyExists")


async def test_generate_name_names_the_object_and_a_name_is_required(kube: KubeHandle) -> None:
    event = {"metadata": {"generateName": "kopf-event-"}, "reason": "Tested", "message": "hi"}
    posted = await kube.apply({"apiVersion": "v1", "kind": "Event", **event})
    assert re.fullmatch(r"kopf-event-[a-z0-9]{5}", posted["metadata"]["name"])
    assert (posted["metadata"]["namespace"], posted["kind"]) == ("default", "Event")
    assert await kube.get("events", "default", posted["metadata"]["name"]) == posted

    with pytest.raises(KubeApiError) as refused:
        await kube.apply({"apiVersion": "v1", "kind": "Event", "metadata": {}})
    assert refused.value.status == 422


async def test_generation_grows_on_spec_changes_only(kube: KubeHandle) -> None:
    created = await kube.apply(tenant())
    upgraded = await kube.patch("tenants", NAMESPACE, "globex", {"spec": {"plan": "pro"}})
    assert upgraded["metadata"]["generation"] == 2

    labelled = await kube.patch(
        "tenants", NAMESPACE, "globex", {"metadata": {"labels": {"a": "b"}}}
    )
    status = {"status": {"phase": "Ready", "observedGeneration": 2}}
    reported = await kube.patch("tenants", NAMESPACE, "globex", status, subresource="status")
    assert [body["metadata"]["generation"] for body in (labelled, reported)] == [2, 2]
    assert revision(created) < revision(upgraded) < revision(labelled) < revision(reported)


async def test_a_write_that_changes_nothing_keeps_the_revision(kube: KubeHandle) -> None:
    created = await kube.apply(tenant())
    same = await kube.patch("tenants", NAMESPACE, "globex", {"spec": {"plan": "free"}})
    assert same == created


async def test_a_json_patch_applies_only_when_its_test_passes(kube: KubeHandle) -> None:
    created = await kube.apply(tenant())
    stale = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "0"},
        {"op": "replace", "path": "/spec/plan", "value": "pro"},
    ]
    with pytest.raises(KubeApiError) as refused:
        await kube.patch("tenants", NAMESPACE, "globex", stale)
    assert (refused.value.status, refused.value.body["kind"]) == (422, "Status")
    assert refused.value.reason == "Invalid"
    assert await stored(kube) == created

    fresh = [{**stale[0], "value": created["metadata"]["resourceVersion"]}, stale[1]]
    patched = await kube.patch("tenants", NAMESPACE, "globex", fresh)
    assert patched["spec"]["plan"] == "pro"
    assert await stored(kube) == patched


async def test_a_json_patch_on_a_missing_path_is_refused(kube: KubeHandle) -> None:
    created = await kube.apply(tenant())
    with pytest.raises(KubeApiError) as refused:
        await kube.patch("tenants", NAMESPACE, "globex", [{"op": "remove", "path": "/spec/nope"}])
    assert refused.value.status == 422
    assert await stored(kube) == created


async def test_a_merge_patch_merges_and_null_removes(kube: KubeHandle) -> None:
    await kube.apply(tenant(quotas={"files": 10, "users": 5}))
    patch = {"spec": {"quotas": {"files": 20, "users": None}}}
    patched = await kube.patch("tenants", NAMESPACE, "globex", patch)
    assert patched["spec"]["quotas"] == {"files": 20}
    assert patched["spec"]["displayName"] == "Globex"


async def test_a_stale_resource_version_in_a_merge_patch_conflicts(kube: KubeHandle) -> None:
    created = await kube.apply(tenant())
    stale = {"metadata": {"resourceVersion": "0"}, "spec": {"plan": "pro"}}
    with pytest.raises(KubeApiError) as refused:
        await kube.patch("tenants", NAMESPACE, "globex", stale)
    assert (refused.value.status, refused.value.reason) == (409, "Conflict")
    assert await stored(kube) == created


async def test_other_patch_types_are_unsupported(kube: KubeHandle) -> None:
    await kube.apply(tenant())
    with pytest.raises(KubeApiError) as refused:
        await kube.request(
            "PATCH",
            kube.path("tenants", NAMESPACE, "globex"),
            {"spec": {"plan": "pro"}},
            content_type="application/strategic-merge-patch+json",
        )
    assert refused.value.status == 415


async def test_a_status_write_changes_only_status(kube: KubeHandle) -> None:
    created = await kube.apply({**tenant(), "status": {"phase": "Ready"}})
    assert "status" not in created  # a create sets no status either

    body = {
        "spec": {"plan": "pro"},
        "metadata": {"labels": {"a": "b"}},
        "status": {"phase": "Ready"},
    }
    reported = await kube.patch("tenants", NAMESPACE, "globex", body, subresource="status")
    assert reported["status"] == {"phase": "Ready"}
    assert reported["spec"] == created["spec"]
    assert "labels" not in reported["metadata"]


async def test_a_main_write_leaves_status_alone(kube: KubeHandle) -> None:
    await kube.apply(tenant())
    status = {"status": {"phase": "Ready"}}
    await kube.patch("tenants", NAMESPACE, "globex", status, subresource="status")

    body = {"spec": {"plan": "pro"}, "status": {"phase": "Failed"}}
    patched = await kube.patch("tenants", NAMESPACE, "globex", body)
    assert patched["spec"]["plan"] == "pro"
    assert patched["status"] == {"phase": "Ready"}


async def test_the_request_log_tells_status_writes_from_main_writes(kube: KubeHandle) -> None:
    await kube.apply(tenant())
    await kube.patch("tenants", NAMESPACE, "globex", {"spec": {"plan": "pro"}})
    await kube.patch(
        "tenants", NAMESPACE, "globex", {"status": {"phase": "Ready"}}, subresource="status"
    )
    assert kube.status_writes("tenants") == []  # the helpers' own are left out by default
    (status,) = kube.status_writes("tenants", with_helpers=True)
    assert (status.method.value, status.subresource) == ("PATCH", "status")
    assert status.url.path == f"/apis/adx.dev/v1alpha1/namespaces/{NAMESPACE}/tenants/globex/status"
    assert status.data == {"status": {"phase": "Ready"}}
    main = kube.main_writes("tenants", with_helpers=True)
    assert [(request.method.value, request.subresource) for request in main] == [
        ("POST", None),
        ("PATCH", None),
    ]
    assert main[1].data == {"spec": {"plan": "pro"}}


async def test_an_injected_failure_answers_instead_of_the_emulator(kube: KubeHandle) -> None:
    created = await kube.apply(tenant())
    kube.emulator[kmock.subresource("status")] << 500
    with pytest.raises(KubeApiError) as refused:
        await kube.patch(
            "tenants", NAMESPACE, "globex", {"status": {"phase": "Ready"}}, subresource="status"
        )
    assert refused.value.status == 500
    assert await stored(kube) == created
    assert len(kube.status_writes("tenants", with_helpers=True)) == 1


async def test_unknown_fields_are_pruned_and_defaults_applied(kube: KubeHandle) -> None:
    body = tenant()
    del body["spec"]["plan"]
    body["spec"]["colour"] = "blue"
    created = await kube.apply(body)
    assert created["spec"]["plan"] == "free"
    assert created["spec"]["paused"] is False
    assert "colour" not in created["spec"]

    status = {"status": {"phase": "Ready", "kopf": {"progress": {}}}}
    reported = await kube.patch("tenants", NAMESPACE, "globex", status, subresource="status")
    assert reported["status"] == {"phase": "Ready"}


@pytest.mark.parametrize(
    ("name", "spec", "message"),
    [
        ("globex", {"plan": "gold"}, "'gold' is not one of"),
        ("platform", {}, "the name is reserved"),
    ],
    ids=["unknown-plan", "reserved-name"],
)
async def test_an_invalid_tenant_is_not_created(
    kube: KubeHandle, name: str, spec: Body, message: str
) -> None:
    with pytest.raises(KubeApiError) as refused:
        await kube.apply(tenant(name, **spec))
    assert (refused.value.status, refused.value.reason) == (422, "Invalid")
    assert message in refused.value.body["message"]
    assert await kube.get("tenants", NAMESPACE, name) is None


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"spec": {"plan": "gold"}}, "'gold' is not one of"),
        ({"spec": {"storage": {"provider": "gcs"}}}, "storage cannot change once set"),
        ({"spec": {"storage": None}}, "storage cannot change once set"),
    ],
    ids=["unknown-plan", "storage-changed", "storage-removed"],
)
async def test_an_invalid_update_changes_nothing(
    kube: KubeHandle, patch: Body, message: str
) -> None:
    created = await kube.apply(tenant(storage={"provider": "s3", "region": "eu-west-1"}))
    with pytest.raises(KubeApiError) as refused:
        await kube.patch("tenants", NAMESPACE, "globex", patch)
    assert (refused.value.status, refused.value.reason) == (422, "Invalid")
    assert message in refused.value.body["message"]
    assert await stored(kube) == created


async def test_an_invalid_status_is_refused(kube: KubeHandle) -> None:
    created = await kube.apply(tenant())
    status = {"status": {"phase": "Sleeping"}}
    with pytest.raises(KubeApiError) as refused:
        await kube.patch("tenants", NAMESPACE, "globex", status, subresource="status")
    assert refused.value.status == 422
    assert await stored(kube) == created


async def test_a_migration_spec_cannot_change(kube: KubeHandle) -> None:
    migration = {
        "apiVersion": "adx.dev/v1alpha1",
        "kind": "StorageMigration",
        "metadata": {"name": "globex-to-s3", "namespace": NAMESPACE},
        "spec": {"tenantRef": {"name": "globex"}, "target": "s3"},
    }
    created = await kube.apply(migration)
    assert created["spec"]["batchSize"] == 100
    with pytest.raises(KubeApiError) as refused:
        await kube.patch(
            "storagemigrations", NAMESPACE, "globex-to-s3", {"spec": {"target": "gcs"}}
        )
    assert "a migration cannot change" in refused.value.body["message"]
    status = {"status": {"phase": "Running"}}
    path = ("storagemigrations", NAMESPACE, "globex-to-s3")
    assert (await kube.patch(*path, status, subresource="status"))["status"] == status["status"]


async def test_a_finalizer_holds_the_deletion_until_it_is_removed(kube: KubeHandle) -> None:
    created = await kube.apply(
        {**tenant(), "metadata": {**TENANT["metadata"], "finalizers": ["x"]}}
    )
    path = kube.path("tenants", NAMESPACE)
    async with watching(
        kube, path, resourceVersion=created["metadata"]["resourceVersion"]
    ) as next_:
        deleting = await kube.delete("tenants", NAMESPACE, "globex")
        assert RFC3339_UTC.fullmatch(deleting["metadata"]["deletionTimestamp"])
        assert deleting["metadata"]["generation"] == 2  # markAsDeleting bumps it
        assert await stored(kube) == deleting
        modified = await next_()
        assert (modified["type"], modified["object"]) == ("MODIFIED", deleting)

        with pytest.raises(KubeApiError) as refused:
            await kube.patch(
                "tenants", NAMESPACE, "globex", {"metadata": {"finalizers": ["x", "y"]}}
            )
        assert refused.value.status == 422
        again = await kube.delete("tenants", NAMESPACE, "globex")
        assert again == deleting

        ops = [
            {"op": "test", "path": "/metadata/resourceVersion", "value": str(revision(deleting))},
            {"op": "remove", "path": "/metadata/finalizers/0"},
        ]
        released = await kube.patch("tenants", NAMESPACE, "globex", ops)
        deleted = await next_()
        assert deleted["type"] == "DELETED"
        assert revision(deleted["object"]) == revision(released) > revision(deleting)
    assert await kube.get("tenants", NAMESPACE, "globex") is None
    with pytest.raises(KubeApiError) as gone:
        await kube.patch("tenants", NAMESPACE, "globex", {"spec": {"plan": "pro"}})
    assert gone.value.status == 404


async def test_a_delete_without_finalizers_deletes_at_once(kube: KubeHandle) -> None:
    created = await kube.apply(tenant())
    deleted = await kube.delete("tenants", NAMESPACE, "globex")
    assert revision(deleted) > revision(created)
    assert await kube.get("tenants", NAMESPACE, "globex") is None
    assert (await kube.apply(tenant()))["metadata"]["uid"] != created["metadata"]["uid"]


async def test_discovery_serves_the_crds_with_their_status_subresource(kube: KubeHandle) -> None:
    served = await kube.request("GET", "/apis/adx.dev/v1alpha1")
    resources = {entry["name"]: entry for entry in served["resources"]}
    assert {"tenants", "tenants/status", "storagemigrations", "storagemigrations/status"} == set(
        resources
    )
    tenants = resources["tenants"]
    assert (tenants["kind"], tenants["namespaced"], tenants["shortNames"]) == (
        "Tenant",
        True,
        ["tn"],
    )
    assert {"get", "list", "watch", "create", "patch", "delete"} <= set(tenants["verbs"])

    groups = {group["name"] for group in (await kube.request("GET", "/apis"))["groups"]}
    assert {"adx.dev", "kopf.dev"} <= groups
    core = await kube.request("GET", "/api/v1")
    assert core["groupVersion"] == "v1"
    assert {(r["name"], r["namespaced"]) for r in core["resources"]} == {
        ("namespaces", False),
        ("events", True),
    }
    peerings = await kube.request("GET", "/apis/kopf.dev/v1")
    assert {(r["name"], r["namespaced"]) for r in peerings["resources"]} == {
        ("kopfpeerings", True),
        ("clusterkopfpeerings", False),
    }


async def test_a_list_then_a_watch_from_its_revision_sees_every_change_once(
    kube: KubeHandle,
) -> None:
    await kube.apply(tenant())
    listed = await kube.list_objects("tenants")
    assert [item["metadata"]["name"] for item in listed["items"]] == ["globex"]
    since = listed["metadata"]["resourceVersion"]

    async with watching(kube, kube.path("tenants"), resourceVersion=since) as next_event:
        added = await kube.apply(tenant("initech"))
        upgraded = await kube.patch("tenants", NAMESPACE, "globex", {"spec": {"plan": "pro"}})
        events = [await next_event(), await next_event()]
    assert [(event["type"], event["object"]) for event in events] == [
        ("ADDED", added),
        ("MODIFIED", upgraded),
    ]
    assert int(since) < revision(added) < revision(upgraded)


async def test_a_watch_without_a_revision_starts_with_what_exists(kube: KubeHandle) -> None:
    created = await kube.apply(tenant())
    path = kube.path("tenants", NAMESPACE)
    async with watching(kube, path, sendInitialEvents="true") as next_event:
        assert await next_event() == {"type": "ADDED", "object": created}
        bookmark = await next_event()
        assert bookmark["type"] == "BOOKMARK"
        assert bookmark["object"]["metadata"]["resourceVersion"] == str(revision(created))


async def test_a_watch_ends_after_its_timeout(kube: KubeHandle) -> None:
    path = kube.path("tenants") + "?watch=true&timeoutSeconds=1"
    async with asyncio.timeout(3), kube.client.get(path) as response:
        assert await response.read() == b""


async def test_concurrent_patches_of_one_revision_cannot_both_apply(kube: KubeHandle) -> None:
    created = await kube.apply(tenant())

    async def upgrade(plan: str) -> Body | KubeApiError:
        ops = [
            {"op": "test", "path": "/metadata/resourceVersion", "value": str(revision(created))},
            {"op": "replace", "path": "/spec/plan", "value": plan},
        ]
        try:
            return await kube.patch("tenants", NAMESPACE, "globex", ops)
        except KubeApiError as exc:
            return exc

    results = await asyncio.gather(*(upgrade(plan) for plan in ["pro", "enterprise"] * 5))
    applied = [result for result in results if isinstance(result, dict)]
    assert len(applied) == 1
    assert all(r.status == 422 for r in results if isinstance(r, KubeApiError))
    assert await stored(kube) == applied[0]


async def test_namespaces_are_served_as_a_cluster_scoped_resource(kube: KubeHandle) -> None:
    created = await kube.request("POST", "/api/v1/namespaces", {"metadata": {"name": NAMESPACE}})
    assert (created["kind"], "namespace" in created["metadata"]) == ("Namespace", False)
    assert await kube.request("GET", f"/api/v1/namespaces/{NAMESPACE}") == created
    listed = await kube.request("GET", "/api/v1/namespaces")
    assert listed["items"] == [created]
    with pytest.raises(KubeApiError) as missing:
        await kube.request("GET", "/api/v1/namespaces/elsewhere")
    assert missing.value.status == 404


async def test_peerings_take_status_in_the_main_body(kube: KubeHandle) -> None:
    peering = {
        "apiVersion": "kopf.dev/v1",
        "kind": "ClusterKopfPeering",
        "metadata": {"name": "adx"},
    }
    await kube.apply(peering)
    touched = await kube.patch("clusterkopfpeerings", None, "adx", {"status": {"me": {"p": 0}}})
    assert touched["status"] == {"me": {"p": 0}}
    assert (await kube.get("clusterkopfpeerings", None, "adx")) == touched


async def test_the_kubeconfig_logs_kopf_in(
    kube: KubeHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(kube.write_kubeconfig(tmp_path / "kubeconfig")))
    info = kopf.login_with_kubeconfig(settings=kopf.OperatorSettings())
    assert info is not None
    assert (info.server, info.token, info.default_namespace) == (
        kube.url,
        "adx-emulator-token",
        "default",
    )


async def test_kopf_handles_a_tenant_and_writes_its_status_through_the_subresource(
    kube: KubeHandle,
) -> None:
    registry = kopf.OperatorRegistry()
    handled: list[str] = []

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kube.connection_info()

    @kopf.on.create("adx.dev", "v1alpha1", "tenants", registry=registry)
    def created(name: str, body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        handled.append(name)
        patch.status["phase"] = "Provisioning"
        kopf.info(body, reason="Provisioning", message="provisioning the tenant")

    stop, ready = threading.Event(), threading.Event()
    operator = kopf.operator(
        registry=registry, clusterwide=True, standalone=True, stop_flag=stop, ready_flag=ready
    )
    # kopf owns its event loop (it cancels every task it did not start): give it a thread.
    thread = threading.Thread(target=asyncio.run, args=(operator,), daemon=True)
    thread.start()
    try:
        await kube.apply(tenant())

        async def provisioning() -> bool:
            status: Body = (await stored(kube)).get("status", {})
            return status.get("phase") == "Provisioning"

        async def event_posted() -> bool:
            return bool((await kube.list_objects("events", NAMESPACE))["items"])

        await eventually(provisioning)
        await eventually(event_posted)
    finally:
        stop.set()
        await asyncio.to_thread(thread.join, 10)
    assert not thread.is_alive()

    assert handled == ["globex"]
    assert any(
        r.data == {"status": {"phase": "Provisioning"}} for r in kube.status_writes("tenants")
    )
    main = kube.main_writes("tenants")
    assert main  # kopf's own annotations
    assert not any(isinstance(r.data, dict) and "status" in r.data for r in main)
    (event,) = (await kube.list_objects("events", NAMESPACE))["items"]
    assert event["metadata"]["name"].startswith("kopf-event-")
    assert event["involvedObject"]["name"] == "globex"
    assert event["reason"] == "Provisioning"
