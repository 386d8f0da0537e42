"""What a storage provider raises, independent of the client library underneath.

Activities turn these into Temporal failures: a missing object, refused credentials, an
unsafe key and a checksum that does not match are permanent; an unavailable or throttling
service is retried by the activity's retry policy.
"""

from __future__ import annotations


class StorageError(Exception):
    """Base class. ``retryable`` says whether trying again later can succeed."""

    retryable = False


class ObjectNotFoundError(StorageError):
    def __init__(self, key: str) -> None:
        super().__init__(f"no object at {key!r}")
        self.key = key


class StorageAuthError(StorageError):
    """The credentials were refused or lack a permission. The message names no secret."""


class StorageUnavailableError(StorageError):
    """The service could not be reached, timed out, throttled or failed on its side."""

    retryable = True


class UnsafeKeyError(StorageError, ValueError):
    """A key that could leave its prefix, refused before any I/O."""


class InvalidRangeError(StorageError, ValueError):
    """A byte range that starts beyond the end of the object."""


class ChecksumMismatchError(StorageError):
    """What was written does not hash to what was expected. A new copy can fix it."""

    retryable = True

    def __init__(self, key: str, expected: str, actual: str) -> None:
        super().__init__(f"checksum of {key!r} is {actual}, expected {expected}")
        self.key = key
        self.expected = expected
        self.actual = actual
