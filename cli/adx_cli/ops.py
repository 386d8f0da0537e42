"""``adx ops``: start, list, follow, wait for and cancel operations from a shell.

Prints JSON: one document, or one per line for ``list`` and ``follow``. Exit codes, so a
script can branch without parsing: 0 done, 1 the operation failed or was cancelled, 2 a
usage or HTTP error (the problem's title and detail go to stderr), 3 not finished yet
(``wait`` ran out of time, or ``result`` of a running operation).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from adx_core.client import AdxClient, ApiProblem, Operation

OK, OPERATION_FAILED, ERROR, NOT_FINISHED = 0, 1, 2, 3
STATUSES = ("pending", "running", "succeeded", "failed", "cancelled")


@dataclass(frozen=True)
class _Target:
    api: str
    token: str | None


@click.group()
@click.option(
    "--api",
    "api_url",
    envvar="ADX_API_URL",
    default="http://127.0.0.1:8080",
    show_default=True,
    help="The API's base URL (env ADX_API_URL).",
)
@click.option("--token", envvar="ADX_TOKEN", help="A bearer token (env ADX_TOKEN; `adx token`).")
@click.pass_context
def ops(ctx: click.Context, api_url: str, token: str | None) -> None:
    """Operations: list, get, result, wait, follow, cancel and start."""
    ctx.obj = _Target(api_url, token)


@ops.command("list")
@click.option("--type", "type_", metavar="WORKFLOW", help="A workflow type name.")
@click.option("--status", type=click.Choice(STATUSES))
@click.option("--since", metavar="RFC3339", help="Started at or after, e.g. 2025-01-31T00:00:00Z.")
@click.option("--until", metavar="RFC3339", help="Started before.")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.pass_obj
def list_operations(
    target: _Target,
    type_: str | None,
    status: str | None,
    since: str | None,
    until: str | None,
    limit: int,
) -> None:
    """The tenant's operations, newest first, one JSON object a line."""

    async def work(adx: AdxClient) -> int:
        shown = 0
        operations = adx.list(
            type=type_, status=status, since=since, until=until, page_size=min(limit, 100)
        )
        async for operation in operations:
            _print_line(operation.raw)
            shown += 1
            if shown >= limit:
                break
        return OK

    _run(target, work)


@ops.command()
@click.argument("operation_id", metavar="ID")
@click.pass_obj
def get(target: _Target, operation_id: str) -> None:
    """One operation, as it is now."""

    async def work(adx: AdxClient) -> int:
        _print((await adx.get(operation_id)).raw)
        return OK

    _run(target, work)


@ops.command()
@click.argument("operation_id", metavar="ID")
@click.option("--wait", type=click.IntRange(0, 60), help="Wait up to N s for it to finish.")
@click.pass_obj
def result(target: _Target, operation_id: str, wait: int | None) -> None:
    """The result of a succeeded operation (exit 3 while it runs, 1 if it failed)."""

    async def work(adx: AdxClient) -> int:
        _print(await adx.result(operation_id, wait=wait))
        return OK

    _run(target, work)


@ops.command()
@click.argument("operation_id", metavar="ID")
@click.option("--timeout", type=click.FloatRange(min=0), help="Give up after S seconds (exit 3).")
@click.pass_obj
def wait(target: _Target, operation_id: str, timeout: float | None) -> None:
    """Wait for the operation to end, following its events; print it as it ended."""

    async def work(adx: AdxClient) -> int:
        operation = await adx.wait(operation_id, timeout)
        _print(operation.raw)
        return _outcome(operation)

    _run(target, work)


@ops.command()
@click.argument("operation_id", metavar="ID")
@click.option("--last-event-id", help="Resume after this event id.")
@click.pass_obj
def follow(target: _Target, operation_id: str, last_event_id: str | None) -> None:
    """Print the operation's events as they come, one JSON line each, until the last."""

    async def work(adx: AdxClient) -> int:
        async for event in adx.follow(operation_id, last_event_id=last_event_id):
            _print_line(event.to_json())
            if event.final:
                return _outcome(event.operation())
        return OK  # the server said there is nothing more to follow (204)

    _run(target, work)


