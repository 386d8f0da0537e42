"""Bearer tokens: what mint_token writes is what verify_token accepts, and nothing else."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from pydantic import ValidationError

from adx_core.auth import (
    ALGORITHM,
    AuthError,
    Claims,
    Role,
    TokenVerifier,
    mint_token,
    verify_token,
)
from adx_core.jwks import JwksUrlSource
from adx_core.settings import Settings
from tests.support.jwks import IdpKey, ec_key, ed25519_key, jwks_document, rsa_key, write_jwks

SECRET = "unit-test-secret-that-is-long-enough-for-hs256"
TENANT = str(uuid.uuid4())
USER = str(uuid.uuid4())


@pytest.fixture
def settings() -> Settings:
    return Settings(jwt_secret=SECRET, jwt_leeway_seconds=5)


def _payload(settings: Settings, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    payload: dict[str, Any] = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": USER,
        "tenant_id": TENANT,
        "roles": ["member"],
        "iat": now,
        "exp": now + 600,
    }
    payload.update(overrides)
    return {key: value for key, value in payload.items() if value is not None}


def _encode(payload: dict[str, Any], secret: str = SECRET, algorithm: str = ALGORITHM) -> str:
    return jwt.encode(payload, secret, algorithm=algorithm)


def _refused(settings: Settings, token: str) -> AuthError:
    with pytest.raises(AuthError) as info:
        verify_token(settings, token)
    return info.value


def test_mint_and_verify_roundtrip(settings: Settings) -> None:
    """The claims minted are the claims verified: user, tenant, roles and e-mail."""
    token = mint_token(
        settings,
        user_id=USER,
        tenant_id=TENANT,
        roles=[Role.TENANT_ADMIN, Role.VIEWER],
        email="ada@acme.test",
    )
    claims = verify_token(settings, token)
    assert claims == Claims(USER, TENANT, (Role.TENANT_ADMIN, Role.VIEWER), "ada@acme.test")
    assert claims.has_any(Role.VIEWER)
    assert not claims.has_any(Role.PLATFORM_ADMIN)


def test_minted_token_carries_the_standard_claims(settings: Settings) -> None:
    """iss, aud, iat, exp (the configured ttl) and a unique jti are written."""
    token = mint_token(settings, user_id=USER, tenant_id=TENANT, roles=[Role.MEMBER])
    payload = jwt.decode(token, options={"verify_signature": False})
    assert payload["iss"] == settings.jwt_issuer
    assert payload["aud"] == settings.jwt_audience
    assert payload["exp"] - payload["iat"] == settings.token_ttl_seconds
    other = mint_token(settings, user_id=USER, tenant_id=TENANT, roles=[Role.MEMBER])
    assert jwt.decode(other, options={"verify_signature": False})["jti"] != payload["jti"]
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


def test_expired_token_is_refused_beyond_leeway(settings: Settings) -> None:
    """A token past exp plus the leeway is refused as expired; within leeway it passes."""
    expired = mint_token(
        settings, user_id=USER, tenant_id=TENANT, roles=[Role.MEMBER], ttl_seconds=-60
    )
    assert _refused(settings, expired).kind == "expired"
    within = mint_token(
        settings, user_id=USER, tenant_id=TENANT, roles=[Role.MEMBER], ttl_seconds=-2
    )
    assert verify_token(settings, within).user_id == USER


def test_wrong_audience_is_refused(settings: Settings) -> None:
    """A token for another audience is not accepted."""
    assert _refused(settings, _encode(_payload(settings, aud="another-api"))).kind == "invalid"


def test_wrong_issuer_is_refused(settings: Settings) -> None:
    """A token from another issuer is not accepted."""
    assert _refused(settings, _encode(_payload(settings, iss="someone-else"))).kind == "invalid"


def test_bad_signature_is_refused(settings: Settings) -> None:
    """A token signed with another secret fails with bad_signature."""
    forged = _encode(_payload(settings), secret="another-secret-that-is-long-enough-too")
    assert _refused(settings, forged).kind == "bad_signature"


def test_tampered_payload_is_refused(settings: Settings) -> None:
    """Changing the payload of a signed token (say, its roles) breaks the signature."""
    token = mint_token(settings, user_id=USER, tenant_id=TENANT, roles=[Role.VIEWER])
    header, _, signature = token.split(".")
    admin = _encode(_payload(settings, roles=["platform-admin"])).split(".")[1]
    assert _refused(settings, f"{header}.{admin}.{signature}").kind == "bad_signature"


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
@pytest.mark.parametrize("algorithm", ["HS512", "none"])
def test_other_algorithms_are_refused(settings: Settings, algorithm: str) -> None:
    """Only HS256 is accepted: neither another HMAC nor an unsigned token."""
    secret = SECRET if algorithm != "none" else ""
    token = jwt.encode(_payload(settings), secret or None, algorithm=algorithm)  # type: ignore[arg-type]
    assert _refused(settings, token).kind == "invalid"


@pytest.mark.parametrize("claim", ["exp", "iat", "sub", "aud", "iss", "tenant_id", "roles"])
def test_missing_claims_are_refused(settings: Settings, claim: str) -> None:
    """Each required claim must be present."""
    payload = _payload(settings)
    del payload[claim]
    assert _refused(settings, _encode(payload)).kind == "invalid"


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        ("sub", ""),
        ("tenant_id", "not-a-uuid"),
        ("tenant_id", "../../etc"),
        ("tenant_id", 42),
        ("roles", []),
        ("roles", "member"),
        ("roles", ["superuser"]),
        ("roles", ["member", "root"]),
    ],
)
def test_malformed_claims_are_refused(settings: Settings, claim: str, value: object) -> None:
    """Empty subject, non-UUID tenant, empty or unknown roles are refused."""
    assert _refused(settings, _encode(_payload(settings, **{claim: value}))).kind == "invalid"


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "Bearer x", "eyJhbGciOi.e30."])
def test_garbage_is_refused(settings: Settings, garbage: str) -> None:
    """Strings that are not JWTs are refused with an AuthError, never another exception."""
    assert _refused(settings, garbage).kind == "invalid"


def test_unconfigured_secret_refuses_minting_and_checking() -> None:
    """Without ADX_JWT_SECRET nothing is minted or accepted."""
    bare = Settings()
    with pytest.raises(AuthError) as info:
        mint_token(bare, user_id=USER, tenant_id=TENANT, roles=[Role.MEMBER])
    assert info.value.kind == "not_configured"
    assert _refused(bare, "a.b.c").kind == "not_configured"


def test_error_messages_do_not_echo_the_token(settings: Settings) -> None:
    """The refusal message (shown to callers) never repeats the token itself."""
    token = _encode(_payload(settings, aud="another-api"))
    error = _refused(settings, token)
    assert token not in error.message
    assert token.split(".")[1] not in error.message


# TokenVerifier: our tokens as above, plus an identity provider's, signed with JWKS keys.


class StaticIdp:
    """A key set fetch that answers with ``keys`` and counts the calls."""

    def __init__(self, keys: list[IdpKey]) -> None:
        self.keys = keys
        self.fetches = 0

    async def __call__(self) -> bytes:
        self.fetches += 1
        return json.dumps(jwks_document(self.keys)).encode()


@pytest.fixture(scope="module")
def idp_keys() -> dict[str, IdpKey]:
    return {
        "rs": rsa_key("rs"),
        "ps": rsa_key("ps", "PS256", declare_alg=False),
        "es": ec_key("es"),
        "ed": ed25519_key("ed"),
    }


@pytest.fixture
def idp(idp_keys: dict[str, IdpKey]) -> StaticIdp:
    return StaticIdp(list(idp_keys.values()))


@pytest.fixture
def verifier(settings: Settings, idp: StaticIdp) -> TokenVerifier:
    return TokenVerifier(settings, [JwksUrlSource(idp, cache_seconds=300)])


async def _verifier_refuses(verifier: TokenVerifier, token: str) -> AuthError:
    with pytest.raises(AuthError) as info:
        await verifier.verify(token)
    return info.value


async def test_verifier_accepts_our_tokens_exactly_as_verify_token(
    settings: Settings, verifier: TokenVerifier, idp: StaticIdp
) -> None:
    """ADX's own HS256 tokens (with sid) pass unchanged, without fetching any key set."""
    sid = str(uuid.uuid4())
    token = mint_token(
        settings, user_id=USER, tenant_id=TENANT, roles=[Role.MEMBER], session_id=sid
    )
    assert await verifier.verify(token) == verify_token(settings, token)
    assert (await verifier.verify(token)).session_id == sid
    assert idp.fetches == 0
    forged = _encode(_payload(settings), secret="another-secret-that-is-long-enough-too")
    assert (await _verifier_refuses(verifier, forged)).kind == "bad_signature"


