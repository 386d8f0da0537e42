"""Loopback networking helpers: pick free ports and wait for servers to answer."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable

_POLL_INTERVAL = 0.05


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago; another process may still take it first."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def is_tcp_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on ``host:port`` right now."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def is_http_ready(url: str, timeout: float = 1.0) -> bool:
    """Whether ``url`` answers with a status below 500.

    A 404 still proves the server is up; a 5xx (e.g. 503 from a readiness endpoint)
    means it is not ready yet.
    """
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
            status: int = response.status
            return status < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except (OSError, ValueError):
        return False


def wait_for_tcp(
    host: str, port: int, timeout: float, alive: Callable[[], bool] | None = None
) -> None:
    """Block until ``host:port`` accepts connections; TimeoutError after ``timeout``.

    ``alive`` lets the caller give up early (RuntimeError) when the server process died.
    """
    _wait_until(lambda: is_tcp_open(host, port), timeout, alive, f"tcp://{host}:{port}")


def wait_for_http(url: str, timeout: float, alive: Callable[[], bool] | None = None) -> None:
    """Block until ``url`` answers with a status below 500; TimeoutError after ``timeout``."""
    _wait_until(lambda: is_http_ready(url), timeout, alive, url)


def _wait_until(
    probe: Callable[[], bool],
    timeout: float,
    alive: Callable[[], bool] | None,
    what: str,
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if probe():
            return
        if alive is not None and not alive():
            raise RuntimeError(f"the server process exited before {what} answered")
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} did not answer within {timeout:g}s")
        time.sleep(_POLL_INTERVAL)


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def url_host(host: str) -> str:
    """``host`` as it must appear in a URL: IPv6 literals go in brackets."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
