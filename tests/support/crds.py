"""Check custom resources against our CRDs the way the API server would: the structural
OpenAPI schema (jsonschema) and the ``x-kubernetes-validations`` CEL rules (evaluated by
``common-expression-language``), with transition rules (those naming ``oldSelf``) only on
an update and only where the old object has the value too.

No kube-apiserver can run here; this is what the tests use in its place.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cel
import yaml
from jsonschema import Draft202012Validator

CRDS = Path(__file__).resolve().parents[2] / "crds"


def load_crd(name: str) -> dict[str, Any]:
    crd: dict[str, Any] = yaml.safe_load((CRDS / f"{name}.yaml").read_text())
    return crd


def schema_of(crd: dict[str, Any], version: str = "v1alpha1") -> dict[str, Any]:
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    schema: dict[str, Any] = served["schema"]["openAPIV3Schema"]
    return schema


def problems(crd: dict[str, Any], obj: Any, old: Any = None) -> list[str]:
    """Why the API server would refuse ``obj`` (an update of ``old`` when given), against
    the schema of the version its apiVersion names."""
    version = str(obj.get("apiVersion", "")).rpartition("/")[2] if isinstance(obj, dict) else ""
    schema = schema_of(crd, version or "v1alpha1")
    found = [
        f"{'/'.join(str(p) for p in error.absolute_path) or '(root)'}: {error.message}"
        for error in Draft202012Validator(schema).iter_errors(obj)
    ]
    found += list(_set_duplicates(schema, obj, ""))
    if not found:  # the API server runs CEL only on objects that pass the schema
        found += list(_cel(schema, obj, old, "", old is not None))
    return found


def _set_duplicates(schema: dict[str, Any], value: Any, path: str) -> Iterator[str]:
    if isinstance(value, list):
        if schema.get("x-kubernetes-list-type") == "set" and len(set(map(repr, value))) < len(
            value
        ):
            yield f"{path}: duplicate entries in a set"
        for index, item in enumerate(value):
            yield from _set_duplicates(schema.get("items", {}), item, f"{path}/{index}")
    elif isinstance(value, dict):
        for key, child in schema.get("properties", {}).items():
            if key in value:
                yield from _set_duplicates(child, value[key], f"{path}/{key}")


def _cel(schema: dict[str, Any], value: Any, old: Any, path: str, updating: bool) -> Iterator[str]:
    for rule in schema.get("x-kubernetes-validations", []):
        transition = "oldSelf" in rule["rule"]
        if transition and (not updating or old is None):
            continue
        context = {"self": value, "oldSelf": old} if transition else {"self": value}
        if cel.evaluate(rule["rule"], context) is not True:
            yield f"{path or '(root)'}: {rule.get('message', rule['rule'])}"
    if isinstance(value, dict):
        for key, child in schema.get("properties", {}).items():
            if key in value:
                previous = old.get(key) if isinstance(old, dict) else None
                yield from _cel(child, value[key], previous, f"{path}/{key}", updating)
    elif isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            yield from _cel(schema["items"], item, None, f"{path}/{index}", updating)


def structural_gaps(schema: dict[str, Any], path: str = "") -> Iterator[str]:
    """Where the schema is not structural: every node needs a type (the root's metadata
    is the API server's own)."""
    if "type" not in schema:
        yield f"{path or '(root)'}: no type"
    for key, child in schema.get("properties", {}).items():
        yield from structural_gaps(child, f"{path}/{key}")
    if "items" in schema:
        yield from structural_gaps(schema["items"], f"{path}/items")


def field_exists(schema: dict[str, Any], json_path: str) -> bool:
    """Whether a printer column's ``.a.b[?(...)].c`` path names fields of the schema."""
    node: dict[str, Any] = schema
    plain = re.sub(r"\[[^\]]*\]", "[]", json_path)  # filters hold dots of their own
    for part in plain.lstrip(".").split("."):
        name = part.split("[", 1)[0]
        if name == "metadata" and node is schema:
            return True
        if name not in node.get("properties", {}):
            return False
        node = node["properties"][name]
        if "[" in part:
            node = node.get("items", {})
    return True
