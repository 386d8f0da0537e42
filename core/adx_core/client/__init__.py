"""A small async client of the ADX API, for scripts and the benchmarks.

    async with AdxClient("http://127.0.0.1:8080", token) as adx:
        answer = await adx.start("POST", "/v1/tenants", json=body)
        if answer.operation is not None:
            async for event in adx.follow(answer.operation.id):
                print(event.kind, event.data)
        tenant = await adx.run("POST", "/v1/tenants", json=other_body)  # start and wait

``adx ops`` (adx_cli.ops) is the same client on the command line.
"""

from adx_core.client.api import AdxClient
from adx_core.client.errors import (
    AdxClientError,
    ApiError,
    ApiProblem,
    OperationFailed,
    StreamUnavailable,
    WaitTimeout,
)
from adx_core.client.models import Answer, Event, Operation, Progress, StreamToken
from adx_core.client.sse import SseEvent, SseParser

__all__ = [
    "AdxClient",
    "AdxClientError",
    "Answer",
    "ApiError",
    "ApiProblem",
    "Event",
    "Operation",
    "OperationFailed",
    "Progress",
    "SseEvent",
    "SseParser",
    "StreamToken",
    "StreamUnavailable",
    "WaitTimeout",
]
