"""The API's token verifier: one per application, so the identity provider's keys are
fetched once and shared by every request, and its HTTP session closes with the app."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from adx_api.keys import SETTINGS, TOKEN_VERIFIER
from adx_core.auth import TokenVerifier


async def token_verifier_ctx(app: web.Application) -> AsyncIterator[None]:
    async with TokenVerifier(app[SETTINGS]) as verifier:
        app[TOKEN_VERIFIER] = verifier
        yield