@ops.command()
@click.argument("operation_id", metavar="ID")
@click.option("--wait", type=click.IntRange(0, 60), help="Wait up to N s for it to end.")
@click.pass_obj
def cancel(target: _Target, operation_id: str, wait: int | None) -> None:
    """Cancel the operation (its compensation runs); exit 1 if it ended otherwise."""

    async def work(adx: AdxClient) -> int:
        operation = await adx.cancel(operation_id, wait=wait)
        _print(operation.raw)
        ended_otherwise = operation.done and operation.status != "cancelled"
        return OPERATION_FAILED if ended_otherwise else OK

    _run(target, work)


@ops.command()
@click.argument(
    "method", type=click.Choice(["GET", "POST", "PUT", "PATCH", "DELETE"], case_sensitive=False)
)
@click.argument("path")
@click.option("--json", "json_file", type=click.File("r"), help="The JSON body: a file, or -.")
@click.option("--idempotency-key", help="Repeat a start without starting it twice.")
@click.option("--wait", type=click.IntRange(0, 60), help="Prefer: wait=N.")
@click.pass_obj
def start(
    target: _Target,
    method: str,
    path: str,
    json_file: IO[str] | None,
    idempotency_key: str | None,
    wait: int | None,
) -> None:
    """Call METHOD PATH, such as POST /v1/tenants; print the operation, or the resource of a
    direct route."""
    body: Any = None
    if json_file is not None:
        try:
            body = json.load(json_file)
        except ValueError as err:
            raise click.BadParameter(f"not JSON: {err}", param_hint="--json") from None

    async def work(adx: AdxClient) -> int:
        answer = await adx.start(
            method, path, json=body, idempotency_key=idempotency_key, wait=wait
        )
        _print(answer.body)
        return _outcome(answer.operation) if answer.operation is not None else OK

    _run(target, work)


def _outcome(operation: Operation) -> int:
    return OPERATION_FAILED if operation.status in ("failed", "cancelled") else OK


def _print(document: Any) -> None:
    click.echo(json.dumps(document, indent=2))


def _print_line(document: Any) -> None:
    click.echo(json.dumps(document, separators=(",", ":")))


def _run(target: _Target, work: Callable[[AdxClient], Awaitable[int]]) -> None:
    """Run ``work`` with a client, and turn what went wrong into a message and exit code."""
    import aiohttp

    from adx_core.client import (
        AdxClient,
        ApiError,
        ApiProblem,
        StreamUnavailable,
        WaitTimeout,
    )

    if not target.token:
        raise click.UsageError("no token: pass --token or export ADX_TOKEN (see `adx token`)")

    async def main() -> int:
        async with AdxClient(target.api, target.token) as adx:
            return await work(adx)

    try:
        code = asyncio.run(main())
    except ApiProblem as problem:
        code = _problem_code(problem)
        where = f" (request {problem.request_id})" if problem.request_id else ""
        click.echo(f"error: {problem.status} {problem.message} [{problem.kind}]{where}", err=True)
    except ApiError as err:
        code = ERROR
        click.echo(f"error: {err}", err=True)
    except WaitTimeout as err:
        code = NOT_FINISHED
        click.echo(f"error: {err}", err=True)
    except StreamUnavailable as err:
        code = ERROR
        click.echo(f"error: {err}", err=True)
    except (aiohttp.ClientError, TimeoutError) as err:
        code = ERROR
        click.echo(
            f"error: cannot reach the API at {target.api}: {err or type(err).__name__}", err=True
        )
    raise SystemExit(code)


def _problem_code(problem: ApiProblem) -> int:
    """A 409 from ``result`` says how the operation stands rather than that the call was
    wrong: still running (3), or failed or cancelled (1). A cancel refused because the
    operation had already ended is a refused call (2)."""
    if problem.status == 409 and problem.kind == "operation-not-finished":
        return NOT_FINISHED
    if problem.status == 409 and problem.kind == "operation-ended":
        return ERROR
    if problem.status == 409 and problem.kind.startswith("operation-"):
        return OPERATION_FAILED
    return ERROR
