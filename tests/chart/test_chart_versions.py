"""Worker versions side by side (blue-green, progressive), the rollout hook Jobs and the
migration hook Job."""

from __future__ import annotations

from typing import Any

import click
import pytest

from adx_cli.main import main as adx
from tests.chart.helpers import (
    CHART,
    PRE_INSTALL_HOOKS,
    WORKERS,
    Manifest,
    manifests,
    of_kind,
    render,
    values_file,
)

BLUE_GREEN = values_file(CHART / "ci" / "blue-green-values.yaml")
PROGRESSIVE = values_file(CHART / "ci" / "progressive-values.yaml")
BUILD_ID = "adx.dev/build-id"


def component_is(obj: Manifest, name: str) -> bool:
    return bool(obj["metadata"]["labels"]["app.kubernetes.io/component"] == name)


def worker_deployments(objects: list[Manifest], svc: str) -> dict[str, Manifest]:
    """The Deployments of one worker service, by build id."""
    return {
        d["metadata"]["labels"][BUILD_ID]: d
        for d in of_kind(objects, "Deployment")
        if component_is(d, f"worker-{svc}")
    }


def container(pod_owner: Manifest) -> dict[str, Any]:
    (only,) = pod_owner["spec"]["template"]["spec"]["containers"]
    return dict(only)


def env_names(pod_owner: Manifest) -> dict[str, Any]:
    return {e["name"]: e for e in container(pod_owner).get("env", [])}


def jobs(objects: list[Manifest], mode: str = "promote") -> dict[str, Manifest]:
    """The rollout hook Jobs (promote, or restore on helm rollback), by service."""
    return {
        j["metadata"]["labels"]["adx.dev/service"]: j
        for j in of_kind(objects, "Job")
        if j["metadata"]["labels"].get("adx.dev/rollout") == mode
    }


def migration_job(objects: list[Manifest]) -> Manifest:
    (job,) = (j for j in of_kind(objects, "Job") if component_is(j, "migrate"))
    return job


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


@pytest.fixture(scope="module")
def blue_green() -> list[Manifest]:
    return manifests(render(BLUE_GREEN))


@pytest.mark.parametrize("svc", WORKERS)
def test_two_versions_run_side_by_side_without_sharing_pods(
    blue_green: list[Manifest], svc: str
) -> None:
    found = worker_deployments(blue_green, svc)
    assert len(found) == 2
    (a, b) = found.values()
    sel_a, sel_b = (d["spec"]["selector"]["matchLabels"] for d in (a, b))
    pods_a, pods_b = (d["spec"]["template"]["metadata"]["labels"] for d in (a, b))
    assert sel_a != sel_b
    assert matches(sel_a, pods_a)
    assert not matches(sel_a, pods_b)
    assert matches(sel_b, pods_b)
    assert not matches(sel_b, pods_a)
    assert a["metadata"]["name"] != b["metadata"]["name"]
    # The Service, the PodDisruptionBudget and the NetworkPolicy cover both versions.
    (service,) = (s for s in of_kind(blue_green, "Service") if component_is(s, f"worker-{svc}"))
    (pdb,) = (
        p for p in of_kind(blue_green, "PodDisruptionBudget") if component_is(p, f"worker-{svc}")
    )
    (policy,) = (
        n for n in of_kind(blue_green, "NetworkPolicy") if component_is(n, f"worker-{svc}")
    )
    for selector in (
        service["spec"]["selector"],
        pdb["spec"]["selector"]["matchLabels"],
        policy["spec"]["podSelector"]["matchLabels"],
    ):
        assert matches(selector, pods_a)
        assert matches(selector, pods_b)
    for build_id, deployment in found.items():
        assert env_names(deployment)["ADX_WORKER_BUILD_ID"]["value"] == build_id


