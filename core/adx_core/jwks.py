"""An identity provider's signing keys (a JWKS), from a URL or a file, cached and rotated.

The API accepts tokens an identity provider signs with an asymmetric key whose ``kid`` is
in the provider's JSON Web Key Set. Keys come from:

- a URL (``ADX_JWT_JWKS_URL``), fetched with aiohttp so a fetch never blocks the event
  loop. The set is kept for ``ADX_JWT_JWKS_CACHE_SECONDS``. A token naming a kid the set
  does not have is how a rotation shows, so it triggers a fetch at once, but at most one
  such fetch per ``UNKNOWN_KID_REFETCH_SECONDS``: a flood of forged kids cannot hammer the
  provider. When a fetch fails the last good set stays in use; with no set at all the
  caller gets ``KeysUnavailableError`` (the API answers 503 with Retry-After).
- a file (``ADX_JWT_KEYS_FILE``, say a mounted Secret), re-read whenever it changes.

Only public asymmetric signing keys are taken: symmetric (``oct``) keys, private keys and
encryption keys in a set are skipped, so a set can never make an HMAC token acceptable.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import aiohttp
from jwt import PyJWK
from jwt.exceptions import PyJWTError

from adx_core.logging import get_logger

log = get_logger("adx_core.jwks")

RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
ASYMMETRIC_ALGORITHMS = RSA_ALGORITHMS | {"ES256", "ES384", "ES512", "ES256K", "EdDSA"}
_KEY_TYPES = frozenset({"RSA", "EC", "OKP"})

# A token with an unknown kid refetches the set at most this often.
UNKNOWN_KID_REFETCH_SECONDS = 10.0
# After a failed fetch, the next attempt waits this long (and Retry-After says so).
FAILED_FETCH_BACKOFF_SECONDS = 5.0
FETCH_TIMEOUT_SECONDS = 5.0
MAX_DOCUMENT_BYTES = 512 * 1024

Clock = Callable[[], float]
Fetch = Callable[[], Awaitable[bytes]]


class JwksError(ValueError):
    """A key set could not be fetched, read or parsed."""


class KeysUnavailableError(Exception):
    """No key set has been obtained yet, so an identity-provider token cannot be checked."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True)
class SigningKey:
    kid: str
    jwk: PyJWK
    # The token algorithms this key verifies: the key's declared ``alg``, else every
    # algorithm of its type (RSA keys are used for RS* and PS* alike).
    algorithms: frozenset[str]


