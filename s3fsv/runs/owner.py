"""Who runs a run, as its ``run.json`` says while it runs: the ``s3fsv run`` process and, once
it has started, the command, each by pid and start time, on this host since this boot; and
whether either still runs. A run whose s3fsv was killed may leave its command running, still
writing the outputs: such a run is not finished until both have ended."""

from __future__ import annotations

import functools
import os
import socket
from pathlib import Path
from typing import Any


def here(command_pid: int | None = None) -> dict[str, Any]:
    """This process (and its command ``command_pid``) as the owner of a run."""
    owner: dict[str, Any] = {
        "host": socket.gethostname(),
        "boot": boot_id(),
        "pid": os.getpid(),
        "since": started(os.getpid()),
    }
    if command_pid is not None:
        owner["command"] = {"pid": command_pid, "since": started(command_pid)}
    return owner


def still_running(owner: Any) -> str | None:
    """What still runs the run that ``owner`` (from :func:`here`) describes, said for a
    message ("s3fsv process 123"); None when nothing does. A run of another host cannot be
    checked from here, and counts as running: its directory may be shared (a network home)."""
    if not isinstance(owner, dict):
        return None
    host = owner.get("host")
    if isinstance(host, str) and host != socket.gethostname():
        return f"on {host}, as far as can be told from here: finish it there"
    if owner.get("boot") not in (None, boot_id()):
        return None  # this machine started again since
    if _alive(owner.get("pid"), owner.get("since")):
        return f"s3fsv process {owner['pid']}"
    command = owner.get("command")
    if isinstance(command, dict) and _alive(command.get("pid"), command.get("since")):
        return f"its command, process {command['pid']}, whose s3fsv ended"
    return None


def _alive(pid: Any, since: Any) -> bool:
    """Whether process ``pid``, started at ``since`` (None: unknown), still runs: a pid reused
    since, and a zombie its parent has not reaped yet, do not."""
    if type(pid) is not int or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    state = _stat(pid)
    if state is None:
        return True
    return state[0] not in ("Z", "X") and (since is None or state[1] == since)


def started(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot; None where unknown."""
    state = _stat(pid)
    return None if state is None else state[1]


def _stat(pid: int) -> tuple[str, int] | None:
    """Process ``pid``'s state letter and start time (fields 3 and 22 of ``/proc/PID/stat``)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return fields[0], int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


@functools.cache
def boot_id() -> str | None:
    """This boot's id (Linux), or None."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None
