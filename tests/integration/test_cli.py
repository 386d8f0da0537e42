"""The ``adx`` command as a user runs it: ``adx dev`` up, a tenant through it, Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
from click.testing import CliRunner

from adx_cli.devstack.net import free_port, is_http_ready
from adx_cli.main import main
from adx_core.auth import verify_token
from adx_core.contracts.tenants import PLATFORM_TENANT_ID
from adx_core.settings import Settings
from tests.support.processes import settings_env


def _request(
    url: str, token: str, body: dict[str, object] | None = None
) -> tuple[int, dict[str, object]]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(  # noqa: S310 (loopback, our own server)
        url,
        data=data,
        method="POST" if body is not None else "GET",
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Prefer": "wait=20",
        },
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        return response.status, json.loads(response.read())


def test_adx_dev_runs_the_stack_and_stops_cleanly(tmp_path: Path) -> None:
    api, temporal, ui, pg, smtp = (free_port() for _ in range(5))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADX_")}
    argv = [sys.executable, "-m", "adx_cli", "dev", "--home", str(tmp_path / ".adx")]
    argv += ["--api-port", str(api), "--temporal-port", str(temporal)]
    argv += ["--ui-port", str(ui), "--postgres-port", str(pg), "--smtp-port", str(smtp)]
    # Free ports of their own: API port + 10 + n may belong to another process here.
    for name in ("files", "tenants", "users"):
        argv += ["--worker-port", f"{name}={free_port()}"]
    process = subprocess.Popen(
        argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    output: list[str] = []
    try:
        started = time.monotonic()
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            if "api is ready" in line:
                break
        else:
            pytest.fail("adx dev exited before it was ready:\n" + "".join(output))
        assert time.monotonic() - started < 90
        children = psutil.Process(process.pid).children(recursive=True)
        token = re.search(r"export ADX_TOKEN=(\S+)", "".join(output))
        assert token is not None
        assert is_http_ready(f"http://127.0.0.1:{ui}/")

        status, operation = _request(
            f"http://127.0.0.1:{api}/v1/tenants",
            token.group(1),
            {
                "slug": "acme",
                "display_name": "Acme Inc",
                "plan": "pro",
                "admin": {"email": "ada@acme.example", "name": "Ada"},
            },
        )
        assert status == 200
        assert operation["status"] == "succeeded"
        # The welcome mail went through the development mail server into .adx/mail/.
        (welcome,) = (tmp_path / ".adx" / "mail").glob("*-welcome.eml")
        assert "ada@acme.example" in welcome.read_text()
        listed = subprocess.run(
            [
                str(Path(sys.executable).parent / "temporal"),
                *("workflow", "list", "--address", f"127.0.0.1:{temporal}", "--output", "json"),
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        assert operation["id"] in listed.stdout

        # A token for the new tenant, by slug, from a second terminal.
        minted = subprocess.run(
            [
                *(sys.executable, "-m", "adx_cli", "token", "--tenant", "acme"),
                *("--user", "bob@acme.example", "--role", "tenant-admin"),
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert minted.returncode == 0, minted.stderr
        assert minted.stdout.count("\n") == 1  # only the token
    finally:
        process.send_signal(signal.SIGINT)
        # Keep reading while it stops: a full pipe would block its shutdown logging.
        rest, _ = process.communicate(timeout=60)
        output.append(rest or "")
        code = process.returncode
    assert code == 0, "".join(output)
    assert children
    assert not [child for child in children if child.is_running() and child.status() != "zombie"]


def test_token_command_prints_only_a_valid_token(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in settings_env(settings).items():
        if key.startswith("ADX_"):
            monkeypatch.setenv(key, value)
    result = CliRunner().invoke(
        main,
        ["token", "--tenant", "platform", "--user", "ops@example.com", "--role", "platform-admin"],
    )
    assert result.exit_code == 0, result.output
    claims = verify_token(settings, result.output.strip())
    assert claims.tenant_id == PLATFORM_TENANT_ID
    assert claims.email == "ops@example.com"
    unknown = CliRunner().invoke(main, ["token", "--tenant", "nope", "--user", "ops@example.com"])
    assert unknown.exit_code != 0
    assert "no tenant with slug 'nope'" in unknown.output
    bad_user = CliRunner().invoke(main, ["token", "--tenant", "platform", "--user", "not-an-email"])
    assert bad_user.exit_code == 2


def test_bad_configuration_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADX_CODEC_KEYS", "k1:not-base64!")
    result = CliRunner().invoke(main, ["migrate"])
    assert result.exit_code == 1
    assert "ADX_CODEC_KEYS" in result.output
