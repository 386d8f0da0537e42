"""localstripe (a Stripe API emulator from PyPI) served on loopback, in the test's event loop.

Its own entry point listens on every interface and saves its state under /tmp after each
request, so we serve its routes ourselves: the same handlers and its error and auth
middleware, bound to 127.0.0.1 on a free port, with the state kept in memory only.
"""

from __future__ import annotations

import warnings
from typing import Any

import aiohttp
from aiohttp import web

from adx_cli.devstack.net import free_port

with warnings.catch_warnings():
    # It registers some handlers as plain functions, which aiohttp serves but warns of.
    warnings.simplefilter("ignore", DeprecationWarning)
    from localstripe import server  # type: ignore[import-untyped]
    from localstripe.resources import store  # type: ignore[import-untyped]

API_KEY = "sk_test_adx_localstripe"
# Test cards localstripe knows: one that pays, one that attaches but declines on charge.
CARD_OK = "4242424242424242"
CARD_DECLINED_ON_CHARGE = "4000000000000341"


def _application() -> web.Application:
    app = web.Application(middlewares=[server.error_middleware, server.auth_middleware])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for route in server.app.router.routes():
            app.router.add_route(route.method, route.resource.canonical, route.handler)
    return app


class LocalStripe:
    def __init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._runner = web.AppRunner(_application(), access_log=None)
        await self._runner.setup()
        self.port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def clear(self) -> None:
        store.clear()

    async def _call(self, method: str, path: str, data: dict[str, str] | None = None) -> Any:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, f"{self.url}{path}", data=data, headers=headers) as response,
        ):
            body = await response.json()
            assert response.status < 400, body
            return body

    async def payment_method(self, card_number: str) -> str:
        body = await self._call(
            "POST",
            "/v1/payment_methods",
            {
                "type": "card",
                "card[number]": card_number,
                "card[exp_month]": "12",
                "card[exp_year]": "2040",
                "card[cvc]": "123",
            },
        )
        return str(body["id"])

    async def intents(self) -> list[dict[str, Any]]:
        body = await self._call("GET", "/v1/payment_intents")
        return list(body["data"])

    async def intent(self, intent_id: str) -> dict[str, Any]:
        return dict(await self._call("GET", f"/v1/payment_intents/{intent_id}"))

    async def refunds(self, intent_id: str) -> list[dict[str, Any]]:
        body = await self._call("GET", f"/v1/refunds?payment_intent={intent_id}")
        return list(body["data"])
