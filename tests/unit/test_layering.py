"""The layering rules of the design, checked on the source with ``ast``.

adx_core imports none of the other packages; the API and the operator never import worker
code; workflow modules import only the standard library, temporalio and the contracts.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {
    "adx_core": ROOT / "core" / "adx_core",
    "adx_api": ROOT / "api" / "adx_api",
    "adx_workers": ROOT / "workers" / "adx_workers",
    "adx_operator": ROOT / "operator" / "adx_operator",
    "adx_cli": ROOT / "cli" / "adx_cli",
}
STDLIB = frozenset(sys.stdlib_module_names) | {"__future__"}


def _module_name(path: Path) -> str:
    for package, base in PACKAGES.items():
        if path.is_relative_to(base):
            parts = [package, *path.relative_to(base).with_suffix("").parts]
            return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    raise AssertionError(f"{path} is in no package")


def imports_of(path: Path) -> set[str]:
    """Every module a file imports, anywhere in it (functions and TYPE_CHECKING included),
    with relative imports resolved to absolute names."""
    return parse_imports(path.read_text(), _module_name(path), path.name == "__init__.py")


def parse_imports(source: str, module: str, is_package: bool) -> set[str]:
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                prefix = ".".join(base[: len(base) - (node.level - 1)])
                target = f"{prefix}.{node.module}" if node.module else prefix
            else:
                target = node.module or ""
            found.add(target)
            # ``from pkg import sub`` may import the submodule pkg.sub.
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def _files(package: str) -> list[Path]:
    return sorted(PACKAGES[package].rglob("*.py"))


def _offending(paths: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{path.relative_to(ROOT)}: {name}"
        for path in paths
        for name in imports_of(path)
        if any(name == f or name.startswith(f + ".") for f in forbidden)
    )


def test_packages_are_where_the_test_looks() -> None:
    """The rules below are checked on real files, not on an empty set."""
    for package in ("adx_core", "adx_api", "adx_workers"):
        assert _files(package), package
    assert _workflow_modules()


def test_core_imports_no_other_package() -> None:
    """adx_core depends on nothing of the API, the workers, the operator or the CLI."""
    bad = _offending(_files("adx_core"), ("adx_api", "adx_workers", "adx_operator", "adx_cli"))
    assert not bad, bad


@pytest.mark.parametrize("package", ["adx_api", "adx_operator"])
def test_api_and_operator_do_not_import_workers(package: str) -> None:
    """The API and the operator start workflows by name through the contracts only."""
    bad = _offending(_files(package), ("adx_workers",))
    assert not bad, bad


def test_workers_do_not_import_the_api_operator_or_cli() -> None:
    """Workers are not built on top of the front ends."""
    bad = _offending(_files("adx_workers"), ("adx_api", "adx_operator", "adx_cli"))
    assert not bad, bad


# The helpers workflow code uses; the rest of common/ (the notification activity) is not
# loaded in the sandbox.
WORKFLOW_HELPERS = ("common/progress.py", "common/saga.py", "common/failures.py")


def _workflow_modules() -> list[Path]:
    base = PACKAGES["adx_workers"]
    defining = [p for p in base.rglob("*.py") if "@workflow.defn" in p.read_text()]
    return sorted({*defining, *(base / helper for helper in WORKFLOW_HELPERS)})


def _allowed_in_sandbox(name: str, allowed: tuple[str, ...]) -> bool:
    top = name.split(".")[0]
    if top in STDLIB:
        return True
    return any(name == a or name.startswith(a + ".") for a in allowed)


@pytest.mark.parametrize(
    "path", _workflow_modules(), ids=lambda p: str(p.relative_to(PACKAGES["adx_workers"]))
)
def test_workflow_modules_import_only_sandbox_safe_modules(path: Path) -> None:
    """Workflow code imports only the stdlib, temporalio, the contracts and common helpers."""
    allowed = ("temporalio", "adx_core.contracts", "adx_workers.common")
    bad = sorted(name for name in imports_of(path) if not _allowed_in_sandbox(name, allowed))
    assert not bad, bad


def test_contracts_import_only_stdlib_and_temporalio() -> None:
    """The contracts are loaded inside the workflow sandbox: stdlib and temporalio only."""
    paths = sorted((PACKAGES["adx_core"] / "contracts").rglob("*.py"))
    bad = sorted(
        f"{path.name}: {name}"
        for path in paths
        for name in imports_of(path)
        if not _allowed_in_sandbox(name, ("temporalio", "adx_core.contracts"))
    )
    assert not bad, bad


def test_the_import_parser_sees_every_form() -> None:
    """Relative, nested and guarded imports are all found, so none slips past the rules."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "from . import saga\n"
        "from ..tenants import activities\n"
        "if TYPE_CHECKING:\n"
        "    import adx_api.keys\n"
        "def f():\n"
        "    from adx_cli import main\n"
    )
    found = parse_imports(source, "adx_workers.common.progress", is_package=False)
    assert {
        "adx_workers.common.saga",
        "adx_workers.tenants.activities",
        "adx_api.keys",
        "adx_cli.main",
    } <= found
    assert _module_name(PACKAGES["adx_workers"] / "tenants" / "workflows.py") == (
        "adx_workers.tenants.workflows"
    )
