"""The ceiling for s3fsv's read path: a minimal read-only mfusepy passthrough of a local directory.

    .venv/bin/python bench/passthrough.py SRC MOUNTPOINT [--single]

Serves SRC at MOUNTPOINT in the foreground until unmounted (``fusermount3 -u MOUNTPOINT``) or
interrupted. It uses every trick an ideal Python daemon would use (ARCHITECTURE.md, "Performance
levers"), so that its timings are what s3fsv can at best reach through the same Python/libfuse
stack:

- libfuse3 (``FUSE_LIBRARY_NAME=fuse3`` before importing mfusepy);
- ``open`` answers ENOSYS: the kernel stops sending OPEN/RELEASE for this connection and keeps the
  page cache between opens; reads are by path, served from a small table of open descriptors;
- no ``flush`` handler; mounted ``ro`` with ``kernel_cache`` and ``default_permissions``;
- hour-long entry/attribute timeouts and ``use_ino`` through ``init_with_config``;
- readdirplus: every directory entry carries its full stat (``FUSE_FILL_DIR_PLUS``), so ``find``
  and ``ls -l`` need no LOOKUP per entry (mfusepy itself passes fill flags 0);
- libfuse's multi-threaded loop, like s3fsv: with a cold page cache it overlaps disk waits and was
  1.2-2x faster here than the single-threaded loop (``--single``) for both a 1 GiB sequential
  read and 2,000 small files, even with one reader.
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import os
import sys
import threading
from collections import OrderedDict
from typing import Any

os.environ.setdefault("FUSE_LIBRARY_NAME", "fuse3")  # mfusepy prefers libfuse2 when both exist

import mfusepy  # noqa: E402

FUSE_FILL_DIR_PLUS = 2
TIMEOUT = 3600.0
MAX_FDS = 256


def stat_dict(st: os.stat_result) -> dict[str, int]:
    return {
        "st_mode": st.st_mode,
        "st_ino": st.st_ino,
        "st_nlink": st.st_nlink,
        "st_size": st.st_size,
        "st_blocks": st.st_blocks,
        "st_blksize": st.st_blksize,
        "st_uid": st.st_uid,
        "st_gid": st.st_gid,
        "st_atime": st.st_atime_ns,
        "st_mtime": st.st_mtime_ns,
        "st_ctime": st.st_ctime_ns,
    }


class Passthrough(mfusepy.Operations):
    """Read-only view of ``root``. Reads are by path: ``open`` is never called (ENOSYS)."""

    use_ns = True
    flush = None  # no handler: libfuse answers FLUSH without calling into Python

    def __init__(self, root: str) -> None:
        self.root = os.path.realpath(root)
        self._fds: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()

    def _real(self, path: str) -> str:
        return self.root + path if path != "/" else self.root

    def init_with_config(self, conn: Any, config: Any) -> None:
        if config is None:
            return
        config.entry_timeout = TIMEOUT
        config.attr_timeout = TIMEOUT
        config.negative_timeout = TIMEOUT
        config.use_ino = 1
        config.readdir_ino = 1
        config.kernel_cache = 1

    def getattr(self, path: str, fh: int | None = None) -> dict[str, int]:
        return stat_dict(os.lstat(self._real(path)))

    def readdir_with_offset(self, path: str, offset: int, fh: int) -> list[tuple[str, Any, int]]:
        real = self._real(path)
        out: list[tuple[str, Any, int]] = [
            (".", stat_dict(os.lstat(real)), 0),
            ("..", stat_dict(os.lstat(os.path.dirname(real) if path != "/" else real)), 0),
        ]
        with os.scandir(real) as it:
            for ent in it:
                out.append((ent.name, stat_dict(ent.stat(follow_symlinks=False)), 0))
        return out

    def readlink(self, path: str) -> str:
        return os.readlink(self._real(path))

    def open(self, path: str, flags: int) -> int:
        raise mfusepy.FuseOSError(errno.ENOSYS)

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        with self._lock:
            fd = self._fds.get(path)
            if fd is not None:
                self._fds.move_to_end(path)
        if fd is None:
            fd = os.open(self._real(path), os.O_RDONLY | os.O_CLOEXEC)
            with self._lock:
                old = self._fds.get(path)
                if old is not None:  # another thread opened it meanwhile
                    os.close(fd)
                    fd = old
                else:
                    self._fds[path] = fd
                    while len(self._fds) > MAX_FDS:
                        os.close(self._fds.popitem(last=False)[1])
        data = os.pread(fd, size, offset)
        if len(data) < size:  # read to the end: this file is most likely done with
            with self._lock:
                if self._fds.get(path) == fd:
                    del self._fds[path]
                    os.close(fd)
        return data

    def statfs(self, path: str) -> dict[str, int]:
        st = os.statvfs(self.root)
        return {
            key: getattr(st, key)
            for key in (
                "f_bsize",
                "f_frsize",
                "f_blocks",
                "f_bfree",
                "f_bavail",
                "f_files",
                "f_ffree",
                "f_favail",
                "f_namemax",
            )
        }


class FUSEPlus(mfusepy.FUSE):
    """mfusepy's FUSE with readdirplus: each entry is filled with its full stat."""

    def _readdir(self, path: bytes | None, buf: Any, filler: Any, offset: int, fip: Any) -> int:
        st = mfusepy.c_stat()
        decoded = None if path is None else path.decode(self.encoding, self.errors)
        for name, attrs, _ in self.operations.readdir_with_offset(decoded, offset, fip.contents.fh):
            ctypes.memset(ctypes.byref(st), 0, ctypes.sizeof(st))
            mfusepy.set_st_attrs(st, attrs, use_ns=True)
            if filler(buf, name.encode(self.encoding, self.errors), st, 0, FUSE_FILL_DIR_PLUS):
                break
        return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="local directory to serve")
    parser.add_argument("mountpoint", help="an existing, empty directory")
    parser.add_argument(
        "--single", action="store_true", help="single-threaded libfuse loop (default: multi)"
    )
    args = parser.parse_args()
    if not os.path.isdir(args.source):
        parser.error(f"not a directory: {args.source}")
    # The same kernel read-ahead as an s3fsv mount, so the ceiling stays a fair comparison.
    from s3fsv.mount.fuse import tune_kernel_readahead

    threading.Thread(target=tune_kernel_readahead, args=(args.mountpoint,), daemon=True).start()
    # libfuse installs its own SIGINT/SIGTERM/SIGHUP handlers: they leave the loop and unmount.
    FUSEPlus(
        Passthrough(args.source),
        args.mountpoint,
        foreground=True,
        nothreads=args.single,
        ro=True,
        kernel_cache=True,
        default_permissions=True,
        fsname="passthrough",
        subtype="passthrough",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
