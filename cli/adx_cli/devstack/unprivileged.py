"""Running a server as an unprivileged system user when we are root.

PostgreSQL refuses to run as root, and containers and CI machines often run everything
as root. So when our effective uid is 0 we create (once) a system user and hand it the
data directory, and we make sure it can reach the binaries and the data directory.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .embedded import ensure_folder_permissions

_TRAVERSE = stat.S_IXGRP | stat.S_IXOTH
_READ = stat.S_IRGRP | stat.S_IROTH


@dataclass(frozen=True)
class RunAs:
    """The identity a child process switches to before it execs."""

    name: str
    uid: int
    gid: int


def running_as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def ensure_system_user(name: str) -> RunAs:
    """The system user ``name`` (no login, no home), created if it does not exist yet."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        # Another process (a parallel test run) may create it at the same moment.
        with contextlib.suppress(subprocess.CalledProcessError):
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                check=True,
                capture_output=True,
            )
        entry = pwd.getpwnam(name)
    return RunAs(name=name, uid=entry.pw_uid, gid=entry.pw_gid)


def ensure_traversable(path: Path) -> None:
    """Let other users traverse every directory from ``/`` down to ``path``.

    Only the execute (search) bit is added, and only where it is missing, so that
    nothing is chmodded needlessly (which would also fail on read-only mounts).
    """
    for directory in [path, *path.parents]:
        mode = directory.stat().st_mode
        if mode & _TRAVERSE != _TRAVERSE:
            directory.chmod(mode | _TRAVERSE)


def ensure_install_readable(install_root: Path) -> None:
    """Let other users run ``install_root/bin`` and read ``lib`` and ``share``.

    The recursive walk is skipped when sentinel entries already allow it: a wheel
    installed by pip is normally world-readable already.
    """
    ensure_traversable(install_root)
    bin_dir, lib_dir, share_dir = (install_root / d for d in ("bin", "lib", "share"))
    if _others_may(bin_dir / "postgres", stat.S_IXOTH) and all(
        _others_may(d, stat.S_IXOTH | stat.S_IROTH) for d in (bin_dir, lib_dir, share_dir)
    ):
        return
    ensure_folder_permissions(bin_dir, _READ | _TRAVERSE)
    ensure_folder_permissions(lib_dir, _READ)
    ensure_folder_permissions(share_dir, _READ)


def hand_over(path: Path, owner: RunAs) -> None:
    """Make ``owner`` own ``path`` and, when needed, everything below it."""
    top = path.lstat()
    if top.st_uid == owner.uid and top.st_gid == owner.gid:
        # A data directory we handed over before: skip the walk on every restart.
        return
    os.chown(path, owner.uid, owner.gid, follow_symlinks=False)
    for root, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            os.chown(Path(root) / name, owner.uid, owner.gid, follow_symlinks=False)


def _others_may(path: Path, bits: int) -> bool:
    try:
        return path.stat().st_mode & bits == bits
    except FileNotFoundError:
        return False
