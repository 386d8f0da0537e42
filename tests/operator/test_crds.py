"""The CRDs: structural, complete, and refusing what the operator could not act on. Every
custom resource in examples/ and in these tests is checked against its CRD's schema and
its CEL rules (tests/support/crds.py), as the API server would."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.crds import field_exists, load_crd, problems, schema_of, structural_gaps

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TENANTS = load_crd("tenants.adx.dev")
MIGRATIONS = load_crd("storagemigrations.adx.dev")
CRDS = {"Tenant": TENANTS, "StorageMigration": MIGRATIONS}

TENANT: dict[str, Any] = {
    "apiVersion": "adx.dev/v1alpha1",
    "kind": "Tenant",
    "metadata": {"name": "globex"},
    "spec": {
        "displayName": "Globex",
        "plan": "free",
        "admin": {"email": "hank@globex.example", "name": "Hank"},
    },
}
MIGRATION: dict[str, Any] = {
    "apiVersion": "adx.dev/v1alpha1",
    "kind": "StorageMigration",
    "metadata": {"name": "globex-to-s3"},
    "spec": {"tenantRef": {"name": "globex"}, "target": "s3"},
}


def changed(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``base`` with ``path`` (a/b/c) set to ``value``, or removed for ``...``."""
    obj = copy.deepcopy(base)
    *parents, last = path.split("/")
    node = obj
    for part in parents:
        node = node.setdefault(part, {})
    if value is ...:
        node.pop(last, None)
    else:
        node[last] = value
    return obj


@pytest.mark.parametrize("crd", [TENANTS, MIGRATIONS], ids=lambda c: c["spec"]["names"]["kind"])
def test_the_crd_is_structural_namespaced_with_status_columns_and_short_name(
    crd: dict[str, Any],
) -> None:
    spec = crd["spec"]
    assert crd["metadata"]["name"] == f"{spec['names']['plural']}.{spec['group']}"
    assert spec["group"] == "adx.dev"
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["shortNames"]
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}
    schema = schema_of(crd)
    assert list(structural_gaps(schema)) == []
    columns = {column["name"]: column["jsonPath"] for column in version["additionalPrinterColumns"]}
    assert {"Phase", "Ready", "Age"} <= set(columns)
    for name, path in columns.items():
        assert field_exists(schema, path), (name, path)
    status = schema["properties"]["status"]["properties"]
    assert {"phase", "conditions", "observedGeneration", "workflowId", "runId"} <= set(status)
    condition = status["conditions"]["items"]["properties"]
    assert set(condition) == {
        "type",
        "status",
        "reason",
        "message",
        "lastTransitionTime",
        "observedGeneration",
    }


def test_tenant_columns_include_the_plan_and_migration_progress_is_in_status() -> None:
    (tenant,) = TENANTS["spec"]["versions"]
    assert any(c["name"] == "Plan" for c in tenant["additionalPrinterColumns"])
    progress = schema_of(MIGRATIONS)["properties"]["status"]["properties"]["progress"]
    assert set(progress["properties"]) == {"filesDone", "filesTotal", "bytesDone", "bytesTotal"}


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_validates(path: Path) -> None:
    for obj in yaml.safe_load_all(path.read_text()):
        assert problems(CRDS[obj["kind"]], obj) == [], path.name


@pytest.mark.parametrize("obj", [TENANT, MIGRATION], ids=["tenant", "migration"])
def test_the_test_resources_validate(obj: dict[str, Any]) -> None:
    assert problems(CRDS[obj["kind"]], obj) == []


