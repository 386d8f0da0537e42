"""Render the charts offline with Helm's Go SDK and parse what they produce."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "adx-core"
CRDS_CHART = ROOT / "helm" / "adx-core-crds"
CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))
# The Kubernetes version every manifest is validated against (and the chart linted for).
KUBE_VERSION = "1.33.0"
RELEASE = "adx"
NAMESPACE = "adx-system"
WORKERS = ("tenants", "files", "users")
# The components of the pre-install hook Jobs: they run before any object of the release exists.
PRE_INSTALL_HOOKS = frozenset({"migrate", "temporal-setup"})

Manifest = dict[str, Any]

# The site values the chart has no default for (its README, Required values): without them
# the workers cannot send mail or scan uploads, so the chart refuses to render. Every render
# of these tests starts from them unless it asks for a bare render; each ci/*.yaml sets them itself.
REQUIRED: dict[str, Any] = {
    "notifications": {"smtp": {"host": "smtp.example.com"}},
    "scanner": {"clamd": {"address": "clamd.clamav.svc.cluster.local:3310"}},
}


@cache
def load_chart(path: Path) -> helm.Chart:
    return helm.Chart.load(path)


def merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """base with over laid on top, key by key in nested mappings, as Helm merges values."""
    result = dict(base)
    for key, value in over.items():
        below = result.get(key)
        if isinstance(below, dict) and isinstance(value, dict):
            result[key] = merged(below, value)
        else:
            result[key] = value
    return result


def render(
    values: dict[str, Any] | None = None, chart: Path = CHART, *, required: bool = True
) -> dict[str, str]:
    """Template path -> rendered text, as `helm template` would print it. For the main chart,
    values go on top of REQUIRED unless required is False (a bare render)."""
    if chart == CHART and required:
        values = merged(REQUIRED, values or {})
    return load_chart(chart).render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)


def manifests(rendered: dict[str, str]) -> list[Manifest]:
    """Every object of a render; NOTES.txt is text, not a manifest."""
    objects: list[Manifest] = []
    for path, text in rendered.items():
        if path.endswith("NOTES.txt"):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


def of_kind(objects: list[Manifest], kind: str) -> Iterator[Manifest]:
    return (obj for obj in objects if obj["kind"] == kind)


def values_file(path: Path) -> dict[str, Any]:
    loaded = yaml.safe_load(path.read_text())
    assert isinstance(loaded, dict)
    return loaded


# A plausible value for each secret the chart references, so that the app can judge the rest.
FAKE_SECRETS = {
    "ADX_DATABASE_URL": "postgresql+asyncpg://adx_app:app-password@postgres:5432/adx",
    "ADX_MIGRATION_DATABASE_URL": "postgresql+asyncpg://adx_owner:owner-password@postgres:5432/adx",
    "ADX_JWT_SECRET": "s" * 48,
    "ADX_CODEC_KEYS": "k1:" + base64.b64encode(b"k" * 32).decode(),
}


def environment_of(workload: Manifest, config: dict[str, str]) -> dict[str, str]:
    """The environment the container starts with: the ConfigMap it reads, then its own env,
    each Secret reference standing for a plausible secret."""
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    environment = dict(config) if "envFrom" in container else {}
    for entry in container.get("env", []):
        if "value" in entry:
            environment[entry["name"]] = entry["value"]
        else:
            environment[entry["name"]] = FAKE_SECRETS.get(entry["name"], "secret-value")
    # The Secret holds the key the values name as active (a rotation in progress), too.
    active = environment.get("ADX_CODEC_ACTIVE_KEY_ID")
    if active and "ADX_CODEC_KEYS" in environment:
        key = base64.b64encode(b"a" * 32).decode()
        environment["ADX_CODEC_KEYS"] += f",{active}:{key}"
    return environment
