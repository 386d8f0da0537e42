"""The operator's RBAC rules (``helm/adx-core/files/operator-rbac.yaml``) against what it
really sends.

The real operator, with peering on, runs a Tenant through its life (create to Ready, a plan
change, delete until gone) and a StorageMigration for a missing Tenant (Pending, then
deleted), once watching the whole cluster and once watching one namespace. Every request it
sent (the test helpers' own carry ``HELPER_HEADER``) is mapped to (apiGroup, resource,
verb) as the API server's authorizer maps it; the rules must allow each one, and every verb
they grant must have been used. The emulator enforces no RBAC: the request log is the proof.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kmock
import yaml
from temporalio.worker import Worker

from adx_core.settings import Settings
from tests.operator.conftest import (
    MIGRATIONS,
    TENANTS,
    OperatorFactory,
    OperatorThread,
    phase,
    tenant_manifest,
    wait_for,
)
from tests.support.kube import (
    HELPER_HEADER,
    AdxKubernetesEmulator,
    KubeHandle,
    declare_resources,
)

RULES_FILE = Path(__file__).resolve().parents[2] / "helm/adx-core/files/operator-rbac.yaml"
RULE_SETS = ("clusterRules", "namespacedRules", "clusterRulesWhenNamespaced")
RULE_KEYS = {"apiGroups", "resources", "verbs"}
# The verbs the authorizer knows for resource requests (others, like escalate or bind, are
# never the operator's business).
RESOURCE_VERBS = {"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}
PEERING = "adx-rbac"
WATCHED = "team-a"
UNWATCHED = "team-b"
# declare_resources leaves out the CRDs themselves; a real API server serves them and kopf
# watches them, so the emulator serves them here too (an empty list: the requests matter).
CRD_RESOURCE = "apiextensions.k8s.io/v1/customresourcedefinitions"
# What system:discovery and system:public-info-viewer let every identity GET.
DISCOVERY = re.compile(r"/(api(/[^/]+)?|apis(/[^/]+){0,2}|version)/?")
# The API server reads these as subresources of a namespace, not as namespaced resources.
NAMESPACE_SUBRESOURCES = {"status", "finalize"}

Rules = list[dict[str, list[str]]]
Grant = tuple[str, str, str]  # (apiGroup, resource or resource/subresource, verb)


@dataclass(frozen=True)
class Access:
    """A resource request as the authorizer sees it (k8s.io/apiserver's RequestInfo)."""

    group: str
    resource: str
    verb: str
    namespace: str | None

    @property
    def grant(self) -> Grant:
        return (self.group, self.resource, self.verb)


def load_rules() -> dict[str, Rules]:
    loaded: dict[str, Rules] = yaml.safe_load(RULES_FILE.read_text())
    return loaded


def grants(rules: Rules) -> set[Grant]:
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def _verb(method: str, name: str | None, params: Mapping[str, str]) -> str:
    if method in ("GET", "HEAD"):
        if params.get("watch") in ("true", "1"):
            return "watch"
        return "get" if name else "list"
    if method == "DELETE":
        return "delete" if name else "deletecollection"
    return {"POST": "create", "PUT": "update", "PATCH": "patch"}[method]


def access_of(request: kmock.Request) -> Access | None:
    """The request as the authorizer reads its path; None for a non-resource URL."""
    parts = [part for part in request.url.path.split("/") if part]
    if parts[:1] == ["api"] and len(parts) > 2:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) > 3:
        group, rest = parts[1], parts[3:]
    else:
        return None
    namespace = None
    if rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    resource, name, subresource = [*rest, None, None][:3]
    assert resource is not None
    return Access(
        group=group,
        resource=f"{resource}/{subresource}" if subresource else resource,
        verb=_verb(request.method.value, name, request.params),
        namespace=namespace,
    )


def _from_helper(request: kmock.Request) -> bool:
    return any(key.lower() == HELPER_HEADER.lower() for key in request.headers)