@pytest.mark.parametrize(
    ("path", "value", "why"),
    [
        ("spec", ..., "spec"),
        ("spec/admin", ..., "admin"),
        ("spec/displayName", "", "displayName"),
        ("spec/displayName", "x" * 201, "displayName"),
        ("spec/displayName", "bell\x07", "displayName"),
        ("spec/plan", "platinum", "plan"),
        ("spec/admin/email", "not-an-address", "email"),
        ("spec/admin/email", "a@" + "b" * 320 + ".example", "email"),
        ("spec/quotas", {"users": 0}, "users"),
        ("spec/quotas", {"users": "many"}, "users"),
        ("spec/storage", {"provider": "ftp"}, "provider"),
        ("spec/storage", {"provider": "s3", "bucket": "Bad_Bucket"}, "bucket"),
        ("spec/storage", {"provider": "s3", "prefix": "../etc/"}, "prefix"),
        ("spec/paused", "yes", "paused"),
        ("status/phase", "Happy", "phase"),
        # CEL rules
        ("metadata/name", "Acme", "slug"),
        ("metadata/name", "a", "slug"),
        ("metadata/name", "platform", "reserved"),
        ("spec/storage", {"provider": "local", "bucket": "tenants"}, "local storage"),
    ],
)
def test_invalid_tenants_are_refused(path: str, value: Any, why: str) -> None:
    found = problems(TENANTS, changed(TENANT, path, value))
    assert found, (path, value)
    assert any(why in problem for problem in found), found


@pytest.mark.parametrize(
    ("path", "value", "why"),
    [
        ("spec/tenantRef", ..., "tenantRef"),
        ("spec/target", ..., "target"),
        ("spec/target", "tape", "target"),
        ("spec/batchSize", 0, "batchSize"),
        ("spec/batchSize", 1001, "batchSize"),
        ("spec/fallbackTargets", ["gcs", "azure", "local", "s3"], "fallbackTargets"),
        ("spec/fallbackTargets", ["gcs", "gcs"], "duplicate"),
        ("spec/prefix", "/absolute/", "prefix"),
        ("spec/prefix", "a/../b/", "prefix"),
        ("spec/tenantRef", {"name": "Not A Slug"}, "name"),
        ("status/progress", {"filesDone": -1}, "filesDone"),
        # CEL rules
        ("spec/source", "s3", "must differ"),
        ("spec/fallbackTargets", ["s3"], "fallback"),
    ],
)
def test_invalid_migrations_are_refused(path: str, value: Any, why: str) -> None:
    found = problems(MIGRATIONS, changed(MIGRATION, path, value))
    assert found, (path, value)
    assert any(why in problem for problem in found), found


def test_a_migration_whose_source_is_a_fallback_is_refused() -> None:
    obj = changed(changed(MIGRATION, "spec/source", "gcs"), "spec/fallbackTargets", ["gcs"])
    assert any("source cannot be a fallback" in p for p in problems(MIGRATIONS, obj))


def test_updates_follow_the_transition_rules() -> None:
    with_storage = changed(TENANT, "spec/storage", {"provider": "s3", "region": "eu-west-1"})
    # A plan change, a pause and more quota are updates the operator acts on.
    for path, value in (
        ("spec/plan", "enterprise"),
        ("spec/paused", True),
        ("spec/quotas", {"users": 500}),
    ):
        assert problems(TENANTS, changed(with_storage, path, value), old=with_storage) == []
    # Storage, once set, moves only through a StorageMigration.
    moved = changed(with_storage, "spec/storage", {"provider": "gcs"})
    assert any("StorageMigration" in p for p in problems(TENANTS, moved, old=with_storage))
    dropped = changed(with_storage, "spec/storage", ...)
    assert any("StorageMigration" in p for p in problems(TENANTS, dropped, old=with_storage))
    # Setting it for the first time is fine.
    assert problems(TENANTS, with_storage, old=TENANT) == []
    # A migration cannot be edited, but its status can.
    edited = changed(MIGRATION, "spec/batchSize", 10)
    assert any("cannot change" in p for p in problems(MIGRATIONS, edited, old=MIGRATION))
    progressed = changed(MIGRATION, "status/progress", {"filesDone": 3, "filesTotal": 9})
    assert problems(MIGRATIONS, progressed, old=MIGRATION) == []
