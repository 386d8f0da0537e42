"""Per-tenant rate limiting: ``ADX_RATE_LIMIT_REQUESTS`` per ``ADX_RATE_LIMIT_WINDOW_SECONDS``.

A caller's requests count against its tenant (every user and key of a tenant share one
budget). Anonymous requests that are served (shared links under ``/s/``, an EventSource
with a stream token) count against the client's address, with the same budget. Probes,
metrics, the API document and OPTIONS are not counted, and neither is a request refused
before authentication.

The counting is the ``limits`` library's sliding window counter: two counters per key (this
window and the last, weighted), so there is no burst at a window's edge, and a refused
request does not count. It lives in Redis when ``ADX_REDIS_URL`` is set, shared by every API
replica, and in this process otherwise.

Headers (IETF draft "RateLimit header fields for HTTP", structured-field form):
``RateLimit-Policy: "tenant";q=1200;w=60`` on every counted answer, and on a 429 also
``RateLimit: "tenant";r=0;t=<seconds>`` and ``Retry-After: <seconds>``.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import hdrs, web
from limits import RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import StorageError
from redis.asyncio import ConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from adx_api.keys import CLAIMS, SETTINGS
from adx_api.middleware import PUBLIC_PATHS
from adx_api.problems import ProblemError
from adx_core.logging import get_logger
from adx_core.settings import Settings

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

log = get_logger(__name__)

KEY_PREFIX = "adx:rate-limit"
# Every request waits for the counter: a Redis that answers slowly must not slow the API.
_REDIS_TIMEOUT_SECONDS = 0.25
# After a Redis failure, count in process for this long before asking Redis again, rather
# than paying a timeout on every request while it is away.
_REDIS_RETRY_SECONDS = 5.0


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    # When the next request will fit (whole seconds, at least 1); 0 when allowed.
    retry_after: int = 0


class RequestBudget:
    """``requests`` per ``window_seconds`` per key, in Redis (``redis_url``) or in process.

    Fails open: while Redis is unreachable the count goes on in this process (each replica
    then allows the full budget on its own) rather than refusing or failing requests. The
    limit protects the service; an outage of its counter must not become an outage of the
    API.
    """

    def __init__(self, requests: int, window_seconds: int, redis_url: str | None = None) -> None:
        self.requests = requests
        self.window_seconds = window_seconds
        self._item = RateLimitItemPerSecond(requests, window_seconds, namespace="adx-api")
        self._local = SlidingWindowCounterRateLimiter(MemoryStorage())
        self._pool: ConnectionPool | None = None
        self._shared: SlidingWindowCounterRateLimiter | None = None
        self._shared_down_until = 0.0
        if redis_url is not None:
            self._pool = ConnectionPool.from_url(
                redis_url,
                socket_timeout=_REDIS_TIMEOUT_SECONDS,
                socket_connect_timeout=_REDIS_TIMEOUT_SECONDS,
                # No retries: a failed count falls back at once (see above).
                retry=Retry(NoBackoff(), 0),
            )
            options: dict[str, Any] = {"connection_pool": self._pool}
            storage = RedisStorage(
                _limits_uri(redis_url),
                implementation="redispy",
                wrap_exceptions=True,
                key_prefix=KEY_PREFIX,
                **options,
            )
            self._shared = SlidingWindowCounterRateLimiter(storage)

    @classmethod
    def from_settings(cls, settings: Settings) -> RequestBudget:
        url = settings.redis_url.get_secret_value() if settings.redis_url else None
        return cls(settings.rate_limit_requests, settings.rate_limit_window_seconds, url)

    @property
    def store(self) -> str:
        """Where the count is kept right now."""
        return "redis" if self._use_shared() else "in-process"

    def policy(self, scope: str) -> str:
        return f'"{scope}";q={self.requests};w={self.window_seconds}'

    async def spend(self, key: str) -> Verdict:
        """Count one request for ``key``; refused when the budget is used up."""
        if self._shared is not None and self._use_shared():
            try:
                verdict = await self._spend(self._shared, key)
            except (StorageError, RedisError, OSError) as err:
                self._shared_failed(err)
            else:
                if self._shared_down_until:
                    self._shared_down_until = 0.0
                    log.info("rate limit counting is back in redis")
                return verdict
        return await self._spend(self._local, key)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()

    async def _spend(self, limiter: SlidingWindowCounterRateLimiter, key: str) -> Verdict:
        if await limiter.hit(self._item, key):
            return Verdict(allowed=True)
        stats = await limiter.get_window_stats(self._item, key)
        return Verdict(allowed=False, retry_after=max(1, math.ceil(stats.reset_time - time.time())))

    def _use_shared(self) -> bool:
        return self._shared is not None and time.monotonic() >= self._shared_down_until

    def _shared_failed(self, err: Exception) -> None:
        cause = err.storage_error if isinstance(err, StorageError) else err
        if not self._shared_down_until:
            log.warning(
                "rate limit store unavailable; counting in process",
                error=type(cause).__name__,
            )
        self._shared_down_until = time.monotonic() + _REDIS_RETRY_SECONDS


def _limits_uri(redis_url: str) -> str:
    """The URI ``limits`` reads its storage type from (the pool above does the connecting)."""
    if redis_url.startswith("unix://"):
        return "async+redis+unix://" + redis_url.removeprefix("unix://")
    return "async+" + redis_url


RATE_LIMITER = web.AppKey("rate_limiter", RequestBudget)


async def rate_limit_ctx(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx``: the app's request budget, unless ADX_RATE_LIMIT_REQUESTS is 0."""
    settings = app[SETTINGS]
    if settings.rate_limit_requests == 0:
        yield
        return
    budget = RequestBudget.from_settings(settings)
    app[RATE_LIMITER] = budget
    yield
    await budget.close()


def _scope(request: web.Request) -> tuple[str, str] | None:
    """Whose budget a request spends: (policy name, key), or ``None`` when it is not counted."""
    claims = request.get(CLAIMS)
    if claims is not None:
        return "tenant", f"tenant:{claims.tenant_id}"
    if request.path in PUBLIC_PATHS or request.method == hdrs.METH_OPTIONS:
        return None  # probes, metrics, the API document; preflights and tus discovery
    # Anonymous but served: shared links (/s/...), an EventSource with a stream token.
    return "address", f"address:{request.remote or 'unknown'}"


@web.middleware
async def rate_limit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse a request over its tenant's budget with 429 before its handler runs.

    The innermost middleware: it needs the claims authentication put on the request.
    """
    budget = request.app.get(RATE_LIMITER)
    scope = _scope(request) if budget is not None else None
    if budget is None or scope is None:
        return await handler(request)
    name, key = scope
    policy = budget.policy(name)
    verdict = await budget.spend(key)
    if not verdict.allowed:
        raise ProblemError(
            429,
            "rate-limited",
            f"more than {budget.requests} requests in {budget.window_seconds} s;"
            f" retry in {verdict.retry_after} s",
            headers={
                "Retry-After": str(verdict.retry_after),
                "RateLimit-Policy": policy,
                "RateLimit": f'"{name}";r=0;t={verdict.retry_after}',
            },
        )
    try:
        response = await handler(request)
    except ProblemError as problem:
        problem.headers.setdefault("RateLimit-Policy", policy)
        raise
    if not response.prepared:  # a stream's headers are already out
        response.headers.setdefault("RateLimit-Policy", policy)
    return response
