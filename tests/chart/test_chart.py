"""The adx-core chart: it lints, renders for every value set, validates, and holds together."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from tests.chart.helpers import (
    CHART,
    CI_VALUES,
    KUBE_VERSION,
    PRE_INSTALL_HOOKS,
    REQUIRED,
    WORKERS,
    Manifest,
    environment_of,
    manifests,
    of_kind,
    render,
    values_file,
)

# kubernetes-validate knows only the built-in kinds: the Prometheus Operator's kinds and kopf's
# peerings (CRDs of adx-core-crds) have no schema there, so they are skipped here and their
# shape is asserted by the tests below.
NOT_BUILT_IN = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("kopf.dev/v1", "ClusterKopfPeering"),
    ("kopf.dev/v1", "KopfPeering"),
}
SELECTOR_FORBIDDEN = {"app.kubernetes.io/version", "helm.sh/chart"}
SECRET_SETTINGS = {
    "ADX_DATABASE_URL",
    "ADX_MIGRATION_DATABASE_URL",
    "ADX_JWT_SECRET",
    "ADX_CODEC_KEYS",
    "ADX_TEMPORAL_API_KEY",
    "ADX_SMTP_PASSWORD",
    "ADX_NOTIFY_WEBHOOK_SECRET",
}

# "defaults" is values.yaml plus exactly the REQUIRED values; each ci set is rendered as it is,
# so it must set the required values itself.
VALUE_SETS: list[tuple[str, dict[str, Any] | None]] = [("defaults", None)] + [
    (path.stem, values_file(path)) for path in CI_VALUES
]


@pytest.fixture(scope="module", params=VALUE_SETS, ids=[name for name, _ in VALUE_SETS])
def rendered(request: pytest.FixtureRequest) -> list[Manifest]:
    name, values = request.param
    return manifests(render(values, required=name == "defaults"))


def deployments(objects: list[Manifest]) -> dict[str, Manifest]:
    """Deployments by name after the release prefix: api, operator, worker-<svc>-<build id>."""
    return {
        d["metadata"]["name"].rsplit("adx-core-", 1)[1]: d for d in of_kind(objects, "Deployment")
    }


def component(obj: Manifest) -> str:
    label: str = obj["metadata"]["labels"]["app.kubernetes.io/component"]
    return label


def test_at_least_five_ci_value_sets() -> None:
    assert len(CI_VALUES) >= 5


@pytest.mark.parametrize(
    "values", [None, *CI_VALUES], ids=["defaults", *(p.stem for p in CI_VALUES)]
)
def test_lints_strictly(values: Path | None) -> None:
    report = helm.lint(
        CHART,
        values_file(values) if values else REQUIRED,
        strict=True,
        kube_version=f"v{KUBE_VERSION}",
    )
    # Severity 1 is "info" (Chart.yaml has no icon); warnings and errors fail a strict lint.
    problems = [m for m in report["messages"] if m["severity"] > 1]
    assert not report["errors"], report
    assert not problems, report


# Objects already validated, by content: most objects repeat across the value sets, and
# validation is the slowest step of these tests.
VALIDATED: set[str] = set()


def test_every_manifest_validates(rendered: list[Manifest]) -> None:
    for obj in rendered:
        if (obj["apiVersion"], obj["kind"]) in NOT_BUILT_IN:
            continue
        fingerprint = json.dumps(obj, sort_keys=True)
        if fingerprint in VALIDATED:
            continue
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        VALIDATED.add(fingerprint)


def test_every_role_has_a_deployment(rendered: list[Manifest]) -> None:
    found = list(of_kind(rendered, "Deployment"))
    assert {"api", "operator", *(f"worker-{w}" for w in WORKERS)} <= {component(d) for d in found}
    for deployment in found:
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["args"] == component(deployment).replace("worker-", "worker ").split()


def test_containers_are_probed_limited_and_locked_down(rendered: list[Manifest]) -> None:
    for deployment in of_kind(rendered, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        volumes = {v["name"]: v for v in pod["volumes"]}
        for container in pod["containers"]:
            assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
            assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
            assert {"requests", "limits"} <= set(container["resources"])
            security = container["securityContext"]
            assert security["runAsNonRoot"] is True
            assert security["runAsUser"] == 10001
            assert security["readOnlyRootFilesystem"] is True
            assert security["allowPrivilegeEscalation"] is False
            assert security["capabilities"] == {"drop": ["ALL"]}
            assert security["seccompProfile"] == {"type": "RuntimeDefault"}
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            # The pod's /tmp, not this process's.
            assert "emptyDir" in volumes[mounts["/tmp"]]  # noqa: S108


def storage_volumes(objects: list[Manifest], path: str) -> dict[str, Manifest]:
    """The volume mounted at path, by the name of the Deployment or Job whose pod mounts it."""
    found = {}
    for owner in [*of_kind(objects, "Deployment"), *of_kind(objects, "Job")]:
        pod = owner["spec"]["template"]["spec"]
        mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
        if path in mounts:
            found[owner["metadata"]["name"]] = {v["name"]: v for v in pod["volumes"]}[mounts[path]]
    return found


def test_local_storage_gets_a_writable_volume() -> None:
    objects = manifests(render())
    storage = values_file(CHART / "values.yaml")["storage"]["local"]["path"]
    volumes = storage_volumes(objects, storage)
    assert {d["metadata"]["name"] for d in of_kind(objects, "Deployment")} <= set(volumes)
    assert all("emptyDir" in volume for volume in volumes.values())
    assert not list(of_kind(objects, "PersistentVolumeClaim"))


BINARY_UNITS = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4}


def quantity_bytes(quantity: str) -> int:
    for unit, factor in BINARY_UNITS.items():
        if quantity.endswith(unit):
            return int(quantity.removesuffix(unit)) * factor
    return int(quantity)


def tmp_size(deployment: Manifest) -> int:
    (tmp,) = (v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "tmp")
    return quantity_bytes(tmp["emptyDir"]["sizeLimit"])


def test_the_files_worker_tmp_holds_what_its_activities_spool() -> None:
    """Processing and archive checks spool whole files to /tmp: past its sizeLimit the kubelet
    evicts the pod, so the default must hold a full set of concurrent spools."""
    from adx_core.settings import Settings
    from adx_workers.files.worker import MAX_CONCURRENT_ACTIVITIES

    objects = manifests(render())
    deployments = {
        d["metadata"]["labels"]["app.kubernetes.io/component"]: d
        for d in of_kind(objects, "Deployment")
    }
    spools = MAX_CONCURRENT_ACTIVITIES * Settings.model_fields["processing_max_bytes"].default
    assert tmp_size(deployments["worker-files"]) >= spools
    assert tmp_size(deployments["api"]) == quantity_bytes("256Mi")
    shrunk = manifests(render({"workers": {"files": {"tmpSizeLimit": ""}}}))
    files = next(
        d for d in of_kind(shrunk, "Deployment") if "worker-files" in d["metadata"]["name"]
    )
    assert tmp_size(files) == quantity_bytes("256Mi")


def test_shared_local_storage_is_one_kept_claim_in_every_pod() -> None:
    values = values_file(CHART / "ci" / "shared-local-storage-values.yaml")
    objects = manifests(render(values))
    (claim,) = of_kind(objects, "PersistentVolumeClaim")
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert claim["spec"] == {
        "accessModes": ["ReadWriteMany"],
        "storageClassName": "nfs-client",
        "resources": {"requests": {"storage": "50Gi"}},
    }
    volumes = storage_volumes(objects, "/srv/adx")
    owners = [*of_kind(objects, "Deployment"), *of_kind(objects, "Job")]
    # Every pod but the pre-install hooks', which run before the claim exists and need no files.
    expected = {o["metadata"]["name"] for o in owners if component(o) not in PRE_INSTALL_HOOKS}
    assert set(volumes) == expected
    assert {"api", "operator", *(f"worker-{w}" for w in WORKERS), "rollout"} <= {
        component(o) for o in owners if o["metadata"]["name"] in volumes
    }
    for volume in volumes.values():
        assert volume["persistentVolumeClaim"] == {"claimName": claim["metadata"]["name"]}


@pytest.mark.parametrize(("storage_class", "expected"), [("", None), ("-", ""), ("fast", "fast")])
def test_storage_class_empty_is_the_default_and_dash_is_none(
    storage_class: str, expected: str | None
) -> None:
    persistence = {"enabled": True, "storageClassName": storage_class}
    objects = manifests(render({"storage": {"local": {"persistence": persistence}}}))
    (claim,) = of_kind(objects, "PersistentVolumeClaim")
    assert claim["spec"].get("storageClassName") == expected


def test_an_existing_claim_is_mounted_and_none_is_created() -> None:
    persistence = {"enabled": True, "existingClaim": "adx-files"}
    objects = manifests(render({"storage": {"local": {"persistence": persistence}}}))
    assert not list(of_kind(objects, "PersistentVolumeClaim"))
    volumes = storage_volumes(objects, "/var/lib/adx/storage")
    assert volumes
    assert all(v["persistentVolumeClaim"] == {"claimName": "adx-files"} for v in volumes.values())


def test_other_providers_mount_no_storage() -> None:
    persistence = {"enabled": True}
    values = {
        "storage": {
            "provider": "gcs",
            "gcs": {"bucket": "b"},
            "local": {"persistence": persistence},
        }
    }
    objects = manifests(render(values))
    assert not list(of_kind(objects, "PersistentVolumeClaim"))
    assert not storage_volumes(objects, "/var/lib/adx/storage")


def test_notes_say_when_local_files_are_not_shared() -> None:
    notes = render()["adx-core/templates/NOTES.txt"]
    assert "Files are NOT shared between pods" in notes
    assert "LOST when a pod restarts" in notes
    shared = render({"storage": {"local": {"persistence": {"enabled": True}}}})
    assert "NOT shared" not in shared["adx-core/templates/NOTES.txt"]
    assert "adx-adx-core-storage" in shared["adx-core/templates/NOTES.txt"]
    s3 = render({"storage": {"provider": "s3", "s3": {"bucket": "b"}}})
    assert "NOT shared" not in s3["adx-core/templates/NOTES.txt"]


def test_selectors_are_stable_subsets_of_pod_labels(rendered: list[Manifest]) -> None:
    for deployment in of_kind(rendered, "Deployment"):
        selector = deployment["spec"]["selector"]["matchLabels"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items()
        assert not SELECTOR_FORBIDDEN & set(selector)
        for key in (
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/component",
            "app.kubernetes.io/version",
            "app.kubernetes.io/managed-by",
            "helm.sh/chart",
        ):
            assert key in labels
            assert key in deployment["metadata"]["labels"]


def pod_label_sets(objects: list[Manifest]) -> list[dict[str, str]]:
    return [d["spec"]["template"]["metadata"]["labels"] for d in of_kind(objects, "Deployment")]


def test_services_pdbs_and_policies_select_existing_pods(rendered: list[Manifest]) -> None:
    pods = pod_label_sets(rendered)
    selectors = [s["spec"]["selector"] for s in of_kind(rendered, "Service")]
    selectors += [
        p["spec"]["selector"]["matchLabels"] for p in of_kind(rendered, "PodDisruptionBudget")
    ]
    selectors += [
        n["spec"]["podSelector"]["matchLabels"] for n in of_kind(rendered, "NetworkPolicy")
    ]
    for selector in selectors:
        assert not SELECTOR_FORBIDDEN & set(selector)
        assert any(selector.items() <= labels.items() for labels in pods), selector
    for service in of_kind(rendered, "Service"):
        assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]


def test_autoscaled_deployments_leave_replicas_to_the_hpa(rendered: list[Manifest]) -> None:
    targets = {
        h["spec"]["scaleTargetRef"]["name"] for h in of_kind(rendered, "HorizontalPodAutoscaler")
    }
    for deployment in of_kind(rendered, "Deployment"):
        assert ("replicas" in deployment["spec"]) == (deployment["metadata"]["name"] not in targets)


def env_of(deployment: Manifest) -> dict[str, dict[str, Any]]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {entry["name"]: entry for entry in container.get("env", [])}


def test_secrets_only_by_reference(rendered: list[Manifest]) -> None:
    (config,) = of_kind(rendered, "ConfigMap")
    assert not SECRET_SETTINGS & set(config["data"])
    assert not list(of_kind(rendered, "Secret"))
    for deployment in [*of_kind(rendered, "Deployment"), *of_kind(rendered, "Job")]:
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        if component(deployment) in PRE_INSTALL_HOOKS:
            # A pre-install hook runs before the ConfigMap exists: the same settings, inline.
            assert "envFrom" not in container
        else:
            assert container["envFrom"] == [{"configMapRef": {"name": config["metadata"]["name"]}}]
        for name, entry in env_of(deployment).items():
            assert "value" not in entry or name not in SECRET_SETTINGS | {"ADX_S3_SECRET_KEY"}
        env = env_of(deployment)
        assert "secretKeyRef" in env["ADX_CODEC_KEYS"]["valueFrom"]


def test_every_ci_set_names_the_required_values() -> None:
    for path in CI_VALUES:
        values = values_file(path)
        notifications = values["notifications"]
        if notifications.get("provider") == "webhook":
            assert notifications["webhook"]["url"], path.name
        else:
            assert notifications["smtp"]["host"], path.name
        if values["scanner"].get("kind") != "eicar":
            assert values["scanner"]["clamd"]["address"], path.name


def config_of(values: dict[str, Any]) -> dict[str, str]:
    (config,) = of_kind(manifests(render(values)), "ConfigMap")
    data: dict[str, str] = config["data"]
    return data


def test_smtp_settings_go_to_the_config_map_and_the_password_to_a_secret_ref() -> None:
    data = config_of({})
    assert {k: v for k, v in data.items() if k.startswith(("ADX_NOTIFY_", "ADX_SMTP_"))} == {
        "ADX_NOTIFY_PROVIDER": "smtp",
        "ADX_NOTIFY_TIMEOUT_SECONDS": "10",
        "ADX_SMTP_HOST": "smtp.example.com",
        "ADX_SMTP_PORT": "25",
        "ADX_SMTP_SECURITY": "none",
    }
    assert "ADX_SMTP_PASSWORD" not in env_of(deployments(manifests(render()))["api"])
    values = values_file(CHART / "ci" / "external-secrets-values.yaml")
    objects = manifests(render(values, required=False))
    (config,) = of_kind(objects, "ConfigMap")
    assert config["data"]["ADX_SMTP_USERNAME"] == "adx"
    assert config["data"]["ADX_SMTP_SECURITY"] == "starttls"
    assert config["data"]["ADX_NOTIFY_FROM"] == "ADX <noreply@example.com>"
    for deployment in of_kind(objects, "Deployment"):
        password = env_of(deployment)["ADX_SMTP_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert password == {"name": "adx-smtp", "key": "password"}


def test_webhook_settings_and_its_signing_key() -> None:
    webhook = {"url": "https://hooks.example.com/adx"}
    values = {"notifications": {"provider": "webhook", "webhook": webhook}}
    data = config_of(values)
    assert data["ADX_NOTIFY_PROVIDER"] == "webhook"
    assert data["ADX_NOTIFY_WEBHOOK_URL"] == "https://hooks.example.com/adx"
    # Only the chosen provider's settings: the required smtp host of the tests is left out.
    assert not [k for k in data if k.startswith("ADX_SMTP_")]
    env = env_of(deployments(manifests(render(values)))["worker-files-0-1-0"])
    assert env["ADX_NOTIFY_WEBHOOK_SECRET"]["valueFrom"]["secretKeyRef"] == {
        "name": "adx-core",
        "key": "ADX_NOTIFY_WEBHOOK_SECRET",
    }
    unsigned = {
        "notifications": {
            "provider": "webhook",
            "webhook": {**webhook, "secret": {"enabled": False}},
        }
    }
    env = env_of(deployments(manifests(render(unsigned)))["worker-files-0-1-0"])
    assert "ADX_NOTIFY_WEBHOOK_SECRET" not in env


def test_scanner_settings() -> None:
    assert {
        k: v for k, v in config_of({}).items() if k in {"ADX_SCANNER", "ADX_CLAMD_ADDRESS"}
    } == {
        "ADX_SCANNER": "clamd",
        "ADX_CLAMD_ADDRESS": "clamd.clamav.svc.cluster.local:3310",
    }
    eicar = config_of({"environment": "development", "scanner": {"kind": "eicar"}})
    assert eicar["ADX_SCANNER"] == "eicar"
    assert "ADX_CLAMD_ADDRESS" not in eicar


def test_free_form_config_lands_in_the_config_map_as_the_app_parses_it() -> None:
    config = {
        "ADX_THUMBNAIL_FORMAT": "png",
        # Helm reads numbers as floats; the app's integer settings refuse "1.048576e+08".
        "ADX_SCAN_MAX_BYTES": 104857600,
        "ADX_SCAN_TIMEOUT_SECONDS": 2.5,
        "ADX_EXAMPLE_FLAG": True,
    }
    data = config_of({"config": config})
    assert data["ADX_THUMBNAIL_FORMAT"] == "png"
    assert data["ADX_SCAN_MAX_BYTES"] == "104857600"
    assert data["ADX_SCAN_TIMEOUT_SECONDS"] == "2.5"
    assert data["ADX_EXAMPLE_FLAG"] == "true"


def test_notes_name_the_required_values() -> None:
    notes = render()["adx-core/templates/NOTES.txt"]
    assert "SMTP through smtp.example.com:25 (notifications.smtp.host)" in notes
    assert "clamd at clamd.clamav.svc.cluster.local:3310 (scanner.clamd.address)" in notes


def test_workers_carry_their_build_id(rendered: list[Manifest]) -> None:
    for deployment in of_kind(rendered, "Deployment"):
        env = env_of(deployment)
        if component(deployment).startswith("worker-"):
            build_id = env["ADX_WORKER_BUILD_ID"]["value"]
            assert deployment["spec"]["selector"]["matchLabels"]["adx.dev/build-id"] == build_id
            dns_form = build_id.lower().replace(".", "-").replace("_", "-")
            assert deployment["metadata"]["name"].endswith(f"-{dns_form}")
        else:
            assert "ADX_WORKER_BUILD_ID" not in env


def test_build_id_defaults_to_the_tag_and_can_be_set() -> None:
    files = {"versions": [{"buildId": "Files_B", "replicas": 1}]}
    objects = manifests(render({"image": {"tag": "2.4.1"}, "workers": {"files": files}}))
    found = deployments(objects)
    assert env_of(found["worker-tenants-2-4-1"])["ADX_WORKER_BUILD_ID"]["value"] == "2.4.1"
    assert env_of(found["worker-files-files-b"])["ADX_WORKER_BUILD_ID"]["value"] == "Files_B"
    image = found["api"]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "adx-core:2.4.1"


def rbac_file() -> dict[str, Any]:
    loaded = yaml.safe_load((CHART / "files" / "operator-rbac.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_cluster_wide_operator_rbac_is_the_files_cluster_rules() -> None:
    objects = manifests(render())
    (role,) = of_kind(objects, "ClusterRole")
    assert role["rules"] == rbac_file()["clusterRules"]
    assert not list(of_kind(objects, "Role"))
    (binding,) = of_kind(objects, "ClusterRoleBinding")
    assert binding["subjects"][0]["name"].endswith("-operator")
    (peering,) = of_kind(objects, "ClusterKopfPeering")
    env = env_of(deployments(objects)["operator"])
    assert env["ADX_OPERATOR_PEERING"]["value"] == peering["metadata"]["name"]


def test_namespaced_operator_gets_roles_in_each_watched_namespace() -> None:
    values = values_file(CHART / "ci" / "namespaced-operator-values.yaml")
    objects = manifests(render(values))
    rules = rbac_file()
    roles = list(of_kind(objects, "Role"))
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["tenants-eu", "tenants-us"]
    assert all(r["rules"] == rules["namespacedRules"] for r in roles)
    (cluster_role,) = of_kind(objects, "ClusterRole")
    assert cluster_role["rules"] == rules["clusterRulesWhenNamespaced"]
    operator = deployments(objects)["operator"]
    assert operator["spec"]["replicas"] == 2
    env = env_of(operator)
    assert env["ADX_OPERATOR_NAMESPACES"]["value"] == "tenants-eu,tenants-us"
    # A namespaced kopf peers through a KopfPeering of that name in each watched namespace.
    peerings = list(of_kind(objects, "KopfPeering"))
    assert sorted(p["metadata"]["namespace"] for p in peerings) == ["tenants-eu", "tenants-us"]
    assert {p["metadata"]["name"] for p in peerings} == {env["ADX_OPERATOR_PEERING"]["value"]}
    assert not list(of_kind(objects, "ClusterKopfPeering"))


def test_a_peering_object_only_with_peering() -> None:
    operator = {"watchNamespaces": ["a"], "peering": {"enabled": False}}
    objects = manifests(render({"operator": operator}))
    assert not [o for o in objects if o["apiVersion"].startswith("kopf.dev/")]
    assert "ADX_OPERATOR_PEERING" not in env_of(deployments(objects)["operator"])


def test_the_peering_crds_come_from_the_crds_chart() -> None:
    crds = {p.name for p in (CHART.parent / "adx-core-crds" / "templates").glob("*.yaml")}
    assert {"clusterkopfpeerings.kopf.dev.yaml", "kopfpeerings.kopf.dev.yaml"} <= crds


def test_monitoring_objects_only_when_enabled() -> None:
    assert not [o for o in manifests(render()) if o["apiVersion"].startswith("monitoring.")]
    values = values_file(CHART / "ci" / "ingress-monitoring-values.yaml")
    objects = manifests(render(values))
    (monitor,) = of_kind(objects, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["endpoints"][0]["port"] == "http"
    (rules,) = of_kind(objects, "PrometheusRule")
    assert {r["alert"] for r in rules["spec"]["groups"][0]["rules"]} >= {"AdxTargetDown"}
    (ingress,) = of_kind(objects, "Ingress")
    assert ingress["spec"]["rules"][0]["host"] == "api.adx.example.com"


def test_production_set_wires_temporal_cloud_and_s3() -> None:
    objects = manifests(render(values_file(CHART / "ci" / "production-values.yaml")))
    (config,) = of_kind(objects, "ConfigMap")
    assert config["data"]["ADX_TEMPORAL_TLS_CA"] == "/etc/adx/temporal-tls/ca.crt"
    assert "ADX_TEMPORAL_TLS_CERT" not in config["data"]
    assert config["data"]["ADX_S3_BUCKET"] == "adx-prod-files"
    env = env_of(deployments(objects)["worker-files-0-1-0"])
    assert {"ADX_TEMPORAL_API_KEY", "ADX_S3_ACCESS_KEY", "ADX_S3_SECRET_KEY"} <= set(env)
    assert len(list(of_kind(objects, "HorizontalPodAutoscaler"))) == 2


def test_helm_test_pod_checks_api_and_temporal() -> None:
    rendered = render()
    (path,) = [p for p in rendered if "/templates/tests/" in p]
    (pod,) = yaml.safe_load_all(rendered[path])
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    env = {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}
    assert env["API_READYZ"].endswith("-api:8080/readyz")
    assert env["TEMPORAL_ADDRESS"] == "temporal-frontend.temporal.svc.cluster.local:7233"
    # The check itself must at least be valid Python.
    compile(pod["spec"]["containers"][0]["args"][0], "helm-test", "exec")


def test_the_app_accepts_every_container_environment(
    rendered: list[Manifest], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What each role, hook Job and the migration read is valid to the app's own Settings:
    a setting the chart writes in a shape the app refuses would stop the pod at start."""
    from adx_core.settings import SettingsError, load_settings

    (config,) = of_kind(rendered, "ConfigMap")
    workloads = [*of_kind(rendered, "Deployment"), *of_kind(rendered, "Job")]
    for workload in workloads:
        environment = environment_of(workload, config["data"])
        for name in [name for name in os.environ if name.startswith("ADX_")]:
            monkeypatch.delenv(name)
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        try:
            settings = load_settings()
        except SettingsError as refused:
            raise AssertionError(f"{workload['metadata']['name']}: {refused}") from None
        assert settings.temporal_address == environment["ADX_TEMPORAL_ADDRESS"]
