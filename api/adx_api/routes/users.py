"""Routes of the users domain (being written in this change)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel

OPENAPI_PATHS: dict[str, Any] = {}
OPENAPI_MODELS: tuple[type[BaseModel], ...] = ()


def add_routes(app: web.Application) -> None:
    del app
