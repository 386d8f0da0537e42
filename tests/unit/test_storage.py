"""Storage keys stay inside their prefix, and prefix operations are idempotent."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from adx_core.storage import LocalStorage, tenant_prefix
from adx_core.storage.local import MARKER, UnsafeKeyError

TENANT = "7d3c1a8e-59f4-4e1b-9a2c-0f5e6d7c8b9a"


def test_tenant_prefix_is_built_from_a_canonical_uuid() -> None:
    """Any UUID spelling gives the same canonical ``tenants/<uuid>/`` prefix."""
    expected = f"tenants/{TENANT}/"
    assert tenant_prefix(TENANT) == expected
    assert tenant_prefix(uuid.UUID(TENANT)) == expected
    assert tenant_prefix(TENANT.upper()) == expected
    assert tenant_prefix(TENANT.replace("-", "")) == expected
    assert tenant_prefix(f"urn:uuid:{TENANT}") == expected


@pytest.mark.parametrize(
    "bad", ["", "acme", "../x", f"{TENANT}/../..", f"../{TENANT}", "tenants/x", "\x00", " " * 36]
)
def test_tenant_prefix_rejects_non_uuids(bad: str) -> None:
    """Nothing but a UUID can become part of a storage key."""
    with pytest.raises(ValueError, match="badly formed hexadecimal UUID string"):
        tenant_prefix(bad)


async def test_ensure_prefix_is_idempotent(tmp_path: Path) -> None:
    """The first call creates the prefix (True); later calls find it (False)."""
    storage = LocalStorage(tmp_path)
    prefix = tenant_prefix(TENANT)
    assert not await storage.prefix_exists(prefix)
    assert await storage.ensure_prefix(prefix) is True
    assert await storage.ensure_prefix(prefix) is False
    assert await storage.prefix_exists(prefix)
    assert (tmp_path / prefix / MARKER).is_file()


async def test_ensure_prefix_finishes_a_half_made_prefix(tmp_path: Path) -> None:
    """A folder left without its marker (a crash mid-call) is completed on retry."""
    storage = LocalStorage(tmp_path)
    prefix = tenant_prefix(TENANT)
    (tmp_path / prefix).mkdir(parents=True)
    assert await storage.ensure_prefix(prefix) is True
    assert await storage.prefix_exists(prefix)


async def test_delete_prefix_is_idempotent(tmp_path: Path) -> None:
    """Deleting counts the objects removed (not the marker), then finds nothing to remove."""
    storage = LocalStorage(tmp_path)
    prefix = tenant_prefix(TENANT)
    await storage.ensure_prefix(prefix)
    (tmp_path / prefix / "a.txt").write_text("a")
    (tmp_path / prefix / "sub").mkdir()
    (tmp_path / prefix / "sub" / "b.txt").write_text("b")
    assert await storage.delete_prefix(prefix) == 2
    assert not (tmp_path / prefix).exists()
    assert await storage.delete_prefix(prefix) == 0
    assert await storage.delete_prefix(tenant_prefix(uuid.uuid4())) == 0


async def test_delete_prefix_leaves_other_tenants_alone(tmp_path: Path) -> None:
    """Removing one tenant's prefix does not touch another's."""
    storage = LocalStorage(tmp_path)
    other = tenant_prefix(uuid.uuid4())
    await storage.ensure_prefix(tenant_prefix(TENANT))
    await storage.ensure_prefix(other)
    await storage.delete_prefix(tenant_prefix(TENANT))
    assert await storage.prefix_exists(other)


@pytest.mark.parametrize(
    "key",
    ["../x", "../../etc", "tenants/../../x", "/etc", "/tmp/elsewhere", "a/../../b"],  # noqa: S108
)
async def test_keys_escaping_the_root_are_refused(tmp_path: Path, key: str) -> None:
    """Relative climbs and absolute paths are refused by every operation."""
    storage = LocalStorage(tmp_path / "root")
    with pytest.raises(UnsafeKeyError):
        await storage.ensure_prefix(key)
    with pytest.raises(UnsafeKeyError):
        await storage.prefix_exists(key)
    with pytest.raises(UnsafeKeyError):
        await storage.delete_prefix(key)
    assert not (tmp_path / "x").exists()


async def test_symlink_out_of_the_root_is_refused(tmp_path: Path) -> None:
    """A link inside the root that points outside it cannot be used to escape."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("keep")
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(outside, root / "link")
    storage = LocalStorage(root)
    with pytest.raises(UnsafeKeyError):
        await storage.delete_prefix("link")
    with pytest.raises(UnsafeKeyError):
        await storage.ensure_prefix("link/tenant")
    assert (outside / "precious.txt").read_text() == "keep"


@pytest.mark.parametrize("key", ["", ".", "./", "tenants/..", "a/b/../.."])
async def test_deleting_the_root_is_refused(tmp_path: Path, key: str) -> None:
    """No key that resolves to the root itself can delete it."""
    (tmp_path / "keep.txt").write_text("keep")
    storage = LocalStorage(tmp_path)
    with pytest.raises(UnsafeKeyError):
        await storage.delete_prefix(key)
    assert (tmp_path / "keep.txt").exists()


def test_root_is_resolved(tmp_path: Path) -> None:
    """The root is stored absolute and resolved, so the containment check is sound."""
    storage = LocalStorage(tmp_path / "a" / ".." / "b")
    assert storage.root == (tmp_path / "b").resolve()
    assert storage.name == "local"
