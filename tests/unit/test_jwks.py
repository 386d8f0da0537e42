"""The identity provider's key set: what is taken from a JWKS, and how the URL source caches,
rotates and survives outages (on a fake clock, with a fake fetch)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from adx_core.jwks import (
    RSA_ALGORITHMS,
    JwksError,
    JwksFileSource,
    JwksUrlSource,
    KeysUnavailableError,
    parse_jwks,
)
from tests.support.jwks import IdpKey, ec_key, ed25519_key, jwks_document, rsa_key, write_jwks

CACHE_SECONDS = 300.0


@pytest.fixture(scope="module")
def old_key() -> IdpKey:
    return rsa_key("old")


@pytest.fixture(scope="module")
def new_key() -> IdpKey:
    return ec_key("new")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeIdp:
    """Answers with its current keys, or raises when ``down``; counts the fetches."""

    def __init__(self, keys: list[IdpKey]) -> None:
        self.keys = keys
        self.down = False
        self.fetches = 0
        self.gate: asyncio.Event | None = None

    async def __call__(self) -> bytes:
        self.fetches += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.down:
            raise OSError("connection refused")
        return json.dumps(jwks_document(self.keys)).encode()


def _source(idp: FakeIdp, clock: FakeClock) -> JwksUrlSource:
    return JwksUrlSource(idp, cache_seconds=CACHE_SECONDS, clock=clock)


async def test_the_set_is_fetched_once_and_cached(old_key: IdpKey) -> None:
    """Known kids are served from the cache until it expires; then it is fetched again."""
    idp, clock = FakeIdp([old_key]), FakeClock()
    source = _source(idp, clock)
    for _ in range(5):
        found = await source.find("old")
        assert found is not None
        assert found.kid == "old"
    assert idp.fetches == 1
    clock.now += CACHE_SECONDS
    assert await source.find("old") is not None
    assert idp.fetches == 2


async def test_a_new_kid_is_fetched_at_once(old_key: IdpKey, new_key: IdpKey) -> None:
    """Rotation: the provider adds a key and signs with it; the first token naming it
    refetches the set instead of waiting for the cache to expire."""
    idp, clock = FakeIdp([old_key]), FakeClock()
    source = _source(idp, clock)
    assert await source.find("old") is not None
    idp.keys = [old_key, new_key]
    clock.now += 1
    assert await source.find("new") is not None
    assert idp.fetches == 2


async def test_a_removed_key_goes_when_the_cache_expires(old_key: IdpKey, new_key: IdpKey) -> None:
    """The provider drops the old key: it is still known until the cache expires, then not."""
    idp, clock = FakeIdp([old_key, new_key]), FakeClock()
    source = _source(idp, clock)
    assert await source.find("old") is not None
    idp.keys = [new_key]
    clock.now += CACHE_SECONDS - 1
    assert await source.find("old") is not None
    clock.now += 1
    assert await source.find("old") is None
    assert await source.find("new") is not None


async def test_unknown_kids_refetch_at_most_once_per_interval(old_key: IdpKey) -> None:
    """A flood of forged kids costs the provider one fetch per interval, not one each."""
    idp, clock = FakeIdp([old_key]), FakeClock()
    source = JwksUrlSource(idp, cache_seconds=CACHE_SECONDS, clock=clock, unknown_kid_interval=10)
    await source.find("old")
    clock.now += 1
    results = await asyncio.gather(*(source.find(f"forged-{n}") for n in range(100)))
    assert results == [None] * 100
    assert idp.fetches == 2
    clock.now += 9.5
    assert await source.find("forged-x") is None
    assert idp.fetches == 2
    clock.now += 0.5
    assert await source.find("forged-y") is None
    assert idp.fetches == 3


async def test_the_first_fetch_is_shared_by_concurrent_requests(old_key: IdpKey) -> None:
    """Requests arriving while the set is being fetched wait for that one fetch."""
    idp, clock = FakeIdp([old_key]), FakeClock()
    idp.gate = asyncio.Event()
    source = _source(idp, clock)
    waiting = [asyncio.create_task(source.find("old")) for _ in range(20)]
    await asyncio.sleep(0.01)
    idp.gate.set()
    assert all(found is not None for found in await asyncio.gather(*waiting))
    assert idp.fetches == 1


async def test_an_outage_keeps_the_last_good_set(old_key: IdpKey) -> None:
    """The provider is down when the cache expires: its last keys stay in use, and it is
    asked again only after the backoff."""
    idp, clock = FakeIdp([old_key]), FakeClock()
    source = JwksUrlSource(idp, cache_seconds=CACHE_SECONDS, clock=clock, failure_backoff=5)
    await source.find("old")
    idp.down = True
    clock.now += CACHE_SECONDS
    assert await source.find("old") is not None
    assert idp.fetches == 2
    clock.now += 4
    assert await source.find("old") is not None
    assert idp.fetches == 2
    idp.down = False
    clock.now += 1
    assert await source.find("old") is not None
    assert idp.fetches == 3


async def test_no_set_at_all_is_unavailable_with_retry_after(old_key: IdpKey) -> None:
    """Down before any fetch succeeded: KeysUnavailableError with the backoff's remainder,
    and no fetch per request meanwhile."""
    idp, clock = FakeIdp([old_key]), FakeClock()
    idp.down = True
    source = JwksUrlSource(idp, cache_seconds=CACHE_SECONDS, clock=clock, failure_backoff=5)
    with pytest.raises(KeysUnavailableError) as first:
        await source.find("old")
    assert first.value.retry_after == 5
    clock.now += 3
    with pytest.raises(KeysUnavailableError) as second:
        await source.find("old")
    assert second.value.retry_after == 2
    assert idp.fetches == 1
    idp.down = False
    clock.now += 2
    assert await source.find("old") is not None


async def test_known_reports_only_keys_at_hand(old_key: IdpKey) -> None:
    """``known`` never fetches: before the first fetch nothing is known."""
    idp, clock = FakeIdp([old_key]), FakeClock()
    source = _source(idp, clock)
    assert not source.known("old")
    await source.find("old")
    assert source.known("old")
    assert not source.known("other")
    assert idp.fetches == 1


async def test_the_file_is_reread_when_it_changes(
    tmp_path: Path, old_key: IdpKey, new_key: IdpKey
) -> None:
    """A key file (a mounted Secret) is read on first use and again after each rewrite."""
    path = tmp_path / "jwks.json"
    write_jwks(path, [old_key])
    source = JwksFileSource(path)
    assert await source.find("old") is not None
    assert await source.find("new") is None
    write_jwks(path, [new_key])
    assert await source.find("new") is not None
    assert await source.find("old") is None


async def test_a_broken_or_missing_file_keeps_the_last_good_keys(
    tmp_path: Path, old_key: IdpKey
) -> None:
    """A half-written or vanished file does not drop the keys; none ever read is 503-worthy."""
    path = tmp_path / "jwks.json"
    with pytest.raises(KeysUnavailableError):
        await JwksFileSource(path).find("old")
    write_jwks(path, [old_key])
    source = JwksFileSource(path)
    assert await source.find("old") is not None
    path.write_text('{"keys": [')
    assert await source.find("old") is not None
    path.unlink()
    assert await source.find("old") is not None


def test_the_kinds_of_keys_taken(old_key: IdpKey) -> None:
    """RSA, EC and Ed25519 public signing keys are taken. Symmetric, private, encryption,
    kid-less and unparseable keys are skipped; so is an algorithm we do not accept."""
    rsa_plain = rsa_key("rsa-plain", declare_alg=False)
    good = [old_key, rsa_plain, ec_key("ec"), ed25519_key("ed")]
    skipped: list[object] = [
        {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
        {**old_key.public_jwk(), "kid": "private", "d": "AQAB"},
        {**old_key.public_jwk(), "kid": "enc", "use": "enc"},
        {**old_key.public_jwk(), "kid": "hs", "alg": "HS256"},
        {k: v for k, v in old_key.public_jwk().items() if k != "kid"},
        {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
        {"kty": "EC", "kid": "odd-curve", "crv": "P-192", "x": "AA", "y": "AA"},
        "not a key",
    ]
    keys = parse_jwks(json.dumps({"keys": [k.public_jwk() for k in good] + skipped}))
    assert sorted(keys) == ["ec", "ed", "old", "rsa-plain"]
    assert keys["old"].algorithms == {"RS256"}
    assert keys["rsa-plain"].algorithms == RSA_ALGORITHMS
    assert keys["ec"].algorithms == {"ES256"}
    assert keys["ed"].algorithms == {"EdDSA"}


@pytest.mark.parametrize("document", ["", "[]", '{"keys": {}}', "{", '{"other": []}'])
def test_a_document_that_is_not_a_key_set_is_an_error(document: str) -> None:
    """Such a document is a failed fetch (the last good set stays), not an empty set."""
    with pytest.raises(JwksError):
        parse_jwks(document)


def test_an_empty_key_set_is_a_set() -> None:
    """The provider may withdraw every key; then no provider token is accepted."""
    assert parse_jwks('{"keys": []}') == {}