def parse_jwks(document: bytes | str) -> dict[str, SigningKey]:
    """The usable signing keys of a JWKS document, by kid. A document that is not a key set
    raises JwksError; a key that cannot be used is skipped (and logged)."""
    try:
        data = json.loads(document)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise JwksError("the key set is not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise JwksError('the key set has no "keys" list')
    keys: dict[str, SigningKey] = {}
    for jwk in data["keys"]:
        key = _signing_key(jwk)
        if key is not None and key.kid not in keys:  # the first of a duplicate kid wins
            keys[key.kid] = key
    return keys


def _signing_key(jwk: object) -> SigningKey | None:
    if not isinstance(jwk, dict):
        return None
    kid, kty, declared = jwk.get("kid"), jwk.get("kty"), jwk.get("alg")
    why = None
    if not isinstance(kid, str) or not kid:
        why = "no kid"
    elif jwk.get("use", "sig") != "sig":
        why = "not a signing key"
    elif kty not in _KEY_TYPES:
        why = "not an asymmetric key"  # an oct key would let HMAC tokens through
    elif "d" in jwk:
        why = "a private key"
    elif declared is not None and declared not in ASYMMETRIC_ALGORITHMS:
        why = "an algorithm that is not accepted"
    if why is not None:
        log.warning("jwks key skipped", kid=kid if isinstance(kid, str) else None, reason=why)
        return None
    assert isinstance(kid, str)
    try:
        parsed = PyJWK(jwk)
    except PyJWTError as err:
        log.warning("jwks key skipped", kid=kid, reason=type(err).__name__)
        return None
    if declared is None and kty == "RSA":
        algorithms = RSA_ALGORITHMS
    else:  # EC and OKP keys name their one algorithm through the curve
        algorithms = frozenset({parsed.algorithm_name})
    return SigningKey(kid, parsed, algorithms)


class KeySource(Protocol):
    def known(self, kid: str) -> bool:
        """Whether the keys at hand name ``kid``, without fetching anything."""
        ...

    async def find(self, kid: str) -> SigningKey | None:
        """The key named ``kid``; raises KeysUnavailableError when there are no keys."""
        ...

    async def close(self) -> None: ...


class HttpFetch:
    """GET a JWKS URL with aiohttp; the session is opened on first use, in the running loop."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._session: aiohttp.ClientSession | None = None

    async def __call__(self) -> bytes:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=FETCH_TIMEOUT_SECONDS)
            )
        async with self._session.get(self.url, headers={"Accept": "application/json"}) as answer:
            if answer.status != 200:
                raise JwksError(f"the key set URL answered {answer.status}")
            body = await answer.content.read(MAX_DOCUMENT_BYTES + 1)
        if len(body) > MAX_DOCUMENT_BYTES:
            raise JwksError(f"the key set is larger than {MAX_DOCUMENT_BYTES} bytes")
        return body

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class JwksUrlSource:
    """A key set fetched by ``fetch``: cached, refetched on expiry or an unknown kid."""

    def __init__(
        self,
        fetch: Fetch,
        *,
        cache_seconds: float,
        clock: Clock = time.monotonic,
        unknown_kid_interval: float = UNKNOWN_KID_REFETCH_SECONDS,
        failure_backoff: float = FAILED_FETCH_BACKOFF_SECONDS,
        close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._fetch = fetch
        self._close = close
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._unknown_kid_interval = unknown_kid_interval
        self._failure_backoff = failure_backoff
        self._keys: dict[str, SigningKey] | None = None
        self._expires_at = -math.inf
        self._unknown_kid_not_before = -math.inf
        self._retry_at = -math.inf
        self._fetched_at = -math.inf
        # One fetch at a time, shared by every request that needs it.
        self._inflight: asyncio.Task[None] | None = None

    def known(self, kid: str) -> bool:
        return self._keys is not None and kid in self._keys

    async def find(self, kid: str) -> SigningKey | None:
        now = started = self._clock()
        if (self._keys is None or now >= self._expires_at) and now >= self._retry_at:
            # The request that starts a refresh waits for it, so an expired key is refused
            # as soon as the set says so. Others keep using the stale set meanwhile rather
            # than all stalling on a slow provider.
            await self._refresh(wait=self._keys is None or self._inflight is None)
        if self._keys is not None and kid in self._keys:
            return self._keys[kid]
        now = self._clock()
        if (
            self._keys is not None
            and self._fetched_at < started  # not a set fetched for this very request
            and now >= max(self._unknown_kid_not_before, self._retry_at)
        ):
            self._unknown_kid_not_before = now + self._unknown_kid_interval
            await self._refresh(wait=True)
        if self._keys is None:
            raise KeysUnavailableError(
                "the identity provider's signing keys are not available yet; try again",
                retry_after=max(1, math.ceil(self._retry_at - self._clock())),
            )
        return self._keys.get(kid)

    async def _refresh(self, *, wait: bool) -> None:
        if self._inflight is None:
            self._inflight = asyncio.create_task(self._fetch_and_store())
        if wait:
            # shield: a caller that goes away does not cancel the fetch the others share.
            await asyncio.shield(self._inflight)

    async def _fetch_and_store(self) -> None:
        try:
            keys = parse_jwks(await self._fetch())
        except Exception as err:  # whatever failed, the last good set stays in use
            self._retry_at = self._clock() + self._failure_backoff
            log.warning(
                "jwks fetch failed",
                error=str(err) or type(err).__name__,
                serving="the last good key set" if self._keys is not None else "nothing",
            )
        else:
            self._keys = keys
            self._fetched_at = self._clock()
            self._expires_at = self._fetched_at + self._cache_seconds
            self._retry_at = -math.inf
            log.info("jwks fetched", kids=sorted(keys))
        finally:
            self._inflight = None

    async def close(self) -> None:
        if self._inflight is not None:
            self._inflight.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._inflight
        if self._close is not None:
            await self._close()


class JwksFileSource:
    """A key set in a file, re-read when its modification time, size or inode changes (a
    mounted Secret is updated by swapping a symlink, which changes the inode)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._keys: dict[str, SigningKey] | None = None
        self._seen: tuple[int, int, int] | None = None

    def known(self, kid: str) -> bool:
        self._reload_if_changed()
        return self._keys is not None and kid in self._keys

    async def find(self, kid: str) -> SigningKey | None:
        self._reload_if_changed()
        if self._keys is None:
            raise KeysUnavailableError(
                "the identity provider's key file cannot be read", retry_after=5
            )
        return self._keys.get(kid)

    def _reload_if_changed(self) -> None:
        # A stat per check costs microseconds; the file itself is small and read only when
        # it changed, so neither is worth a thread hop.
        try:
            stat = os.stat(self.path)
        except OSError as err:
            if self._seen is not None:
                log.warning("jwks file unreadable", path=str(self.path), error=type(err).__name__)
                self._seen = None  # log once; keep the last good keys
            return
        seen = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if seen == self._seen:
            return
        self._seen = seen
        try:
            self._keys = parse_jwks(self.path.read_bytes())
        except (OSError, JwksError) as err:
            # A half-written file: keep the last good keys; the finished write changes it again.
            log.warning("jwks file not loaded", path=str(self.path), error=str(err))
        else:
            log.info("jwks file loaded", path=str(self.path), kids=sorted(self._keys))

    async def close(self) -> None:
        return None
