"""A ``store`` fixture that runs each contract test once per provider, each against its
real server, each test in a bucket or container of its own."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adx_core.storage import StorageProvider
from tests.support.storage import KINDS, StorageServer, local_env, provider_for


def storage_env(request: pytest.FixtureRequest, kind: str, root: Path) -> dict[str, str]:
    if kind == "local":
        return local_env(root)
    server: StorageServer = request.getfixturevalue(f"{kind}_server")
    return server.env(f"adx-{uuid.uuid4().hex[:16]}")


@pytest.fixture(params=KINDS)
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[StorageProvider]:
    kind: str = request.param
    provider = await provider_for(
        kind,
        storage_env(request, kind, tmp_path / "store"),
        monkeypatch,
        # The smallest part S3 allows, so 64 MB objects go up in many parts.
        ADX_STORAGE_PART_SIZE=str(5 * 1024 * 1024),
    )
    try:
        yield provider
    finally:
        await provider.close()
