"""The Temporal setup hook Job: `adx temporal setup` before every install and upgrade, so the
namespace has ADX's search attributes; off on Temporal Cloud, where tcld adds them."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import click
import kubernetes_validate
import pytest

from adx_cli.main import main as adx
from adx_core.contracts.search import registration
from tests.chart.helpers import (
    CHART,
    KUBE_VERSION,
    ROOT,
    Manifest,
    environment_of,
    manifests,
    of_kind,
    render,
    values_file,
)

NOTES = "adx-core/templates/NOTES.txt"
MTLS = {
    "temporal": {
        "tls": {
            "enabled": True,
            "existingSecret": "temporal-mtls",
            "serverName": "temporal.internal",
        }
    }
}
API_KEY = {
    "temporal": {"apiKey": {"enabled": True, "existingSecret": "temporal-cloud", "key": "k"}}
}


def by_component(objects: list[Manifest], name: str) -> list[Manifest]:
    return [
        o
        for o in of_kind(objects, "Job")
        if o["metadata"]["labels"]["app.kubernetes.io/component"] == name
    ]


def setup_job(values: dict[str, Any] | None = None) -> Manifest:
    (job,) = by_component(manifests(render(values)), "temporal-setup")
    return job


def container(job: Manifest) -> dict[str, Any]:
    (only,) = job["spec"]["template"]["spec"]["containers"]
    return dict(only)


def env(job: Manifest) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container(job)["env"]}


def secret_refs(pod_owner: Manifest) -> dict[str, Any]:
    (only,) = pod_owner["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e["valueFrom"] for e in only.get("env", []) if "valueFrom" in e}


def tcld_attributes(text: str) -> dict[str, str]:
    """The --sa "Name=Type" pairs of a tcld command in text."""
    return dict(re.findall(r'--sa "(\w+)=(\w+)"', text))


def test_it_runs_before_every_install_and_upgrade_after_the_migration() -> None:
    objects = manifests(render())
    (job,) = by_component(objects, "temporal-setup")
    (migrate,) = by_component(objects, "migrate")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    weight = int(annotations["helm.sh/hook-weight"])
    assert int(migrate["metadata"]["annotations"]["helm.sh/hook-weight"]) < weight
    others = [
        int(o["metadata"]["annotations"]["helm.sh/hook-weight"])
        for o in objects
        if o is not job
        and o is not migrate
        and "helm.sh/hook-weight" in o["metadata"].get("annotations", {})
    ]
    assert others
    assert weight < min(others)
    assert job["metadata"]["name"] == "adx-adx-core-temporal-setup"
    assert job["spec"]["backoffLimit"] == 6
    assert job["spec"]["activeDeadlineSeconds"] == 300
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert {"requests", "limits"} <= set(container(job)["resources"])
    # The top-level image, as the migration: the newest code's attributes.
    assert container(job)["image"] == container(migrate)["image"]


def test_its_values_reach_the_job() -> None:
    resources = {"limits": {"cpu": "2", "memory": "1Gi"}}
    setup = {"backoffLimit": 0, "activeDeadlineSeconds": 60, "resources": resources}
    job = setup_job({"temporal": {"setup": setup}})
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["activeDeadlineSeconds"] == 60
    assert container(job)["resources"]["limits"] == resources["limits"]


def test_no_job_when_disabled_and_the_notes_say_what_to_run() -> None:
    disabled = {"temporal": {"setup": {"enabled": False}}}
    assert not by_component(manifests(render(disabled)), "temporal-setup")
    notes = render(disabled)[NOTES]
    assert "temporal.setup.enabled is false" in notes
    assert "tcld namespace search-attributes add -n default" in notes
    assert tcld_attributes(notes) == registration()
    assert "adx temporal setup" in notes
    enabled = render()[NOTES]
    assert "adx-adx-core-temporal-setup (`adx temporal setup`)" in enabled
    assert "tcld" not in enabled


def test_its_args_are_the_adx_temporal_setup_command() -> None:
    args = container(setup_job())["args"]
    assert args == ["temporal", "setup"]
    group = adx.commands[args[0]]
    assert isinstance(group, click.Group)
    command = group.commands[args[1]]
    assert not isinstance(command, click.Group)
    context = command.make_context(args[1], list(args[2:]))
    assert context.params == {}


def test_it_needs_nothing_the_release_creates() -> None:
    """A pre-install hook runs before the release's objects: no ConfigMap, no ServiceAccount,
    no claim. It carries the ConfigMap's settings inline and the secrets Settings needs to load
    by reference; it talks to Temporal only, so no database URL."""
    objects = manifests(render())
    (job,) = by_component(objects, "temporal-setup")
    (migrate,) = by_component(objects, "migrate")
    pod = job["spec"]["template"]["spec"]
    assert "serviceAccountName" not in pod
    assert pod["automountServiceAccountToken"] is False
    assert "envFrom" not in container(job)
    (config,) = of_kind(objects, "ConfigMap")
    assert {n: e["value"] for n, e in env(job).items() if "value" in e} == config["data"]
    (operator,) = (
        d for d in of_kind(objects, "Deployment") if d["metadata"]["name"].endswith("-operator")
    )
    # The operator's secrets are the set without a database: the codec keys and JWT secret.
    assert secret_refs(job) == secret_refs(operator)
    assert {"ADX_CODEC_KEYS", "ADX_JWT_SECRET"} <= set(secret_refs(job))
    assert not {"ADX_DATABASE_URL", "ADX_MIGRATION_DATABASE_URL"} & set(secret_refs(job))
    # The migration's locked-down pod, with only /tmp writable.
    assert pod["securityContext"] == migrate["spec"]["template"]["spec"]["securityContext"]
    assert container(job)["securityContext"] == container(migrate)["securityContext"]
    assert container(job)["volumeMounts"] == container(migrate)["volumeMounts"]
    assert pod["volumes"] == migrate["spec"]["template"]["spec"]["volumes"]


def test_with_tls_it_mounts_the_secret_where_the_settings_point() -> None:
    objects = manifests(render(MTLS))
    (job,) = by_component(objects, "temporal-setup")
    (config,) = of_kind(objects, "ConfigMap")
    settings = env(job)
    files = {
        name: Path(settings[name]["value"])
        for name in ("ADX_TEMPORAL_TLS_CA", "ADX_TEMPORAL_TLS_CERT", "ADX_TEMPORAL_TLS_KEY")
    }
    assert {name: str(path) for name, path in files.items()} == {
        name: config["data"][name] for name in files
    }
    assert settings["ADX_TEMPORAL_TLS_SERVER_NAME"]["value"] == "temporal.internal"
    mounts = {m["mountPath"]: m for m in container(job)["volumeMounts"]}
    (directory,) = {path.parent for path in files.values()}
    mount = mounts[str(directory)]
    assert mount["readOnly"] is True
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    assert volumes[mount["name"]]["secret"] == {"secretName": "temporal-mtls"}
    # The file names are the Secret's keys.
    assert {path.name for path in files.values()} == {"ca.crt", "tls.crt", "tls.key"}
    # As every role mounts it; the migration, which never talks to Temporal, does not.
    (api,) = (d for d in of_kind(objects, "Deployment") if d["metadata"]["name"].endswith("-api"))
    assert mount in container(api)["volumeMounts"]
    (migrate,) = by_component(objects, "migrate")
    assert str(directory) not in {m["mountPath"] for m in container(migrate)["volumeMounts"]}
    kubernetes_validate.validate(job, KUBE_VERSION, strict=True)


def test_with_an_api_key_it_reads_the_key_from_its_secret() -> None:
    job = setup_job(API_KEY)
    assert env(job)["ADX_TEMPORAL_API_KEY"]["valueFrom"] == {
        "secretKeyRef": {"name": "temporal-cloud", "key": "k"}
    }
    assert "ADX_TEMPORAL_API_KEY" not in env(setup_job())


def test_the_app_loads_its_temporal_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    """With mTLS and an API key (which no ci set runs the Job with), its environment is one
    the app's Settings accept, and names the files and key the command connects with."""
    from adx_core.settings import load_settings

    job = setup_job({"temporal": {**MTLS["temporal"], **API_KEY["temporal"]}})
    for name in [name for name in os.environ if name.startswith("ADX_")]:
        monkeypatch.delenv(name)
    for name, value in environment_of(job, {}).items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.temporal_tls_ca == Path(env(job)["ADX_TEMPORAL_TLS_CA"]["value"])
    assert settings.temporal_tls_cert is not None
    assert settings.temporal_api_key is not None
    assert settings.temporal_namespace == "default"


