"""The session check the API middleware uses, and both tenant-context caches."""

from __future__ import annotations

import asyncio
import uuid

import jwt
import pytest

from adx_core.auth import Role, verify_token
from adx_core.cache import InProcessCache, RedisCache, context_key
from adx_core.db.engine import Sessions
from adx_core.sessions import (
    SessionUnavailableError,
    issue_session_token,
    revoke_sessions,
    session_is_active,
)
from adx_core.settings import Settings
from tests.integration.users.conftest import World


async def test_a_session_is_active_until_revoked_and_only_in_its_tenant(
    world: World, sessions: Sessions, settings: Settings
) -> None:
    acme = await world.tenant("acme")
    globex = await world.tenant("globex")
    ada = await world.user("ada@example.test", [(acme, "member"), (globex, "member")])
    sid = uuid.uuid4()
    issued = await issue_session_token(
        sessions, settings, session_id=sid, user_id=ada, tenant_id=acme, role=Role.MEMBER
    )
    claims = verify_token(settings, issued.token)
    assert claims.session_id == str(sid)
    assert (claims.user_id, claims.tenant_id) == (str(ada), str(acme))
    exp = jwt.decode(issued.token, options={"verify_signature": False})["exp"]
    assert abs(exp - issued.expires_at.timestamp()) <= 2

    # Issuing again (a retried activity) keeps the session and its expiry.
    again = await issue_session_token(
        sessions, settings, session_id=sid, user_id=ada, tenant_id=acme, role=Role.MEMBER
    )
    assert again.expires_at == issued.expires_at
    assert await world.scalar("SELECT count(*) FROM auth_sessions") == 1

    assert await session_is_active(sessions, acme, sid)
    assert not await session_is_active(sessions, globex, sid)  # another tenant's scope
    assert not await session_is_active(sessions, acme, uuid.uuid4())
    assert not await session_is_active(sessions, acme, "not-a-uuid")

    assert await revoke_sessions(sessions, acme, ada) == 1
    assert await revoke_sessions(sessions, acme, ada) == 0
    assert not await session_is_active(sessions, acme, sid)
    with pytest.raises(SessionUnavailableError):
        await issue_session_token(
            sessions, settings, session_id=sid, user_id=ada, tenant_id=acme, role=Role.MEMBER
        )


async def test_an_expired_session_is_not_active(
    world: World, sessions: Sessions, settings: Settings
) -> None:
    acme = await world.tenant("acme")
    ada = await world.user("ada@example.test", [(acme, "member")])
    sid = uuid.uuid4()
    await issue_session_token(
        sessions, settings, session_id=sid, user_id=ada, tenant_id=acme, role=Role.MEMBER
    )
    await world.execute(
        "UPDATE auth_sessions SET expires_at = now() - interval '1 second' WHERE id = :s", s=sid
    )
    assert not await session_is_active(sessions, acme, sid)


async def test_tokens_without_sid_still_verify(settings: Settings) -> None:
    from adx_core.auth import mint_token

    token = mint_token(settings, user_id="u", tenant_id=str(uuid.uuid4()), roles=[Role.MEMBER])
    assert verify_token(settings, token).session_id is None


async def test_in_process_cache_expires_and_copies() -> None:
    cache = InProcessCache(ttl_seconds=1)
    value = {"slug": "acme", "permissions": {"member": ["files.read"]}}
    await cache.set("t1", value)
    got = await cache.get("t1")
    assert got == value
    assert got is not None
    got["slug"] = "changed"
    assert (await cache.get("t1")) == value
    await cache.invalidate("t1")
    assert await cache.get("t1") is None
    await cache.set("t2", value)
    await asyncio.sleep(1.1)
    assert await cache.get("t2") is None


async def test_in_process_cache_is_bounded() -> None:
    cache = InProcessCache(ttl_seconds=60, max_entries=3)
    for i in range(10):
        await cache.set(f"t{i}", {"i": i})
    assert await cache.get("t9") == {"i": 9}
    assert await cache.get("t0") is None


async def test_redis_cache_round_trip_ttl_and_corruption(redis_cache: RedisCache) -> None:
    await redis_cache.set("t1", {"slug": "acme"})
    assert await redis_cache.get("t1") == {"slug": "acme"}
    assert 0 < await redis_cache._redis.ttl(context_key("t1")) <= 60
    await redis_cache._redis.set(context_key("t1"), "{not json")
    assert await redis_cache.get("t1") is None
    await redis_cache.set("t1", {"slug": "acme"})
    await redis_cache.invalidate("t1")
    assert await redis_cache.get("t1") is None


async def test_an_unreachable_redis_is_a_miss_not_an_error() -> None:
    from adx_cli.devstack.net import free_port

    cache = RedisCache(f"redis://127.0.0.1:{free_port()}/0", ttl_seconds=60)
    try:
        await cache.set("t1", {"slug": "acme"})
        assert await cache.get("t1") is None
    finally:
        await cache.close()
