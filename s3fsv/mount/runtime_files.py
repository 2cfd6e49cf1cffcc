"""Where a mount's daemon keeps its runtime files: its pid file (which names its control
socket), its exit report, its socket and its log, all under ``$XDG_STATE_HOME/s3fsv`` and keyed by
the mountpoint's resolved path, so that every client of a mount finds the same files."""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

from s3fsv.config import private_dir, state_dir

LOG_KEEP_BYTES = 10 * 1024 * 1024  # a mountpoint's log is rotated when a daemon starts on it


def mount_id(mp: Path) -> str:
    # Resolved, so that a client reaching the mount through a symlink finds the same files.
    return hashlib.sha256(os.path.realpath(mp).encode()).hexdigest()[:16]


def pid_file(mp: Path) -> Path:
    return private_dir(state_dir() / "mounts") / f"{mount_id(mp)}.json"


def exit_report_file(mp: Path) -> Path:
    return private_dir(state_dir() / "mounts") / f"{mount_id(mp)}.exit.json"


def socket_file(mp: Path) -> Path:
    return private_dir(state_dir() / "mounts") / f"{mount_id(mp)}.sock"


def log_file(mp: Path) -> Path:
    return private_dir(state_dir() / "logs") / f"mount-{mp.name or 'root'}-{mount_id(mp)}.log"


def rotate_log(logf: Path, keep: int = LOG_KEEP_BYTES) -> Path:
    """``logf``, moved to ``<name>.1`` first (replacing an older one) once over ``keep`` bytes.
    Called when a mount starts: a node restarted for months keeps two logs, each about the size
    one daemon's run writes."""
    with contextlib.suppress(OSError):
        if logf.stat().st_size > keep:
            logf.replace(logf.with_name(logf.name + ".1"))
    return logf
