"""The adx-core-crds chart: the CRDs of crds/, byte for byte, as templates Helm upgrades."""

from __future__ import annotations

import helm_python as helm
import kubernetes_validate
import yaml

from tests.chart.helpers import CRDS_CHART, KUBE_VERSION, ROOT, manifests, render

SOURCE = ROOT / "crds"


def test_templates_are_byte_identical_to_crds() -> None:
    source = {p.name: p.read_bytes() for p in SOURCE.glob("*.yaml")}
    copies = {p.name: p.read_bytes() for p in (CRDS_CHART / "templates").glob("*.yaml")}
    assert source
    assert copies == source, "copy crds/*.yaml into helm/adx-core-crds/templates/"


def test_renders_and_validates_every_crd() -> None:
    objects = manifests(render(chart=CRDS_CHART))
    assert sorted(o["metadata"]["name"] for o in objects) == sorted(
        yaml.safe_load(p.read_text())["metadata"]["name"] for p in SOURCE.glob("*.yaml")
    )
    for crd in objects:
        assert crd["kind"] == "CustomResourceDefinition"
        kubernetes_validate.validate(crd, KUBE_VERSION, strict=True)


def test_lints_strictly() -> None:
    report = helm.lint(CRDS_CHART, strict=True, kube_version=f"v{KUBE_VERSION}")
    assert not report["errors"]
    assert not [m for m in report["messages"] if m["severity"] > 1]