@pytest.mark.parametrize("kid", ["rs", "ps", "es", "ed"])
async def test_verifier_accepts_provider_tokens(
    settings: Settings, verifier: TokenVerifier, idp_keys: dict[str, IdpKey], kid: str
) -> None:
    """RS256, PS256 (an RSA key without alg), ES256 and EdDSA tokens with a known kid."""
    token = idp_keys[kid].sign(_payload(settings, roles=["viewer"], email="ada@idp.test"))
    claims = await verifier.verify(token)
    assert claims == Claims(USER, TENANT, (Role.VIEWER,), "ada@idp.test")


async def test_provider_tokens_use_the_external_issuer(
    settings: Settings, idp: StaticIdp, idp_keys: dict[str, IdpKey]
) -> None:
    """With ADX_JWT_EXTERNAL_ISSUER, provider tokens must name it and ours keep theirs."""
    external = settings.model_copy(update={"jwt_external_issuer": "https://idp.test/"})
    verifier = TokenVerifier(external, [JwksUrlSource(idp, cache_seconds=300)])
    rs = idp_keys["rs"]
    assert await verifier.verify(rs.sign(_payload(settings, iss="https://idp.test/")))
    refused = await _verifier_refuses(verifier, rs.sign(_payload(settings)))
    assert refused.kind == "invalid"
    ours = mint_token(external, user_id=USER, tenant_id=TENANT, roles=[Role.MEMBER])
    assert (await verifier.verify(ours)).user_id == USER


