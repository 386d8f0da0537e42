"""The tenant-context cache: Redis when ``REDIS_URL`` is set, in-process otherwise.

Values are JSON objects, kept for ``tenant_context_ttl_seconds``. A cache is an
optimisation: the database stays the source of truth, so every Redis failure is answered
as a miss (read) or ignored (write) rather than failing the caller.
"""

from __future__ import annotations

import json
import time
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from adx_core.logging import get_logger
from adx_core.settings import Settings

log = get_logger(__name__)

KEY_PREFIX = "adx:tenant-context:"
# A cache that answers slower than the database it saves us from is worse than none.
_REDIS_TIMEOUT_SECONDS = 0.5

JsonObject = dict[str, Any]


def context_key(tenant_id: str) -> str:
    return f"{KEY_PREFIX}{tenant_id}"


class TenantContextCache(Protocol):
    @property
    def name(self) -> str: ...

    async def get(self, tenant_id: str) -> JsonObject | None:
        """The cached context, or ``None`` on a miss (or when the cache is unreachable)."""
        ...

    async def set(self, tenant_id: str, value: JsonObject) -> None: ...

    async def invalidate(self, tenant_id: str) -> None: ...

    async def close(self) -> None: ...


class InProcessCache:
    """A TTL map for one process: each worker keeps its own copy, so an invalidation
    reaches only this process and the others catch up when their entries expire."""

    name = "in-process"

    def __init__(self, ttl_seconds: int, max_entries: int = 10_000) -> None:
        self._ttl = ttl_seconds
        self._max = max_entries
        # JSON text, not the object: a caller mutating what it got cannot change the cache.
        self._entries: dict[str, tuple[float, str]] = {}

    async def get(self, tenant_id: str) -> JsonObject | None:
        entry = self._entries.get(tenant_id)
        if entry is None:
            return None
        expires, raw = entry
        if expires <= time.monotonic():
            self._entries.pop(tenant_id, None)
            return None
        return _decode(raw)

    async def set(self, tenant_id: str, value: JsonObject) -> None:
        if len(self._entries) >= self._max:
            self._evict()
        self._entries[tenant_id] = (time.monotonic() + self._ttl, json.dumps(value))

    async def invalidate(self, tenant_id: str) -> None:
        self._entries.pop(tenant_id, None)

    async def close(self) -> None:
        self._entries.clear()

    def _evict(self) -> None:
        now = time.monotonic()
        for key in [k for k, (expires, _) in self._entries.items() if expires <= now]:
            del self._entries[key]
        while len(self._entries) >= self._max:
            del self._entries[next(iter(self._entries))]  # the oldest insertion


class RedisCache:
    """Shared by every worker: a context loaded by one is read by the others."""

    name = "redis"

    def __init__(self, url: str, ttl_seconds: int) -> None:
        self._ttl = ttl_seconds
        self._redis: Redis = Redis.from_url(
            url,
            socket_timeout=_REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=_REDIS_TIMEOUT_SECONDS,
            # No client-side retries: Temporal retries activities, and a miss costs one query.
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
        )

    async def get(self, tenant_id: str) -> JsonObject | None:
        try:
            raw = await self._redis.get(context_key(tenant_id))
        except (RedisError, OSError) as err:
            # A cache outage must not break a tenant switch: the caller loads from the
            # database, which it has to be able to do anyway on every miss.
            log.warning("tenant context cache unavailable", error=type(err).__name__)
            return None
        return _decode(raw) if isinstance(raw, str) else None

    async def set(self, tenant_id: str, value: JsonObject) -> None:
        try:
            await self._redis.set(context_key(tenant_id), json.dumps(value), ex=self._ttl)
        except (RedisError, OSError) as err:
            log.warning("tenant context not cached", error=type(err).__name__)

    async def invalidate(self, tenant_id: str) -> None:
        # Unlike a read, a lost invalidation would serve stale data for a whole TTL; the
        # caller (an activity) is retried by Temporal until Redis answers.
        await self._redis.delete(context_key(tenant_id))

    async def close(self) -> None:
        await self._redis.aclose()


def _decode(raw: str) -> JsonObject | None:
    try:
        value = json.loads(raw)
    except ValueError:
        return None  # a corrupt entry is a miss; the next set replaces it
    return value if isinstance(value, dict) else None


def cache_from_settings(settings: Settings) -> TenantContextCache:
    if settings.redis_url is not None:
        return RedisCache(
            settings.redis_url.get_secret_value(), settings.tenant_context_ttl_seconds
        )
    return InProcessCache(settings.tenant_context_ttl_seconds)
