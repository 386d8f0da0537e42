"""moto's standalone S3 server (PyPI's moto[server]) on loopback, for the S3 provider.

moto keeps everything in memory, so the data lives and dies with the process. By default
it accepts any credentials; ``iam_auth=True`` starts one that checks signatures and IAM
policies, for the tests that need credentials refused. It is stopped by its own pid.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from pathlib import Path

from adx_cli.devstack.net import wait_for_http
from tests.support.loopback import LoopbackServer

MOTO_SERVER = Path(sys.executable).parent / "moto_server"
REGION = "us-east-1"
# What moto accepts when IAM checks are off; never a real credential.
ACCESS_KEY = "adx-test-access-key"
SECRET_KEY = "adx-test-secret-key-not-a-secret"


class MotoServer(LoopbackServer):
    def __init__(self, workdir: Path, *, iam_auth: bool = False) -> None:
        super().__init__(workdir)
        self._iam_auth = iam_auth

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.endpoint}"

    def start(self, timeout: float = 30.0) -> None:
        env = {**os.environ, "AWS_DEFAULT_REGION": REGION}
        if self._iam_auth:
            # Every request is checked from the first one on; see allow_unsigned.
            env["INITIAL_NO_AUTH_ACTION_COUNT"] = "0"
        self._spawn(
            [str(MOTO_SERVER), "-H", self.host, "-p", str(self.port)], f"moto-{self.port}.log", env
        )
        try:
            wait_for_http(f"{self.url}/moto-api/", timeout, alive=self._alive)
        except (TimeoutError, RuntimeError):
            self.stop()
            raise

    def env(self, bucket: str) -> dict[str, str]:
        return {
            "ADX_S3_ENDPOINT": self.endpoint,
            "ADX_S3_REGION": REGION,
            "ADX_S3_BUCKET": bucket,
            "ADX_S3_SECURE": "false",
            "ADX_S3_ACCESS_KEY": ACCESS_KEY,
            "ADX_S3_SECRET_KEY": SECRET_KEY,
        }

    def allow_unsigned(self, requests: int) -> None:
        """Let the next ``requests`` requests through unchecked (on an ``iam_auth`` server),
        so a test can create the IAM user whose keys it then uses."""
        # Not form-encoded: moto reads the raw body, which Flask empties for a form.
        request = urllib.request.Request(  # noqa: S310 (our own loopback URL)
            f"{self.url}/moto-api/reset-auth",
            data=str(requests).encode(),
            headers={"Content-Type": "text/plain"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            response.read()