async def test_provider_tokens_are_checked_like_ours(
    settings: Settings, verifier: TokenVerifier, idp_keys: dict[str, IdpKey]
) -> None:
    """Audience, expiry with leeway, required claims and roles apply to provider tokens."""
    rs = idp_keys["rs"]
    now = int(time.time())
    wrong_audience = rs.sign(_payload(settings, aud="another-api"))
    assert (await _verifier_refuses(verifier, wrong_audience)).kind == "invalid"
    expired = rs.sign(_payload(settings, iat=now - 600, exp=now - 60))
    assert (await _verifier_refuses(verifier, expired)).kind == "expired"
    within_leeway = rs.sign(_payload(settings, iat=now - 600, exp=now - 2))
    assert (await verifier.verify(within_leeway)).user_id == USER
    issued_ahead = rs.sign(_payload(settings, iat=now + 3))  # a clock 3 s fast is tolerated
    assert (await verifier.verify(issued_ahead)).user_id == USER
    for claim in ("exp", "iat", "sub", "aud", "iss", "tenant_id", "roles"):
        payload = _payload(settings)
        del payload[claim]
        assert (await _verifier_refuses(verifier, rs.sign(payload))).kind == "invalid", claim
    unknown_role = rs.sign(_payload(settings, roles=["root"]))
    assert (await _verifier_refuses(verifier, unknown_role)).kind == "invalid"


async def test_a_provider_sid_is_not_one_of_our_sessions(
    settings: Settings, verifier: TokenVerifier, idp_keys: dict[str, IdpKey]
) -> None:
    """OpenID Connect providers put their own session id in ``sid``: it is ignored, not
    looked up (nor refused for not being a UUID)."""
    token = idp_keys["es"].sign(_payload(settings, sid="kc-session-1"))
    assert (await verifier.verify(token)).session_id is None


async def test_forged_and_mismatched_provider_tokens_are_refused(
    settings: Settings, verifier: TokenVerifier, idp_keys: dict[str, IdpKey]
) -> None:
    """A token signed by another key under a known kid, or with an algorithm its key does
    not have, or without a kid, is refused."""
    impostor = rsa_key("rs")  # same kid, another private key
    forged = impostor.sign(_payload(settings))
    assert (await _verifier_refuses(verifier, forged)).kind == "bad_signature"
    tampered = idp_keys["rs"].sign(_payload(settings)).split(".")
    tampered[1] = _encode(_payload(settings, roles=["platform-admin"])).split(".")[1]
    assert (await _verifier_refuses(verifier, ".".join(tampered))).kind == "bad_signature"
    rs384 = idp_keys["rs"].sign(_payload(settings), algorithm="RS384")  # the key says RS256
    assert (await _verifier_refuses(verifier, rs384)).kind == "invalid"
    no_kid = jwt.encode(_payload(settings), idp_keys["rs"].private, algorithm="RS256")
    assert (await _verifier_refuses(verifier, no_kid)).kind == "invalid"


async def test_unknown_kids_are_refused_and_refetch_once(
    settings: Settings, verifier: TokenVerifier, idp: StaticIdp
) -> None:
    """A kid the provider never published: bad_signature, after one refetch at most."""
    stranger = rsa_key("stranger")
    for _ in range(10):
        refused = await _verifier_refuses(verifier, stranger.sign(_payload(settings)))
        assert refused.kind == "bad_signature"
    assert idp.fetches <= 2