def operator_accesses(kube: KubeHandle) -> list[Access]:
    """The operator's resource requests; its other requests must all be discovery reads."""
    found = []
    for request in kube.emulator.requests:
        if _from_helper(request):
            continue
        access = access_of(request)
        if access is None:
            assert request.method.value == "GET", request
            assert DISCOVERY.fullmatch(request.url.path), request
        else:
            found.append(access)
    return found


def serve_crd_discovery(kube: KubeHandle | AdxKubernetesEmulator) -> None:
    emulator = kube.emulator if isinstance(kube, KubeHandle) else kube
    emulator.resources[CRD_RESOURCE] = kmock.ResourceInfo(
        kind="CustomResourceDefinition",
        singular="customresourcedefinition",
        shortnames=["crd", "crds"],
        namespaced=False,
        verbs=["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
    )


async def peering_object(kube: KubeHandle, namespace: str | None = None) -> None:
    kind = "KopfPeering" if namespace else "ClusterKopfPeering"
    metadata = {"name": PEERING, **({"namespace": namespace} if namespace else {})}
    await kube.apply({"apiVersion": "kopf.dev/v1", "kind": kind, "metadata": metadata})


async def tenant_and_migration_lives(kube: KubeHandle, namespace: str) -> None:
    """Everything the operator does to our resources: create, plan change and delete of a
    Tenant; create and delete of a StorageMigration (for a missing Tenant: no workflow)."""
    created = await kube.apply(tenant_manifest(namespace=namespace))
    name = created["metadata"]["name"]
    await wait_for(kube, TENANTS, namespace, name, lambda o: phase(o) == "Ready")
    await kube.patch(TENANTS, namespace, name, {"spec": {"plan": "pro"}})
    await wait_for(
        kube,
        TENANTS,
        namespace,
        name,
        lambda o: phase(o) == "Ready" and (o or {}).get("status", {}).get("plan") == "pro",
        what="the plan change",
    )
    migration = {
        "apiVersion": "adx.dev/v1alpha1",
        "kind": "StorageMigration",
        "metadata": {"name": "orphan-to-local", "namespace": namespace},
        "spec": {"tenantRef": {"name": "nobody"}, "target": "local"},
    }
    await kube.apply(migration)
    await wait_for(kube, MIGRATIONS, namespace, "orphan-to-local", lambda o: phase(o) is not None)
    await kube.delete(MIGRATIONS, namespace, "orphan-to-local")
    await wait_for(kube, MIGRATIONS, namespace, "orphan-to-local", lambda o: o is None)
    await kube.delete(TENANTS, namespace, name)
    await wait_for(kube, TENANTS, namespace, name, lambda o: o is None, what="the deletion")


async def test_cluster_rules_cover_a_cluster_wide_run_and_nothing_more(
    kube: KubeHandle, operators: OperatorFactory, tenants_worker: Worker
) -> None:
    serve_crd_discovery(kube)
    await peering_object(kube)
    operator = operators(peering=PEERING)
    await operator.ready()
    await tenant_and_migration_lives(kube, "default")
    # Stopped here, so that the log has its shutdown too (the peering entry withdrawn).
    await asyncio.to_thread(operator.stop)
    assert operator.error is None, operator.error

    allowed = grants(load_rules()["clusterRules"])
    used = {access.grant for access in operator_accesses(kube)}
    assert sorted(used - allowed) == [], "requests the ClusterRole would refuse"
    assert sorted(allowed - used) == [], "verbs the ClusterRole grants that went unused"


@asynccontextmanager
async def namespaced_operator(settings: Settings) -> AsyncIterator[OperatorThread]:
    thread = OperatorThread(
        settings.model_copy(update={"operator_namespaces": (WATCHED,), "operator_peering": PEERING})
    ).start()
    try:
        yield thread
    finally:
        await asyncio.to_thread(thread.stop)


async def test_namespaced_rules_cover_a_namespaced_run_and_nothing_more(
    kube: KubeHandle, operator_settings: Settings, tenants_worker: Worker
) -> None:
    serve_crd_discovery(kube)
    for namespace in (WATCHED, UNWATCHED):
        await kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    await peering_object(kube, WATCHED)
    # A Tenant where the operator has no Role: it must not even look.
    elsewhere = await kube.apply(tenant_manifest(namespace=UNWATCHED))
    async with namespaced_operator(operator_settings) as operator:
        await operator.ready()
        await tenant_and_migration_lives(kube, WATCHED)
    assert operator.error is None, operator.error

    rules = load_rules()
    in_namespace = grants(rules["namespacedRules"])
    cluster_level = grants(rules["clusterRulesWhenNamespaced"])
    accesses = operator_accesses(kube)
    assert [a for a in accesses if a.namespace not in (WATCHED, None)] == []
    used_in_namespace = {a.grant for a in accesses if a.namespace == WATCHED}
    used_cluster_level = {a.grant for a in accesses if a.namespace is None}
    assert sorted(used_in_namespace - in_namespace) == [], "requests the Role would refuse"
    assert sorted(used_cluster_level - cluster_level) == [], "requests the ClusterRole would refuse"
    assert sorted(in_namespace - used_in_namespace) == [], "Role verbs that went unused"
    assert sorted(cluster_level - used_cluster_level) == [], "ClusterRole verbs that went unused"
    untouched = await kube.get(TENANTS, UNWATCHED, elsewhere["metadata"]["name"])
    assert untouched == elsewhere


def _resource_info(
    emulator: AdxKubernetesEmulator, group: str, resource: str
) -> kmock.ResourceInfo:
    plural, _, subresource = resource.partition("/")
    found = [
        emulator.resources[declared]
        for declared in emulator.resources
        if (declared.group, declared.plural) == (group, plural)
    ]
    assert found, f"no such resource: {group}/{plural}"
    assert not subresource or subresource in found[0].subresources, resource
    return found[0]


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def test_rules_file_is_minimal_and_well_formed() -> None:
    rules = load_rules()
    assert list(rules) == list(RULE_SETS)
    assert "*" not in "".join(_strings(rules)), "no wildcards"
    for key, rule_set in rules.items():
        assert isinstance(rule_set, list), key
        for rule in rule_set:
            assert set(rule) == RULE_KEYS, rule
            for field in RULE_KEYS:
                values = rule[field]
                assert isinstance(values, list), rule
                assert values, rule
                assert all(isinstance(value, str) for value in values), rule
                assert len(set(values)) == len(values), rule
            assert all(resource for resource in rule["resources"]), rule
            assert set(rule["verbs"]) <= RESOURCE_VERBS, rule
            # The operator deletes nothing: a finalizer goes with a patch.
            assert not set(rule["verbs"]) & {"delete", "deletecollection"}, rule
            if "adx.dev" in rule["apiGroups"]:
                # People create and edit Tenants and StorageMigrations; kopf only patches.
                assert not set(rule["verbs"]) & {"create", "update", "get"}, rule
        expanded = [grant for rule in rule_set for grant in grants([rule])]
        assert len(expanded) == len(set(expanded)), f"{key} grants something twice"


def test_rules_name_served_resources_of_the_right_scope() -> None:
    """A Role can grant only namespaced resources; what stays cluster-level in namespaced
    mode must be cluster-scoped, or its ClusterRoleBinding would reach every namespace."""
    emulator = AdxKubernetesEmulator()
    declare_resources(emulator)
    serve_crd_discovery(emulator)
    rules = load_rules()
    for key in RULE_SETS:
        for group, resource, _ in grants(rules[key]):
            info = _resource_info(emulator, group, resource)
            if key == "namespacedRules":
                assert info.namespaced, (key, group, resource)
            elif key == "clusterRulesWhenNamespaced":
                assert not info.namespaced, (key, group, resource)
