"""The development mail server: notifications land as .eml files under .adx/mail/.

A real SMTP server (aiosmtpd) on loopback, so the workers send exactly as they do in
production; nothing leaves the machine.
"""

from __future__ import annotations

import itertools
import threading
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


class _Maildir:
    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._lock = threading.Lock()
        existing = len(list(directory.glob("*.eml"))) if directory.exists() else 0
        self._numbers = itertools.count(existing + 1)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content, policy=policy.default)
        template = str(message.get("X-ADX-Template", "mail")).replace("/", "_")[:40]
        with self._lock:
            self._directory.mkdir(parents=True, exist_ok=True)
            path = self._directory / f"{next(self._numbers):05d}-{template}.eml"
            path.write_bytes(envelope.content)
        return "250 Message accepted"


class DevMailServer:
    def __init__(self, directory: Path, port: int) -> None:
        self.directory = directory
        self.port = port
        self._controller = Controller(_Maildir(directory), hostname="127.0.0.1", port=port)

        self._started = False

    def start(self) -> None:
        self._controller.start()
        self._started = True

    def stop(self) -> None:
        if self._started:
            self._controller.stop()
            self._started = False
