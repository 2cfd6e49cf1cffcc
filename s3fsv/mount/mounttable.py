"""The kernel's table of mounts (``/proc/self/mountinfo``), read for what ``os.path.ismount``
cannot tell: whether a mount is an s3fsv one, and whether a FUSE mount whose daemon died (so
that ``stat`` of its root fails with ENOTCONN) is still there."""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path

FSTYPE = "fuse.s3fsv"


@dataclass(frozen=True)
class Mounted:
    """One line of the mount table."""

    path: str
    fstype: str
    source: str

    @property
    def is_s3fsv(self) -> bool:
        return self.fstype == FSTYPE or self.source.startswith("s3fsv:")


def _unescape(field: str) -> str:
    """Mount points in /proc/self/mountinfo escape space, tab, newline and backslash in octal."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mount_table() -> dict[str, Mounted] | None:
    """Mount point -> its (last, i.e. visible) mount; None when the table cannot be read."""
    try:
        text = Path("/proc/self/mountinfo").read_text(errors="surrogateescape")
    except OSError:
        return None
    found: dict[str, Mounted] = {}
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields, after = left.split(), right.split()
        if not sep or len(fields) < 5 or len(after) < 2:
            continue
        path = _unescape(fields[4])
        found[path] = Mounted(path, after[0], _unescape(after[1]))
    return found


def mounted_at(table: dict[str, Mounted], path: Path) -> Mounted | None:
    """The mount at ``path`` (as given, or with symlinks resolved: the table lists real
    paths), if any."""
    return table.get(str(path)) or table.get(os.path.realpath(path))


def is_dead(path: Path) -> bool:
    """Whether ``path`` is a FUSE mount whose daemon is gone (its root answers ENOTCONN)."""
    try:
        os.listdir(path)
    except OSError as err:
        return err.errno == errno.ENOTCONN
    return False