def test_versions_take_their_own_image_and_resources(blue_green: list[Manifest]) -> None:
    files = worker_deployments(blue_green, "files")
    assert container(files["files-blue"])["image"] == "registry.example.com/adx-core:0.1.0"
    green = container(files["files-green"])
    assert green["image"] == "registry.example.com/adx-core-files:0.2.0"
    assert green["resources"]["limits"]["memory"] == "2Gi"
    assert container(files["files-blue"])["resources"]["limits"]["memory"] == "1Gi"
    assert files["files-green"]["metadata"]["labels"]["app.kubernetes.io/version"] == "0.2.0"
    assert files["files-blue"]["metadata"]["labels"]["app.kubernetes.io/version"] == "0.1.0"
    # users sets no build ids: each version's is its image tag.
    assert set(worker_deployments(blue_green, "users")) == {"0.1.0", "0.2.0"}


def test_a_plain_install_runs_one_version_per_service_named_after_the_tag() -> None:
    objects = manifests(render({"image": {"tag": "3.1.4"}}))
    for svc in WORKERS:
        (deployment,) = worker_deployments(objects, svc).values()
        assert deployment["metadata"]["name"] == f"adx-adx-core-worker-{svc}-3-1-4"
        assert env_names(deployment)["ADX_WORKER_BUILD_ID"]["value"] == "3.1.4"
    assert {svc: j["metadata"]["labels"][BUILD_ID] for svc, j in jobs(objects).items()} == {
        svc: "3.1.4" for svc in WORKERS
    }


def test_each_version_gets_its_own_autoscaler() -> None:
    objects = manifests(render(PROGRESSIVE))
    targets = sorted(
        h["spec"]["scaleTargetRef"]["name"] for h in of_kind(objects, "HorizontalPodAutoscaler")
    )
    assert targets == ["adx-adx-core-worker-tenants-0-2-0", "adx-adx-core-worker-tenants-0-3-0"]
    for deployment in worker_deployments(objects, "tenants").values():
        assert "replicas" not in deployment["spec"]


def test_hook_jobs_run_after_the_release_in_service_order(blue_green: list[Manifest]) -> None:
    found = jobs(blue_green)
    assert list(found) == list(WORKERS)
    weights = [int(j["metadata"]["annotations"]["helm.sh/hook-weight"]) for j in found.values()]
    assert weights == sorted(set(weights))
    for job in found.values():
        annotations = job["metadata"]["annotations"]
        assert annotations["helm.sh/hook"] == "post-install,post-upgrade"
        assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
        assert job["spec"]["backoffLimit"] == 0
        assert job["spec"]["activeDeadlineSeconds"] == 1800
        assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_hook_job_runs_in_the_current_image_with_the_workers_env(
    blue_green: list[Manifest],
) -> None:
    for svc, job in jobs(blue_green).items():
        current = BLUE_GREEN["workers"][svc]["currentBuildId"]
        worker = worker_deployments(blue_green, svc)[current]
        assert container(job)["image"] == container(worker)["image"]
        assert container(job)["envFrom"] == container(worker)["envFrom"]
        worker_env = env_names(worker)
        del worker_env["ADX_WORKER_BUILD_ID"]
        assert env_names(job) == worker_env
        assert container(job)["securityContext"] == container(worker)["securityContext"]
        assert container(job)["volumeMounts"] == container(worker)["volumeMounts"]
        pod, worker_pod = job["spec"]["template"]["spec"], worker["spec"]["template"]["spec"]
        assert pod["securityContext"] == worker_pod["securityContext"]
        # The same volumes, but /tmp: the files worker's is larger for the files it spools, and
        # the Job spools none.
        assert [v for v in pod["volumes"] if v["name"] != "tmp"] == [
            v for v in worker_pod["volumes"] if v["name"] != "tmp"
        ]
        assert [v["name"] for v in pod["volumes"]] == [v["name"] for v in worker_pod["volumes"]]


