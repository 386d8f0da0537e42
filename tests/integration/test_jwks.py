"""Identity-provider tokens through the API: keys from a real JWKS server on 127.0.0.1 (or a
key file), cached, rotated, and outlived by an outage."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from temporalio.client import Client

from adx_core.db.engine import Sessions
from adx_core.settings import Settings
from tests.conftest import TokenFactory
from tests.support.jwks import IdentityProvider, IdpKey, claims, ec_key, rsa_key, write_jwks

Api = TestClient[web.Request, web.Application]
Serve = Callable[[Settings], AbstractAsyncContextManager[Api]]

CACHE_SECONDS = 5  # the shortest ADX_JWT_JWKS_CACHE_SECONDS allows


@pytest.fixture(scope="module")
def rs() -> IdpKey:
    return rsa_key("rs-1")


@pytest.fixture(scope="module")
def es() -> IdpKey:
    return ec_key("es-1")


@pytest.fixture
async def idp(rs: IdpKey, es: IdpKey) -> AsyncIterator[IdentityProvider]:
    provider = IdentityProvider([rs, es])
    await provider.start()
    yield provider
    await provider.stop()


@pytest.fixture
def serve(temporal_client: Client, sessions: Sessions) -> Serve:
    @contextlib.asynccontextmanager
    async def make(app_settings: Settings) -> AsyncIterator[Api]:
        from adx_api.app import create_app

        app = create_app(app_settings, temporal=temporal_client, sessions=sessions)
        async with TestClient(TestServer(app)) as client:
            yield client

    return make


@pytest.fixture
def idp_settings(settings: Settings, idp: IdentityProvider) -> Settings:
    return settings.model_copy(
        update={"jwt_jwks_url": idp.url, "jwt_jwks_cache_seconds": CACHE_SECONDS}
    )


@pytest.fixture
async def api(serve: Serve, idp_settings: Settings) -> AsyncIterator[Api]:
    async with serve(idp_settings) as client:
        yield client


async def _status(api: Api, token: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    async with api.get("/v1/tenants", headers={"Authorization": f"Bearer {token}"}) as answer:
        return answer.status, await answer.json(content_type=None), dict(answer.headers)


async def _accepted(api: Api, token: str) -> bool:
    status, body, _ = await _status(api, token)
    assert status in (200, 401), body
    return status == 200


async def _refused_as(api: Api, token: str) -> str:
    status, body, headers = await _status(api, token)
    assert status == 401, body
    assert body["type"].endswith("/unauthenticated")
    assert headers["WWW-Authenticate"] == 'Bearer realm="adx", error="invalid_token"'
    return str(body["reason"])


async def test_rs256_and_es256_tokens_are_accepted(
    api: Api, idp_settings: Settings, rs: IdpKey, es: IdpKey, token: TokenFactory
) -> None:
    """Both of the provider's keys sign valid tokens, and ADX's own tokens still work."""
    assert await _accepted(api, rs.sign(claims(idp_settings)))
    assert await _accepted(api, es.sign(claims(idp_settings)))
    assert await _accepted(api, token())


async def test_bad_provider_tokens_get_401(
    api: Api, idp_settings: Settings, rs: IdpKey, es: IdpKey
) -> None:
    """Wrong audience, expired beyond the leeway, a forged signature, alg none, and an
    HS256 token naming a provider kid are refused; expired within the leeway is not."""
    now = int(time.time())
    leeway = idp_settings.jwt_leeway_seconds
    assert await _refused_as(api, rs.sign(claims(idp_settings, aud="other-api"))) == "invalid"
    beyond = claims(idp_settings, iat=now - 600, exp=now - leeway - 30)
    assert await _refused_as(api, es.sign(beyond)) == "expired"
    within = claims(idp_settings, iat=now - 600, exp=now - leeway + 10)
    assert await _accepted(api, es.sign(within))
    forged = IdpKey("rs-1", "RS256", rsa_key("x").private).sign(claims(idp_settings))
    assert await _refused_as(api, forged) == "bad_signature"
    unsigned = jwt.encode(claims(idp_settings), None, algorithm="none", headers={"kid": "rs-1"})  # type: ignore[arg-type]
    assert await _refused_as(api, unsigned) == "invalid"
    assert idp_settings.jwt_secret is not None
    secret = idp_settings.jwt_secret.get_secret_value()
    hs = jwt.encode(claims(idp_settings), secret, algorithm="HS256", headers={"kid": "rs-1"})
    assert await _refused_as(api, hs) == "invalid"


async def test_a_new_key_is_used_at_once_and_a_removed_one_after_the_cache(
    api: Api, idp: IdentityProvider, idp_settings: Settings, rs: IdpKey, es: IdpKey
) -> None:
    """Rotation: tokens signed with a key the provider just added are accepted without
    waiting for the cache (one refetch); tokens of a key it removed are refused once the
    cache has expired."""
    assert await _accepted(api, rs.sign(claims(idp_settings)))
    assert idp.requests == 1
    rotated = rsa_key("rs-2")
    idp.keys = [rs, rotated, es]
    assert await _accepted(api, rotated.sign(claims(idp_settings)))
    assert idp.requests == 2
    idp.keys = [rotated, es]
    assert await _accepted(api, rs.sign(claims(idp_settings)))  # until the cache expires
    await asyncio.sleep(CACHE_SECONDS + 0.3)
    assert await _refused_as(api, rs.sign(claims(idp_settings))) == "bad_signature"
    assert await _accepted(api, rotated.sign(claims(idp_settings)))
    assert idp.requests == 3


async def test_an_outage_keeps_the_cached_keys(
    api: Api, idp: IdentityProvider, idp_settings: Settings, rs: IdpKey
) -> None:
    """The provider goes down and the cache expires: its last keys still check tokens."""
    assert await _accepted(api, rs.sign(claims(idp_settings)))
    await idp.stop()
    await asyncio.sleep(CACHE_SECONDS + 0.3)
    assert await _accepted(api, rs.sign(claims(idp_settings)))
    assert await _accepted(api, rs.sign(claims(idp_settings)))


async def test_no_keys_at_all_is_503_with_retry_after(
    api: Api, idp: IdentityProvider, idp_settings: Settings, rs: IdpKey, token: TokenFactory
) -> None:
    """The provider is down before any fetch: its tokens get 503 with Retry-After (not
    401: the token may be fine), while ADX's own tokens keep working."""
    await idp.stop()
    status, body, headers = await _status(api, rs.sign(claims(idp_settings)))
    assert status == 503, body
    assert body["type"].endswith("/unavailable")
    assert body["reason"] == "keys_unavailable"
    assert 1 <= int(headers["Retry-After"]) <= 30
    assert await _accepted(api, token())


