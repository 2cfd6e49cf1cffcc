"""What a daemon has to tell the ``s3fsv unmount`` that stopped it.

The daemon runs detached, so the outcome of its last work (commits on unmount, writes left
staged) would otherwise reach only its log. Before it exits it writes a report next to its pid
file; ``unmount`` prints it once the daemon is gone and exits with its code. The report names
the daemon's pid, so a report left by an earlier daemon at the same mountpoint is never shown
as this one's.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class ExitReport:
    """Lines for the user (``error: ...`` lines are failures) and the exit code they mean."""

    pid: int = field(default_factory=os.getpid)
    lines: list[str] = field(default_factory=list)
    code: int = 0

    def fail(self, line: str, code: int) -> None:
        self.lines.append(f"error: {line}")
        self.code = self.code or code

    def write(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps({"pid": self.pid, "lines": self.lines, "code": self.code}))
        os.replace(tmp, path)


def take_report(path: Path, pid: int) -> ExitReport | None:
    """The report daemon ``pid`` left at ``path``, removed once read; None if it left none."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    with contextlib.suppress(OSError):
        path.unlink()
    if not isinstance(raw, dict) or raw.get("pid") != pid:
        return None
    lines = [str(line) for line in raw.get("lines", [])]
    code = raw.get("code", 0)
    return ExitReport(pid, lines, code if isinstance(code, int) else 1)