def test_the_temporal_cloud_set_turns_it_off() -> None:
    values = values_file(CHART / "ci" / "production-values.yaml")
    assert values["temporal"]["setup"]["enabled"] is False
    assert values["temporal"]["apiKey"]["enabled"] is True
    objects = manifests(render(values, required=False))
    assert not by_component(objects, "temporal-setup")
    assert by_component(objects, "migrate")


def test_the_documented_attributes_are_the_ones_adx_sets() -> None:
    """values.yaml, the README and docs/operations.md name the attributes and give the tcld
    command; the lists must stay those of adx_core.contracts.search."""
    operations = (ROOT / "docs" / "operations.md").read_text()
    section = operations.split("### 4. Temporal", 1)[1].split("### 5.", 1)[0]
    assert tcld_attributes(section) == registration()
    assert "temporal.setup.enabled: false" in section
    # The Worker Versioning paragraph stays beside it.
    assert "frontend.workerVersioningWorkflowAPIs" in section
    values = (CHART / "values.yaml").read_text()
    setup_block = values.split("key: ADX_TEMPORAL_API_KEY", 1)[1].split("\ndatabase:", 1)[0]
    assert "  setup:" in setup_block
    assert "tcld" in setup_block
    readme = (CHART / "README.md").read_text()
    for name in registration():
        assert name in setup_block
        assert f"`{name}`" in readme
        assert f"`{name}`" in section
