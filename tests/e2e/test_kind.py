"""The dev loop's configuration, and the kind-based end-to-end test of a blue-green upgrade.

The first tests run everywhere: they parse skaffold.yaml, the kind config and the dev
manifests, check that every path they name exists, and render the chart with the values the
dev loop and the end-to-end test use.

``test_blue_green_upgrade_on_kind`` needs Docker, kind, helm and kubectl on PATH and
``ADX_E2E=1``; it creates its own kind cluster and always deletes it:

    ADX_E2E=1 .venv/bin/python -m pytest tests/e2e -m e2e -v

It installs the Temporal dev server, PostgreSQL, the CRDs chart and the chart with build A of
every worker, applies examples/tenant.yaml and waits for Ready. It then holds a second
tenant's provisioning open on A (the mail sink is scaled to zero, so its welcome mail step
keeps retrying), upgrades the workers to A and B with B current (`helm upgrade --atomic`,
whose hook Jobs run `adx rollout promote`), and checks that the held execution finishes on A
while a new one runs on B, and that `adx rollout drain-status` reports A drained.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SKAFFOLD = ROOT / "skaffold.yaml"
KIND_CONFIG = ROOT / "dev" / "kind-config.yaml"
TEMPORAL_DEV = ROOT / "dev" / "temporal-dev.yaml"
SERVICES = ROOT / "dev" / "services.yaml"
MIGRATE = ROOT / "dev" / "migrate.yaml"
DEV_VALUES = ROOT / "dev" / "values.yaml"
CHART = ROOT / "helm" / "adx-core"
CRDS_CHART = ROOT / "helm" / "adx-core-crds"
TENANT_EXAMPLE = ROOT / "examples" / "tenant.yaml"

NAMESPACE = "adx"
RELEASE = "adx-core"
IMAGE = "adx-core"
SERVICES_NAMES = ("tenants", "files", "users")
BUILD_A = "e2e-a"
BUILD_B = "e2e-b"
TOOLS = ("docker", "kind", "helm", "kubectl")
SKAFFOLD_CONFIGS = ("adx-dev-services", "adx-core-crds", "adx-core")


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _one(path: Path) -> dict[str, Any]:
    loaded = yaml.safe_load(path.read_text())
    assert isinstance(loaded, dict), f"{path} is not a mapping"
    return loaded


def _skaffold_configs() -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in _documents(SKAFFOLD)}


# -- the configuration, checked everywhere -----------------------------------------------------


def test_skaffold_deploys_services_then_crds_then_the_chart() -> None:
    docs = _documents(SKAFFOLD)
    assert [doc["metadata"]["name"] for doc in docs] == list(SKAFFOLD_CONFIGS)
    for doc in docs:
        assert doc["apiVersion"].startswith("skaffold/v4beta"), doc["apiVersion"]
        assert doc["kind"] == "Config"
        deploy = doc.get("deploy", {})
        # Skaffold 2 applies a config's raw manifests only with an explicit kubectl deployer.
        if doc.get("manifests", {}).get("rawYaml"):
            assert "kubectl" in deploy, doc["metadata"]["name"]
    configs = _skaffold_configs()
    services = configs["adx-dev-services"]["manifests"]["rawYaml"]
    assert services == ["dev/temporal-dev.yaml", "dev/services.yaml"]
    (crds,) = configs["adx-core-crds"]["deploy"]["helm"]["releases"]
    assert (crds["name"], crds["chartPath"]) == ("adx-core-crds", "helm/adx-core-crds")
    (core,) = configs["adx-core"]["deploy"]["helm"]["releases"]
    assert (core["name"], core["chartPath"], core["namespace"]) == (RELEASE, "helm/adx-core", "adx")


def test_every_path_skaffold_names_exists() -> None:
    for doc in _documents(SKAFFOLD):
        for manifest in doc.get("manifests", {}).get("rawYaml", []):
            assert (ROOT / manifest).is_file(), manifest
        for release in doc.get("deploy", {}).get("helm", {}).get("releases", []):
            assert (ROOT / release["chartPath"] / "Chart.yaml").is_file(), release["chartPath"]
            for values in release.get("valuesFiles", []):
                assert (ROOT / values).is_file(), values
        for artifact in doc.get("build", {}).get("artifacts", []):
            context = ROOT / artifact.get("context", ".")
            assert (context / artifact["docker"]["dockerfile"]).is_file()


def test_the_chart_gets_the_image_skaffold_built() -> None:
    core = _skaffold_configs()["adx-core"]
    (artifact,) = core["build"]["artifacts"]
    assert artifact["image"] == IMAGE
    # Skaffold names the template keys after the image, with "-" as "_".
    key = IMAGE.replace("-", "_")
    (release,) = core["deploy"]["helm"]["releases"]
    assert release["setValueTemplates"] == {
        "image.repository": f"{{{{.IMAGE_REPO_{key}}}}}",
        "image.tag": f"{{{{.IMAGE_TAG_{key}}}}}",
    }
    # The chart migrates in a pre-install/pre-upgrade hook: nothing else may race it.
    assert "manifests" not in _skaffold_configs()["adx-core"]


def test_the_kind_profile_matches_the_kind_cluster() -> None:
    kind = _one(KIND_CONFIG)
    assert kind["kind"] == "Cluster"
    assert kind["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert [node["role"] for node in kind["nodes"]] == ["control-plane"]
    (profile,) = _skaffold_configs()["adx-core"]["profiles"]
    assert profile["name"] == "kind"
    assert profile["activation"] == [{"kubeContext": f"kind-{kind['name']}"}]
    assert profile["patches"] == [{"op": "add", "path": "/build/local/push", "value": False}]


def test_the_dev_manifests_are_what_the_chart_expects() -> None:
    import kubernetes_validate

    from adx_core.contracts import search

    docs = _documents(TEMPORAL_DEV) + _documents(SERVICES) + _documents(MIGRATE)
    for doc in docs:
        # The Kubernetes version the chart tests validate against (tests/chart/helpers.py).
        kubernetes_validate.validate(doc, "1.33.0", strict=True)
    assert docs[0] == {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
    assert all(doc["metadata"]["namespace"] == NAMESPACE for doc in docs[1:])
    by_name = {(doc["kind"], doc["metadata"]["name"]): doc for doc in docs}

    temporal = by_name[("Deployment", "temporal-dev")]["spec"]["template"]["spec"]
    args = temporal["containers"][0]["args"]
    registered = dict(
        arg.removeprefix("--search-attribute=").split("=")
        for arg in args
        if arg.startswith("--search-attribute=")
    )
    assert registered == search.registration()
    assert "--dynamic-config-value=system.enableDeploymentVersions=true" in args

    values = _one(DEV_VALUES)
    host, _, port = values["temporal"]["address"].partition(":")
    service_ports = {p["port"] for p in by_name[("Service", host)]["spec"]["ports"]}
    assert int(port) in service_ports
    assert values["notifications"]["smtp"]["host"] in {
        name for kind, name in by_name if kind == "Service"
    }

    secret = by_name[("Secret", "adx-core")]["stringData"]
    assert {"ADX_DATABASE_URL", "ADX_JWT_SECRET", "ADX_CODEC_KEYS"} <= set(secret)
    assert "ADX_MIGRATION_DATABASE_URL" in secret


def test_the_chart_renders_the_dev_and_e2e_values() -> None:
    """The values of the dev loop and of both e2e releases pass the chart's schema, and give
    the Deployments and hook Jobs the e2e test addresses by name."""
    rendered = _render(_release_values(BUILD_A, (BUILD_A,)))
    assert {f"{RELEASE}-worker-{svc}-{BUILD_A}" for svc in SERVICES_NAMES} <= rendered
    upgraded = _render(_release_values(BUILD_A, (BUILD_A, BUILD_B)))
    for svc in SERVICES_NAMES:
        assert {
            _worker(svc, BUILD_A),
            _worker(svc, BUILD_B),
            f"{RELEASE}-rollout-{svc}",
        } <= upgraded
    dev = _render({**_one(DEV_VALUES), "image": {"repository": IMAGE, "tag": "dev"}})
    assert {f"{RELEASE}-worker-{svc}-dev" for svc in SERVICES_NAMES} <= dev


def _render(values: dict[str, Any]) -> set[str]:
    """The names of the Deployments and Jobs a release with ``values`` would create."""
    import helm_python as helm

    chart = helm.Chart.load(CHART)
    names: set[str] = set()
    for path, text in chart.render(values, name=RELEASE, namespace=NAMESPACE).items():
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc and doc["kind"] in ("Deployment", "Job"):
                names.add(doc["metadata"]["name"])
    return names


def _worker(service: str, build_id: str) -> str:
    return f"{RELEASE}-worker-{service}-{build_id}"


def _release_values(current: str, builds: Sequence[str]) -> dict[str, Any]:
    """dev/values.yaml with every worker running ``builds`` (one image tag each, named like
    the build) and ``current`` as the build that takes new executions."""
    values = _one(DEV_VALUES)
    values["image"] = {"repository": IMAGE, "tag": BUILD_A}
    values["workers"] = {
        svc: {
            "versions": [
                {"buildId": build, "image": {"tag": build}, "replicas": 1} for build in builds
            ],
            "currentBuildId": current,
        }
        for svc in SERVICES_NAMES
    }
    return values


# -- the end-to-end test on kind ---------------------------------------------------------------


def _skip_reason() -> str | None:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if os.environ.get("ADX_E2E") != "1":
        needs = f" (and {', '.join(missing)} on PATH)" if missing else ""
        return f"the kind end-to-end test runs only with ADX_E2E=1{needs}"
    if missing:
        return f"the kind end-to-end test needs {', '.join(missing)} on PATH"
    return None


SKIP_REASON = _skip_reason()


def run(
    args: Sequence[str],
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command from the repository root; a failure shows its whole output."""
    result = subprocess.run(
        list(args),
        cwd=ROOT,
        env=dict(env) if env is not None else None,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} exited {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result


def wait_until(what: str, probe: Callable[[], bool], timeout: float, every: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


@dataclass(frozen=True)
class Cluster:
    """A kind cluster of this test, reached through its own kubeconfig file only."""

    name: str
    kubeconfig: Path

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    @property
    def kind_args(self) -> list[str]:
        return ["--name", self.name, "--kubeconfig", str(self.kubeconfig)]

    def create(self) -> None:
        config = ["--config", str(KIND_CONFIG), "--wait", "180s"]
        run(["kind", "create", "cluster", *self.kind_args, *config], timeout=600)

    def delete(self) -> None:
        run(["kind", "delete", "cluster", *self.kind_args], timeout=300)

    def kubectl(
        self, *args: str, timeout: float = 120, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        command = ["kubectl", "-n", NAMESPACE, *args]
        return run(command, env=self.env, timeout=timeout, check=check, stdin=stdin)

    def helm(self, *args: str, timeout: float = 1200) -> subprocess.CompletedProcess[str]:
        return run(["helm", "-n", NAMESPACE, *args], env=self.env, timeout=timeout)

    def apply(self, manifest: str) -> None:
        self.kubectl("apply", "-f", "-", stdin=manifest)

    def adx(self, service: str, build_id: str, *args: str) -> subprocess.CompletedProcess[str]:
        """`adx ...` in a worker pod of that build: the workers' own Temporal settings."""
        return self.kubectl(
            "exec", f"deploy/{_worker(service, build_id)}", "--", "adx", *args, check=False
        )

    def diagnose(self) -> str:
        return "\n".join(
            self.kubectl(*args, check=False, timeout=60).stdout
            for args in (("get", "pods,jobs,tenants", "-o", "wide"), ("get", "events"))
        )


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    made = Cluster(f"adx-e2e-{uuid.uuid4().hex[:8]}", tmp_path / "kubeconfig")
    try:
        made.create()
        yield made
    finally:
        # Printed with the failure, if there is one; the cluster goes in every case.
        if made.kubeconfig.exists():
            print(made.diagnose())
        made.delete()


@contextmanager
def port_forward(cluster: Cluster, service: str, port: int) -> Iterator[str]:
    """``127.0.0.1:<free port>`` forwarded to ``service``'s ``port`` while the block runs."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        local = probe.getsockname()[1]
    forward = subprocess.Popen(
        ["kubectl", "-n", NAMESPACE, "port-forward", f"svc/{service}", f"{local}:{port}"],
        env=cluster.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(f"port-forward to {service}", lambda: _tcp_open(local), timeout=60, every=0.5)
        yield f"127.0.0.1:{local}"
    finally:
        forward.terminate()
        forward.wait(timeout=10)


def _tcp_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass(frozen=True)
class Execution:
    running: bool
    step: str | None
    build_id: str | None


def describe_provisioning(address: str, tenant_uid: str) -> Execution | None:
    """The Tenant's provisioning as Temporal describes it, or None before it exists."""
    from temporalio.client import Client, WorkflowExecutionStatus
    from temporalio.service import RPCError, RPCStatusCode

    from adx_core.contracts import search
    from adx_core.contracts.tenants import provisioning_workflow_id
    from adx_core.temporal import deployments

    async def describe() -> Execution | None:
        client = await Client.connect(address, namespace="default")
        handle = client.get_workflow_handle(provisioning_workflow_id(tenant_uid))
        try:
            found = await handle.describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return None
            raise
        return Execution(
            running=found.status == WorkflowExecutionStatus.RUNNING,
            step=found.typed_search_attributes.get(search.STEP),
            build_id=deployments.execution_build_id(found),
        )

    return asyncio.run(describe())


def current_build_id(address: str, service: str) -> str | None:
    from temporalio.client import Client

    from adx_core.temporal import deployments

    async def current() -> str | None:
        client = await Client.connect(address, namespace="default")
        state = await deployments.describe(client, f"adx-{service}")
        return state.current_build_id if state else None

    return asyncio.run(current())


def tenant_manifest(name: str) -> str:
    """examples/tenant.yaml under another name (slug) and admin address."""
    tenant = _one(TENANT_EXAMPLE)
    tenant["metadata"]["name"] = name
    tenant["spec"]["admin"]["email"] = f"ada@{name}.example"
    return yaml.safe_dump(tenant)


def tenant_uid(cluster: Cluster, name: str) -> str:
    uid = cluster.kubectl("get", "tenant", name, "-o", "jsonpath={.metadata.uid}").stdout
    assert uid, f"tenant {name} has no uid"
    return uid


def wait_ready(cluster: Cluster, name: str) -> None:
    cluster.kubectl(
        "wait", f"tenant/{name}", "--for=condition=Ready", "--timeout=600s", timeout=660
    )


def release_values(tmp_path: Path, current: str, builds: Sequence[str]) -> Path:
    path = tmp_path / f"values-{'-'.join(builds)}.yaml"
    path.write_text(yaml.safe_dump(_release_values(current, builds)))
    return path


def install_backing_services(cluster: Cluster) -> None:
    for manifest in (TEMPORAL_DEV, SERVICES):
        cluster.apply(manifest.read_text())
    for name in ("temporal-dev", "postgres", "mailpit"):
        cluster.kubectl("rollout", "status", f"deploy/{name}", "--timeout=600s", timeout=660)


@pytest.mark.e2e
@pytest.mark.timeout(3600)
@pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")
def test_blue_green_upgrade_on_kind(cluster: Cluster, tmp_path: Path) -> None:
    # Build A and build B are the same code under two tags: the replay gate passes, and
    # what this test checks is the routing of executions, not a code change.
    buildkit = {**os.environ, "DOCKER_BUILDKIT": "1"}  # the Dockerfile uses RUN --mount
    run(["docker", "build", "--tag", f"{IMAGE}:{BUILD_A}", "."], timeout=1800, env=buildkit)
    run(["docker", "tag", f"{IMAGE}:{BUILD_A}", f"{IMAGE}:{BUILD_B}"], timeout=60)
    images = [f"{IMAGE}:{BUILD_A}", f"{IMAGE}:{BUILD_B}"]
    run(["kind", "load", "docker-image", *images, "--name", cluster.name], timeout=600)

    install_backing_services(cluster)
    cluster.helm("install", "adx-core-crds", str(CRDS_CHART), "--wait", "--timeout", "5m")
    # Build A only, made current by the post-install hook Jobs.
    cluster.helm(
        "install", RELEASE, str(CHART), "-f", str(release_values(tmp_path, BUILD_A, (BUILD_A,))),
        "--wait", "--timeout", "15m",
    )  # fmt: skip
    cluster.helm("test", RELEASE, "--timeout", "5m", timeout=360)

    cluster.kubectl("apply", "-f", str(TENANT_EXAMPLE))
    wait_ready(cluster, "acme")

    with port_forward(cluster, "temporal-dev", 7233) as temporal:
        for svc in SERVICES_NAMES:
            assert current_build_id(temporal, svc) == BUILD_A
        acme = describe_provisioning(temporal, tenant_uid(cluster, "acme"))
        assert acme is not None
        assert (acme.running, acme.build_id) == (False, BUILD_A)

        # A provisioning held open on A: with no mail server its welcome step keeps retrying
        # (for up to five minutes, the step's deadline).
        cluster.kubectl("scale", "deploy/mailpit", "--replicas=0")
        mailpit = "app.kubernetes.io/name=mailpit"
        cluster.kubectl("wait", "pod", "-l", mailpit, "--for=delete", "--timeout=120s", timeout=180)
        cluster.apply(tenant_manifest("pinned"))
        pinned_uid = tenant_uid(cluster, "pinned")

        def held_on_a() -> bool:
            found = describe_provisioning(temporal, pinned_uid)
            return found == Execution(True, "send_welcome_notification", BUILD_A)

        wait_until("the pinned provisioning to wait for its mail on A", held_on_a, timeout=180)

        # Blue-green: A and B side by side, B current. The hook Jobs promote B (pollers,
        # replay gate); a refusal would fail them and --atomic would restore the release.
        cluster.helm(
            "upgrade", RELEASE, str(CHART),
            "-f", str(release_values(tmp_path, BUILD_B, (BUILD_A, BUILD_B))),
            "--atomic", "--wait", "--timeout", "15m",
        )  # fmt: skip
        for svc in SERVICES_NAMES:
            assert current_build_id(temporal, svc) == BUILD_B
        status = cluster.adx("tenants", BUILD_B, "rollout", "status", "--service", "tenants")
        assert status.returncode == 0, status.stderr
        assert BUILD_B in status.stdout

        # The execution A started is still open, still on A.
        assert held_on_a()
        cluster.kubectl("scale", "deploy/mailpit", "--replicas=1")
        cluster.kubectl("rollout", "status", "deploy/mailpit", "--timeout=300s", timeout=360)
        wait_ready(cluster, "pinned")
        finished = describe_provisioning(temporal, pinned_uid)
        assert finished is not None
        assert (finished.running, finished.build_id) == (False, BUILD_A)

        # New executions go to B.
        cluster.apply(tenant_manifest("fresh"))
        wait_ready(cluster, "fresh")
        fresh = describe_provisioning(temporal, tenant_uid(cluster, "fresh"))
        assert fresh is not None
        assert (fresh.running, fresh.build_id) == (False, BUILD_B)

    # With no pinned execution left on it, A drains (dev/temporal-dev.yaml re-checks every
    # 5 s after 30 s); exit 3 means still draining.
    def drained() -> bool:
        answer = cluster.adx(
            "tenants", BUILD_B, "rollout", "drain-status", "--service", "tenants",
            "--build-id", BUILD_A,
        )  # fmt: skip
        assert answer.returncode in (0, 3), answer.stderr
        return answer.returncode == 0 and f"tenants {BUILD_A}: drained" in answer.stdout

    wait_until("build A of the tenants worker to drain", drained, timeout=300, every=10)
