"""FUSE passthrough: the kernel serves reads of an open file straight from a local backing file,
without a request to the daemon (Linux >= 6.9, libfuse >= 3.17, CAP_SYS_ADMIN).

Debian 12 ships libfuse 3.14, so ``make passthrough`` builds 3.17 and installs it as
``<venv>/lib/s3fsv/libfuse3.so``. ``libfuse_chosen`` (around the import of mfusepy) points
mfusepy at it through ``FUSE_LIBRARY_PATH`` unless the user set that variable, set
``S3FSV_PASSTHROUGH=off``, or the library does not load. Whatever is missing (the library, the
capability, the kernel's support), mounts fall back silently to reads through the daemon.

A backing file is registered with the kernel once (``FUSE_DEV_IOC_BACKING_OPEN`` on the FUSE
device) and its id reused by every open of the same content; the ids of the least recently
used ones are closed when there are more than ``MAX_IDS`` (an open file keeps its own
reference).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import functools
import logging
import os
import struct
import sys
import threading
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

LIB = Path(sys.prefix) / "lib" / "s3fsv" / "libfuse3.so"
MIN_VERSION = (3, 17)
FUSE_CAP_PASSTHROUGH = 1 << 29
CAP_SYS_ADMIN = 21
MAX_IDS = 1024


def _iow(kind: int, nr: int, size: int) -> int:
    return (1 << 30) | (size << 16) | (kind << 8) | nr


BACKING_OPEN = _iow(229, 1, 16)  # struct fuse_backing_map {int32 fd; uint32 flags; uint64 pad}
BACKING_CLOSE = _iow(229, 2, 4)  # uint32 backing id


@contextlib.contextmanager
def libfuse_chosen() -> Iterator[None]:
    """While active, mfusepy is pointed at libfuse 3 (which it would pass over for libfuse 2)
    and, when there is one, at the libfuse built by ``make passthrough``, through
    ``FUSE_LIBRARY_NAME`` and ``FUSE_LIBRARY_PATH``; what the user set stays. Import mfusepy
    inside it. Afterwards the environment is as it was: the variables were for that import
    alone (the processes s3fsv starts, a run's command among them, get the user's own)."""
    chosen = {} if "FUSE_LIBRARY_NAME" in os.environ else {"FUSE_LIBRARY_NAME": "fuse3"}
    if not os.environ.get("FUSE_LIBRARY_PATH") and os.environ.get("S3FSV_PASSTHROUGH") != "off":
        built = _built_libfuse()
        if built is not None:
            chosen["FUSE_LIBRARY_PATH"] = built
    previous = {name: os.environ.get(name) for name in chosen}
    os.environ.update(chosen)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _built_libfuse() -> str | None:
    """The libfuse ``make passthrough`` built, when it is there, loads and is new enough."""
    if not LIB.is_file():
        return None
    try:
        version = ctypes.CDLL(str(LIB)).fuse_version()
    except (OSError, AttributeError) as err:
        log.debug("not using %s: %s", LIB, err)
        return None
    return str(LIB) if (version // 100, version % 100) >= MIN_VERSION else None


@functools.cache
def fusermount_understands(major: int, minor: int) -> bool:
    """Whether the installed ``fusermount3`` is at least as new as libfuse ``major.minor``: a
    newer library asks it for things an older one refuses (libfuse 3.17 passes
    ``--auto-unmount``, which Debian 12's fusermount3 3.14 rejects, and the mount is then
    unusable)."""
    import re
    import subprocess

    try:
        out = subprocess.run(
            ["fusermount3", "-V"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return False
    found = re.search(r"(\d+)\.(\d+)", out.stdout + out.stderr)
    return found is not None and (int(found[1]), int(found[2])) >= (major, minor)


def possible() -> bool:
    """Whether this process could use passthrough: a new enough libfuse is loaded and it has
    CAP_SYS_ADMIN. (The kernel says at mount time whether it can.)"""
    import mfusepy

    if (mfusepy.fuse_version_major, mfusepy.fuse_version_minor) < MIN_VERSION:
        return False
    if os.environ.get("S3FSV_PASSTHROUGH") == "off":
        return False
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> CAP_SYS_ADMIN & 1)
    except OSError:
        pass
    return False


def negotiate(conn: Any) -> bool:
    """In FUSE INIT: ask for passthrough when the kernel offers it; say whether it did."""
    if conn is None or not conn.capable & FUSE_CAP_PASSTHROUGH:
        return False
    conn.want |= FUSE_CAP_PASSTHROUGH
    conn.max_backing_stack_depth = 1  # a cache directory on an overlay is fine too
    return True


def set_backing_id(fi: Any, backing_id: int) -> None:
    """Set ``fuse_file_info.backing_id`` (after ``poll_events``; mfusepy's structure ends
    with both as one 64-bit field)."""
    offset = type(fi).poll_events.offset + 4
    ctypes.c_int32.from_address(ctypes.addressof(fi) + offset).value = backing_id


class Backing:
    """Kernel backing-file ids by content, for the FUSE session this process serves."""

    def __init__(self) -> None:
        self._ids: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()
        self._dev: int | None = None
        self.failed = False

    def _device(self) -> int:
        """The session's /dev/fuse descriptor (asked for inside a request)."""
        if self._dev is None:
            import mfusepy

            lib = mfusepy._libfuse
            lib.fuse_get_session.restype = ctypes.c_void_p
            lib.fuse_get_session.argtypes = [ctypes.c_void_p]
            lib.fuse_session_fd.restype = ctypes.c_int
            lib.fuse_session_fd.argtypes = [ctypes.c_void_p]
            fuse = ctypes.c_void_p(lib.fuse_get_context().contents.fuse)
            self._dev = int(lib.fuse_session_fd(lib.fuse_get_session(fuse)))
        return self._dev

    def id_for(self, key: str, path: Path) -> int | None:
        """The backing id of file ``path`` (content ``key``), registering it if needed; None
        if the kernel refuses (then passthrough is off for the rest of the session)."""
        with self._lock:
            found = self._ids.get(key)
            if found is not None:
                self._ids.move_to_end(key)
                return found
        if self.failed:
            return None
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:  # evicted meanwhile
            return None
        try:
            arg = bytearray(struct.pack("<iIQ", fd, 0, 0))
            new = fcntl.ioctl(self._device(), BACKING_OPEN, arg)
        except OSError as err:
            log.warning("passthrough refused (%s): files are read through the daemon", err)
            self.failed = True
            return None
        finally:
            os.close(fd)
        with self._lock:
            self._ids[key] = new
            old = self._ids.popitem(last=False) if len(self._ids) > MAX_IDS else None
        if old is not None:
            with contextlib.suppress(OSError):
                fcntl.ioctl(self._device(), BACKING_CLOSE, struct.pack("<I", old[1]))
        return int(new)