def test_hook_job_account_has_no_token_and_no_rbac(blue_green: list[Manifest]) -> None:
    accounts = {a["metadata"]["name"]: a for a in of_kind(blue_green, "ServiceAccount")}
    bound = {
        subject["name"]
        for kind in ("RoleBinding", "ClusterRoleBinding")
        for binding in of_kind(blue_green, kind)
        for subject in binding["subjects"]
    }
    for job in jobs(blue_green).values():
        pod = job["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False
        assert pod["serviceAccountName"] in accounts
        assert pod["serviceAccountName"] not in bound


def promote_args(values: dict[str, Any]) -> dict[str, list[str]]:
    return {svc: container(j)["args"] for svc, j in jobs(manifests(render(values))).items()}


def test_manual_strategy_promotes_nothing_but_runs_the_gates() -> None:
    args = promote_args({"rollout": {"strategy": "Manual", "pollersTimeoutSeconds": 30}})
    assert args["users"] == [
        "rollout",
        "promote",
        "--service",
        "users",
        "--build-id",
        "0.1.0",
        "--strategy",
        "Manual",
        "--pollers-timeout",
        "30",
        "--gate-workflow",
        "deployment_check_workflow",
    ]


def test_the_deployment_check_is_the_default_gate_and_empty_runs_none() -> None:
    for args in promote_args({}).values():
        assert args[-2:] == ["--gate-workflow", "deployment_check_workflow"]
    for args in promote_args({"rollout": {"gateWorkflow": ""}}).values():
        assert "--gate-workflow" not in args


def test_all_at_once_with_a_gate_workflow(blue_green: list[Manifest]) -> None:
    args = container(jobs(blue_green)["files"])["args"]
    assert args == [
        "rollout",
        "promote",
        "--service",
        "files",
        "--build-id",
        "files-green",
        "--strategy",
        "AllAtOnce",
        "--pollers-timeout",
        "120",
        "--gate-workflow",
        "deployment_check_workflow",
    ]


def test_progressive_passes_its_steps_and_failure_rate() -> None:
    args = promote_args(PROGRESSIVE)
    assert args["tenants"] == [
        "rollout",
        "promote",
        "--service",
        "tenants",
        "--build-id",
        "0.3.0",
        "--strategy",
        "Progressive",
        "--pollers-timeout",
        "300",
        "--steps",
        "5,20,50",
        "--step-seconds",
        "600",
        "--max-failure-rate",
        "0.02",
        "--gate-workflow",
        "deployment_check_workflow",
    ]
    assert jobs(manifests(render(PROGRESSIVE)))["users"]["spec"]["activeDeadlineSeconds"] == 3600


def test_steps_are_passed_only_to_progressive() -> None:
    for strategy in ("Manual", "AllAtOnce"):
        for args in promote_args({"rollout": {"strategy": strategy}}).values():
            assert "--steps" not in args
            assert "--max-failure-rate" not in args


def test_job_names_fit_a_label_value() -> None:
    objects = manifests(render({"fullnameOverride": "x" * 63}))
    for job in of_kind(objects, "Job"):
        assert len(job["metadata"]["name"]) <= 63
        pre_install = job["metadata"]["labels"]["app.kubernetes.io/component"]
        if pre_install in PRE_INSTALL_HOOKS:
            assert job["metadata"]["name"].endswith(f"x-{pre_install}")
            continue
        kind = "rollout" if job["metadata"]["labels"]["adx.dev/rollout"] == "promote" else "restore"
        assert job["metadata"]["name"].endswith(
            f"-{kind}-" + job["metadata"]["labels"]["adx.dev/service"]
        )


def test_a_helm_rollback_routes_each_service_back_to_its_build(blue_green: list[Manifest]) -> None:
    restores = jobs(blue_green, "restore")
    assert set(restores) == set(WORKERS)
    for svc, job in restores.items():
        assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-rollback"
        assert job["spec"]["backoffLimit"] == 0
        args = container(job)["args"]
        assert args[:4] == ["rollout", "rollback", "--service", svc]
        assert args[4] == "--to"
        assert args[5] == container(jobs(blue_green)[svc])["args"][5]
        assert len(job["metadata"]["name"]) <= 63


@pytest.mark.parametrize("name", ["blue-green", "progressive", "single-version"])
def test_every_hook_job_is_a_command_the_image_understands(name: str) -> None:
    """The Jobs' args parse with the `adx` command the image runs (its entrypoint)."""
    objects = manifests(render(values_file(CHART / "ci" / f"{name}-values.yaml")))
    for job in of_kind(objects, "Job"):
        # The pre-install hooks' commands have tests of their own.
        if job["metadata"]["labels"]["app.kubernetes.io/component"] in PRE_INSTALL_HOOKS:
            continue
        args = container(job)["args"]
        group = adx.commands[args[0]]
        assert isinstance(group, click.Group)
        command = group.commands[args[1]]
        context = command.make_context(args[1], list(args[2:]))
        assert context.params["service"] == job["metadata"]["labels"]["adx.dev/service"]


# -- the migration hook ------------------------------------------------------------------------


def test_the_migration_hook_args_are_the_adx_migrate_command() -> None:
    args = container(migration_job(manifests(render())))["args"]
    command = adx.commands[args[0]]
    assert command.name == "migrate"
    assert not isinstance(command, click.Group)
    context = command.make_context(args[0], list(args[1:]))
    assert context.params == {"revision": "head"}


def test_the_migration_runs_before_everything_and_is_replaced_each_time() -> None:
    objects = manifests(render(BLUE_GREEN))
    job = migration_job(objects)
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    weight = int(annotations["helm.sh/hook-weight"])
    others = [
        int(o["metadata"]["annotations"]["helm.sh/hook-weight"])
        for o in objects
        if o is not job and "helm.sh/hook-weight" in o["metadata"].get("annotations", {})
    ]
    assert others
    assert weight < min(others)
    assert job["spec"]["backoffLimit"] == 3
    assert job["spec"]["activeDeadlineSeconds"] == 600
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    # The newest code's migrations: the top-level image, which the API runs.
    (api,) = (d for d in of_kind(objects, "Deployment") if component_is(d, "api"))
    assert container(job)["image"] == container(api)["image"]


def test_the_migration_needs_nothing_the_release_creates(blue_green: list[Manifest]) -> None:
    """A pre-install hook runs before the release's objects: no ConfigMap, no ServiceAccount,
    no claim. It carries the ConfigMap's settings inline and the workers' secrets by
    reference, plus the owner's URL."""
    job = migration_job(blue_green)
    pod = job["spec"]["template"]["spec"]
    assert "serviceAccountName" not in pod
    assert pod["automountServiceAccountToken"] is False
    assert "envFrom" not in container(job)
    (config,) = of_kind(blue_green, "ConfigMap")
    env = env_names(job)
    inline = {name: e["value"] for name, e in env.items() if "value" in e}
    assert inline == config["data"]
    files = worker_deployments(blue_green, "files")["files-green"]
    worker_secrets = {n: e for n, e in env_names(files).items() if "valueFrom" in e}
    by_reference = {n: e for n, e in env.items() if "valueFrom" in e}
    assert by_reference == {
        **worker_secrets,
        "ADX_MIGRATION_DATABASE_URL": {
            "name": "ADX_MIGRATION_DATABASE_URL",
            "valueFrom": {
                "secretKeyRef": {"name": "adx-core", "key": "ADX_MIGRATION_DATABASE_URL"}
            },
        },
    }
    # The other Jobs' locked-down pod, with only /tmp writable.
    rollout = jobs(blue_green)["files"]
    assert pod["securityContext"] == rollout["spec"]["template"]["spec"]["securityContext"]
    assert container(job)["securityContext"] == container(rollout)["securityContext"]
    # The pod's /tmp, not this process's.
    assert container(job)["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]  # noqa: S108
    (tmp,) = pod["volumes"]
    assert tmp == next(
        v for v in rollout["spec"]["template"]["spec"]["volumes"] if v["name"] == "tmp"
    )


def test_the_migration_url_can_come_from_its_own_secret() -> None:
    values = values_file(CHART / "ci" / "external-secrets-values.yaml")
    env = env_names(migration_job(manifests(render(values, required=False))))
    assert env["ADX_MIGRATION_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "adx-db-owner",
        "key": "url",
    }
    assert env["ADX_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "adx-db", "key": "url"}


def test_no_migration_job_when_disabled() -> None:
    objects = manifests(render({"migrations": {"enabled": False}}))
    assert not [j for j in of_kind(objects, "Job") if component_is(j, "migrate")]
    notes = render({"migrations": {"enabled": False}})["adx-core/templates/NOTES.txt"]
    assert "migrations.enabled is false" in notes
    assert "ADX_MIGRATION_DATABASE_URL=" not in notes
    assert "ADX_MIGRATION_DATABASE_URL=" in render()["adx-core/templates/NOTES.txt"]
