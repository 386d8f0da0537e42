"""Virus scanning of uploaded files: clamd in production, an EICAR-only scanner in development.

``scanner_from_settings`` picks the backend from ADX_SCANNER. Every backend takes the file
as an async iterator of chunks, so a file is streamed from storage and never held whole.
"""

from adx_core.scanning.base import (
    ScanError,
    ScanLimitExceededError,
    Scanner,
    ScannerUnavailableError,
    ScanVerdict,
)
from adx_core.scanning.clamd import ClamdEndpoint, ClamdScanner, interpret_reply
from adx_core.scanning.eicar import EICAR_SIGNATURE, EicarScanner, eicar_bytes
from adx_core.settings import ScannerKind, Settings


def scanner_from_settings(settings: Settings) -> Scanner:
    """The scanner ADX_SCANNER names, with the timeout and size limit of the settings."""
    if settings.scanner is ScannerKind.EICAR:
        return EicarScanner(settings.env, max_bytes=settings.scan_max_bytes)
    return ClamdScanner(
        settings.clamd_endpoint,
        timeout=settings.scan_timeout_seconds,
        max_bytes=settings.scan_max_bytes,
    )


__all__ = [
    "EICAR_SIGNATURE",
    "ClamdEndpoint",
    "ClamdScanner",
    "EicarScanner",
    "ScanError",
    "ScanLimitExceededError",
    "ScanVerdict",
    "Scanner",
    "ScannerUnavailableError",
    "eicar_bytes",
    "interpret_reply",
    "scanner_from_settings",
]
