"""The adx-core chart: it lints, renders for every value set, validates, and holds together."""

from __future__ import annotations

import json
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
    WORKERS,
    Manifest,
    manifests,
    of_kind,
    render,
    values_file,
)

# kubernetes-validate knows only the built-in kinds: the Prometheus Operator's kinds and kopf's
# ClusterKopfPeering (a CRD of adx-core-crds) have no schema there, so they are skipped here
# and their shape is asserted by the tests below.
NOT_BUILT_IN = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("kopf.dev/v1", "ClusterKopfPeering"),
}
SELECTOR_FORBIDDEN = {"app.kubernetes.io/version", "helm.sh/chart"}
SECRET_SETTINGS = {"ADX_DATABASE_URL", "ADX_JWT_SECRET", "ADX_CODEC_KEYS", "ADX_TEMPORAL_API_KEY"}

VALUE_SETS: list[tuple[str, dict[str, Any] | None]] = [("defaults", None)] + [
    (path.stem, values_file(path)) for path in CI_VALUES
]


@pytest.fixture(scope="module", params=VALUE_SETS, ids=[name for name, _ in VALUE_SETS])
def rendered(request: pytest.FixtureRequest) -> list[Manifest]:
    _, values = request.param
    return manifests(render(values))


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
        values_file(values) if values else None,
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


def test_local_storage_gets_a_writable_volume() -> None:
    objects = manifests(render())
    storage = values_file(CHART / "values.yaml")["storage"]["local"]["path"]
    for deployment in of_kind(objects, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
        assert "emptyDir" in {v["name"]: v for v in pod["volumes"]}[mounts[storage]]


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
        assert container["envFrom"] == [{"configMapRef": {"name": config["metadata"]["name"]}}]
        for name, entry in env_of(deployment).items():
            assert "value" not in entry or name not in SECRET_SETTINGS | {"ADX_S3_SECRET_KEY"}
        env = env_of(deployment)
        assert "secretKeyRef" in env["ADX_CODEC_KEYS"]["valueFrom"]


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
    env = env_of(deployments(objects)["operator"])
    assert env["ADX_OPERATOR_NAMESPACES"]["value"] == "tenants-eu,tenants-us"
    assert "ADX_OPERATOR_PEERING" not in env
    assert not list(of_kind(objects, "ClusterKopfPeering"))


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
