"""What a commit records of how it was made (``provenance``, docs/format.md section 11): who,
where and with which tool, and the command lines of the processes that wrote through a mount.
"""

from __future__ import annotations

import getpass
import os
import shlex
import socket
from pathlib import Path
from typing import Any

from s3fsv.version import __version__


def provenance_context() -> dict[str, Any]:
    """Who and what made a commit from a mount, besides the inputs it read."""
    try:
        user = getpass.getuser()
    except Exception:
        user = str(os.getuid())
    return {"user": user, "host": socket.gethostname(), "tool": f"s3fsv {__version__}"}


def command_of(pid: int) -> str:
    """How process ``pid`` was run, as a shell line that runs it again: ``cd DIR && ARGS``
    (relative paths in ARGS need DIR), or ARGS alone when its directory cannot be read (another
    user's process); "" when its arguments cannot be read (it is gone)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    args = raw.split(b"\0")
    if args and not args[-1]:
        args.pop()  # the terminating NUL
    if not args:
        return ""  # a kernel thread, or a process that cleared its arguments
    line = _command_line([a.decode(errors="replace") for a in args])
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd").removesuffix(" (deleted)")
    except OSError:
        return line
    return f"cd {shlex.quote(cwd)} && {line}"


def _command_line(args: list[str], limit: int = 500) -> str:
    """``args`` quoted as a shell needs them (so that where each ends is kept), whole
    arguments only up to about ``limit`` characters (the program always), then ``...``."""
    out: list[str] = []
    used = 0
    for arg in args:
        quoted = shlex.quote(arg)
        if out and used + len(quoted) > limit:
            out.append("...")
            break
        out.append(quoted)
        used += len(quoted) + 1
    return " ".join(out)