async def test_a_flood_of_unknown_kids_fetches_once(
    api: Api, idp: IdentityProvider, idp_settings: Settings, rs: IdpKey
) -> None:
    """Forged kids (each a would-be rotation) cost the provider one fetch per interval."""
    assert await _accepted(api, rs.sign(claims(idp_settings)))
    assert idp.requests == 1
    forged = [rsa_key(f"forged-{n}") for n in range(3)]
    tokens = [forged[n % 3].sign(claims(idp_settings)) for n in range(60)]
    reasons = await asyncio.gather(*(_refused_as(api, t) for t in tokens))
    assert set(reasons) == {"bad_signature"}
    assert idp.requests == 2
    assert await _accepted(api, rs.sign(claims(idp_settings)))
    assert idp.requests == 2


async def test_key_file_rotation(
    serve: Serve, settings: Settings, tmp_path: Path, rs: IdpKey, es: IdpKey
) -> None:
    """ADX_JWT_KEYS_FILE (a mounted Secret): a rewrite of the file rotates the keys at once."""
    path = tmp_path / "jwks.json"
    write_jwks(path, [rs])
    async with serve(settings.model_copy(update={"jwt_keys_file": path})) as api:
        assert await _accepted(api, rs.sign(claims(settings)))
        assert await _refused_as(api, es.sign(claims(settings))) == "bad_signature"
        write_jwks(path, [es])
        assert await _accepted(api, es.sign(claims(settings)))
        assert await _refused_as(api, rs.sign(claims(settings))) == "bad_signature"
