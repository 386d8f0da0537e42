"""Bearer tokens: what mint_token writes is what verify_token accepts, and nothing else."""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt
import pytest

from adx_core.auth import ALGORITHM, AuthError, Claims, Role, mint_token, verify_token
from adx_core.settings import Settings

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
