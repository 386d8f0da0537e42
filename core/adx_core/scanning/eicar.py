"""The EICAR test file, and a development scanner that knows nothing else.

The EICAR string is assembled at run time: a source file that holds it whole would be
flagged by the virus scanners that look at this repository.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import ClassVar

from adx_core.logging import get_logger
from adx_core.scanning.base import ByteBudget, Scanner, ScanVerdict, checked_limit
from adx_core.settings import Environment, SettingsError

# Two halves, each base64-encoded on its own (at a split that does not fall on a base64
# block), so that neither the string nor its base64 form appears here.
_EICAR_HALVES = (
    "WDVPIVAlQEFQWzRcUFpYNTQoUF4pN0NDKTd9JEVJQ0FSLQ==",
    "U1RBTkRBUkQtQU5USVZJUlVTLVRFU1QtRklMRSEkSCtIKg==",
)

# The name ClamAV's official database gives the EICAR test file.
EICAR_SIGNATURE = "Eicar-Test-Signature"

_log = get_logger(__name__)


def eicar_bytes() -> bytes:
    """The 68-byte EICAR anti-virus test file."""
    return b"".join(base64.b64decode(half) for half in _EICAR_HALVES)


class EicarScanner(Scanner):
    """Development only: finds the EICAR test string anywhere in a stream, and nothing else.

    It lets ``make dev`` run uploads end to end where clamd is not installed. It refuses
    to exist in production, even when built directly rather than from the settings.
    """

    name: ClassVar[str] = "eicar"

    def __init__(self, env: Environment | str, *, max_bytes: int) -> None:
        if Environment(env) is Environment.PRODUCTION:
            raise SettingsError(
                "the EICAR scanner only knows the EICAR test string; production needs clamd"
            )
        self._max_bytes = checked_limit(max_bytes)
        self._needle = eicar_bytes()
        _log.warning(
            "virus scanning uses the EICAR test scanner: it knows nothing but the EICAR "
            "test file and lets every real virus through; install clamd for real scanning",
            scanner=self.name,
        )

    async def scan(self, chunks: AsyncIterator[bytes]) -> ScanVerdict:
        budget = ByteBudget(self._max_bytes)
        # The last len(needle) - 1 bytes seen, so a string split across chunks is found.
        carry = b""
        found = False
        async for chunk in chunks:
            # Read to the end even after a find, as clamd does: a stream over the limit is
            # reported as such whatever it holds.
            budget.take(len(chunk))
            if found:
                continue
            window = carry + chunk
            found = self._needle in window
            carry = window[-(len(self._needle) - 1) :]
        return ScanVerdict(
            clean=not found,
            signature=EICAR_SIGNATURE if found else None,
            scanned_bytes=budget.used,
            scanner=self.name,
        )

    async def ping(self) -> None:
        """Always answers: the scanner lives in this process."""

    async def close(self) -> None:
        """Nothing to release."""