def _public_pem(key: IdpKey) -> bytes:
    return key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _hs256_by_hand(payload: dict[str, Any], secret: bytes, *, kid: str) -> str:
    """An HS256 token under any secret: PyJWT itself refuses to use a public key as one."""

    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    header = {"alg": "HS256", "typ": "JWT", "kid": kid}
    signing_input = b64(json.dumps(header).encode()) + b"." + b64(json.dumps(payload).encode())
    signature = hmac.new(secret, signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + b64(signature)).decode()


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
async def test_algorithm_confusion_is_refused(
    settings: Settings, verifier: TokenVerifier, idp_keys: dict[str, IdpKey]
) -> None:
    """alg none, and an HS256 token that names a provider key (signed with its public key
    as the secret, the classic confusion), are refused; so is HS256 under a provider kid
    even when signed with our own secret."""
    rs = idp_keys["rs"]
    await verifier.verify(rs.sign(_payload(settings)))  # the provider's keys are at hand
    unsigned = jwt.encode(_payload(settings), None, algorithm="none", headers={"kid": "rs"})  # type: ignore[arg-type]
    assert (await _verifier_refuses(verifier, unsigned)).kind == "invalid"
    confused = _hs256_by_hand(_payload(settings), _public_pem(rs), kid="rs")
    assert (await _verifier_refuses(verifier, confused)).kind == "invalid"
    ours_with_kid = jwt.encode(_payload(settings), SECRET, algorithm="HS256", headers={"kid": "rs"})
    assert (await _verifier_refuses(verifier, ours_with_kid)).kind == "invalid"


async def test_provider_tokens_are_refused_without_a_key_source(
    settings: Settings, idp_keys: dict[str, IdpKey]
) -> None:
    """No JWKS configured: an RS256 token is as invalid as it was before."""
    verifier = TokenVerifier(settings)
    refused = await _verifier_refuses(verifier, idp_keys["rs"].sign(_payload(settings)))
    assert refused.kind == "invalid"


async def test_no_key_set_is_keys_unavailable(
    settings: Settings, idp_keys: dict[str, IdpKey]
) -> None:
    """The provider could not be reached and nothing is cached: keys_unavailable with a
    retry delay (the API's 503), while our own tokens still pass."""

    async def down() -> bytes:
        raise OSError("connection refused")

    verifier = TokenVerifier(settings, [JwksUrlSource(down, cache_seconds=300)])
    refused = await _verifier_refuses(verifier, idp_keys["rs"].sign(_payload(settings)))
    assert refused.kind == "keys_unavailable"
    assert refused.retry_after is not None
    assert refused.retry_after >= 1
    ours = mint_token(settings, user_id=USER, tenant_id=TENANT, roles=[Role.MEMBER])
    assert (await verifier.verify(ours)).user_id == USER


async def test_the_key_file_and_url_sources_come_from_settings(
    settings: Settings, tmp_path: Path, idp_keys: dict[str, IdpKey]
) -> None:
    """ADX_JWT_KEYS_FILE alone is enough; a kid missing from it is looked up nowhere else."""
    path = tmp_path / "jwks.json"
    write_jwks(path, [idp_keys["es"]])
    with_file = settings.model_copy(update={"jwt_keys_file": path})
    async with TokenVerifier(with_file) as verifier:
        assert await verifier.verify(idp_keys["es"].sign(_payload(settings)))
        refused = await _verifier_refuses(verifier, idp_keys["rs"].sign(_payload(settings)))
        assert refused.kind == "bad_signature"
        write_jwks(path, [idp_keys["es"], idp_keys["rs"]])
        assert await verifier.verify(idp_keys["rs"].sign(_payload(settings)))


@pytest.mark.parametrize(
    ("env", "url", "accepted"),
    [
        ("development", "http://127.0.0.1:8080/jwks", True),
        ("development", "https://idp.test/jwks", True),
        ("development", "ftp://idp.test/jwks", False),
        ("development", "idp.test/jwks", False),
        ("production", "https://idp.test/jwks", True),
        ("production", "http://idp.test/jwks", False),
    ],
)
def test_jwks_url_setting(env: str, url: str, accepted: bool) -> None:
    """ADX_JWT_JWKS_URL is an http(s) URL, and https in production."""
    production = {"codec_keys": "k1:" + "A" * 43 + "=", "scanner": "clamd"}
    extra: dict[str, Any] = production if env == "production" else {}

    def make() -> Settings:
        return Settings(env=env, jwt_secret=SECRET, jwt_jwks_url=url, **extra)

    if accepted:
        assert make().jwt_jwks_url == url
    else:
        with pytest.raises(ValidationError, match="ADX_JWT_JWKS_URL"):
            make()
