"""An identity provider for tests: signing keys, the tokens they sign, and a real JWKS server
on 127.0.0.1 that counts its requests and can be stopped and started again."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from adx_cli.devstack.net import free_port
from adx_core.contracts.tenants import PLATFORM_TENANT_ID
from adx_core.settings import Settings

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


@dataclass(frozen=True)
class IdpKey:
    kid: str
    algorithm: str
    private: PrivateKey
    # Whether the published JWK names its algorithm ("alg"); many providers leave it out.
    declare_alg: bool = True

    def public_jwk(self) -> dict[str, Any]:
        public = self.private.public_key()
        if isinstance(public, rsa.RSAPublicKey):
            jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
        elif isinstance(public, ec.EllipticCurvePublicKey):
            jwk = ECAlgorithm.to_jwk(public, as_dict=True)
        else:
            jwk = OKPAlgorithm.to_jwk(public, as_dict=True)
        jwk = {**jwk, "kid": self.kid, "use": "sig"}
        if self.declare_alg:
            jwk["alg"] = self.algorithm
        return jwk

    def sign(self, payload: dict[str, Any], *, algorithm: str | None = None) -> str:
        return jwt.encode(
            payload, self.private, algorithm=algorithm or self.algorithm, headers={"kid": self.kid}
        )


def rsa_key(kid: str, algorithm: str = "RS256", *, declare_alg: bool = True) -> IdpKey:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return IdpKey(kid, algorithm, private, declare_alg)


def ec_key(kid: str, *, declare_alg: bool = True) -> IdpKey:
    return IdpKey(kid, "ES256", ec.generate_private_key(ec.SECP256R1()), declare_alg)


def ed25519_key(kid: str) -> IdpKey:
    return IdpKey(kid, "EdDSA", ed25519.Ed25519PrivateKey.generate())


def claims(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """The claims of a valid identity-provider token (a platform admin of the platform
    tenant, so GET /v1/tenants answers 200); ``None`` drops a claim."""
    now = int(time.time())
    payload: dict[str, Any] = {
        "iss": settings.jwt_external_issuer or settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": str(uuid.uuid4()),
        "tenant_id": PLATFORM_TENANT_ID,
        "roles": ["platform-admin"],
        "iat": now,
        "exp": now + 600,
    }
    payload.update(overrides)
    return {key: value for key, value in payload.items() if value is not None}


def jwks_document(keys: list[IdpKey]) -> dict[str, Any]:
    return {"keys": [key.public_jwk() for key in keys]}


def write_jwks(path: Path, keys: list[IdpKey]) -> None:
    """Replace the file at once (write, then rename), as a Secret update does."""
    staging = path.with_suffix(".tmp")
    staging.write_text(json.dumps(jwks_document(keys)))
    staging.replace(path)


@dataclass
class IdentityProvider:
    """Serves ``keys`` as a JWKS at ``url``. ``requests`` counts the fetches."""

    keys: list[IdpKey]
    port: int = field(default_factory=free_port)
    requests: int = 0
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/.well-known/jwks.json"

    async def _jwks(self, request: web.Request) -> web.Response:
        self.requests += 1
        return web.json_response(jwks_document(self.keys))

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/.well-known/jwks.json", self._jwks)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def stop(self) -> None:
        """Stop listening: a fetch now meets a refused connection."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
