"""The FUSE adapter: one ``Filesystem`` call per operation, errors mapped to errno in one place.

Nothing here knows about stores, trees or caches. ``mount`` runs the libfuse3 loop (through
mfusepy) until the filesystem is unmounted or the process gets SIGTERM/SIGINT.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import gc
import logging
import os
import struct
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from s3fsv.mount import passthrough

with passthrough.libfuse_chosen():  # libfuse 3, >= 3.17 where `make passthrough` built it
    import mfusepy
from cachetools import LRUCache  # noqa: E402

from s3fsv.errors import S3fsvError  # noqa: E402
from s3fsv.mount.handles import Attr  # noqa: E402
from s3fsv.mount.unmount_guard import UnmountGuard  # noqa: E402
from s3fsv.mount.vfs import XATTR_PREFIX, Filesystem  # noqa: E402
from s3fsv.store.reader import Bytes  # noqa: E402

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
FUSE_FILL_DIR_PLUS = 2
BLOCK_SIZE = 128 * 1024  # st_blksize: what tools take as the preferred read size
IMMUTABLE_TIMEOUT = 3600.0


def errno_of(exc: BaseException) -> int:
    """The single mapping from exceptions to errno values."""
    if isinstance(exc, S3fsvError):
        return exc.errno
    if isinstance(exc, OSError) and isinstance(exc.errno, int) and exc.errno > 0:
        return exc.errno
    return errno.EIO


def translated(fn: F) -> F:
    """Run an operation; turn any exception into ``FuseOSError`` with ``errno_of``. When the
    ``Operations`` has ``timers``, the operation's own is told how long it took."""
    op = fn.__name__.lstrip("_").removesuffix("_with_offset").removesuffix("_pinned")

    @functools.wraps(fn)
    def wrapper(self: Operations, *args: Any, **kwargs: Any) -> Any:
        timers = self.timers
        start = time.perf_counter() if timers is not None else 0.0
        try:
            return fn(self, *args, **kwargs)
        except mfusepy.FuseOSError:
            raise
        except Exception as exc:
            code = errno_of(exc)
            if code == errno.EIO:
                log.error("%s%r failed: %s", fn.__name__, args[:1], exc)
            else:
                log.debug("%s%r: %s", fn.__name__, args[:1], exc)
            raise mfusepy.FuseOSError(code) from None
        finally:
            if timers is not None:
                timers[op](time.perf_counter() - start)

    return wrapper  # type: ignore[return-value]


def kernel_invalidator() -> Callable[[str], None] | None:
    """A function that makes the kernel forget a path's entry, attributes and cached pages
    (libfuse's ``fuse_invalidate_path``), or None where libfuse lacks it. Must be made inside
    a FUSE callback (it needs the session, which only callbacks can name)."""
    lib = getattr(mfusepy, "_libfuse", None)
    invalidate = getattr(lib, "fuse_invalidate_path", None)
    if lib is None or invalidate is None:
        return None
    session = ctypes.c_void_p(lib.fuse_get_context().contents.fuse)
    invalidate.argtypes = (ctypes.c_void_p, ctypes.c_char_p)
    invalidate.restype = ctypes.c_int

    def forget(path: str) -> None:
        status = invalidate(session, os.fsencode(path))
        if status not in (0, -errno.ENOENT):  # ENOENT: the kernel had nothing for it
            log.debug("kernel cache of %s not invalidated: %s", path, os.strerror(-status))

    return forget


def stat_dict(attr: Attr, uid: int, gid: int) -> dict[str, int]:
    return {
        "st_mode": attr.mode,
        "st_ino": attr.ino,
        "st_nlink": attr.nlink,
        "st_size": attr.size,
        "st_blocks": (attr.size + 511) // 512,
        "st_blksize": BLOCK_SIZE,
        "st_mtime": attr.mtime_ns,
        "st_ctime": attr.mtime_ns,
        "st_atime": attr.mtime_ns,
        "st_uid": uid,
        "st_gid": gid,
    }


class _Timers(dict[str, Callable[[float], None]]):
    """Each operation's timer, made by ``make`` on its first use."""

    def __init__(self, make: Callable[[str], Callable[[float], None]]) -> None:
        super().__init__()
        self.make = make

    def __missing__(self, op: str) -> Callable[[float], None]:
        timer = self[op] = self.make(op)
        return timer


class Operations(mfusepy.Operations):
    """mfusepy operations over a ``Filesystem``. Uses ``raw_fi`` to set ``keep_cache``."""

    use_ns = True

    def __init__(
        self,
        fs: Filesystem,
        *,
        ref_ttl: float,
        on_ready: Callable[[], None] | None = None,
        timer: Callable[[str], Callable[[float], None]] | None = None,
    ) -> None:
        """``timer(op)``: the function told each duration (seconds) of operation ``op``, for
        metrics; asked once per operation name."""
        self.fs = fs
        self.on_ready = on_ready
        self.timers = _Timers(timer) if timer is not None else None
        self.initialised = False  # the kernel accepted the session (FUSE INIT ran)
        fs.caller_pid = lambda: int(mfusepy.fuse_get_context()[2])
        self.ref_ttl = ref_ttl
        # A pinned snapshot never changes: skipping OPEN/RELEASE keeps the page cache and
        # halves the requests per small file. Mounts with branches need handles instead.
        # With passthrough, OPEN stays (it hands the kernel the backing file) but has no
        # handle and no RELEASE; without the kernel's support it declines like _no_open.
        self.backing: passthrough.Backing | None = None
        self.passthrough_possible = fs.immutable and passthrough.possible()
        # Per path, whether it was opened with a backing file: the kernel refuses (EIO) to
        # mix passthrough and cached opens of one inode, so a mount sticks to its first.
        self._backed: LRUCache[str, bool] = LRUCache(maxsize=65536)
        if fs.immutable:
            self.open = self._open_pinned if self.passthrough_possible else self._no_open  # type: ignore[method-assign]
            self.release = None  # type: ignore[assignment]
        else:
            self.open = self._open  # type: ignore[method-assign]
            self.release = self._release  # type: ignore[method-assign]

    flush = None  # nothing is buffered per handle; a flush handler only adds a round trip

    def _no_open(self, path: str, fi: Any) -> int:
        raise mfusepy.FuseOSError(errno.ENOSYS)

    @translated
    def _open_pinned(self, path: str, fi: Any) -> int:
        """A pinned file: a backing file when its content is whole in the cache, else reads
        by path through the daemon (no handle) with the page cache kept."""
        if self.backing is None:  # the kernel cannot pass through: stop asking
            raise mfusepy.FuseOSError(errno.ENOSYS)
        backed = self._backed.get(path)
        found = self.fs.backing_file(path) if backed is not False else None
        if found is not None:
            key, backing = found
            bid = self.backing.id_for(key, backing)
            if bid:
                passthrough.set_backing_id(fi, bid)
                self._backed[path] = True
                if self.fs.metrics is not None:
                    self.fs.metrics.passthrough_open()
                return 0
        if backed is None:
            self._backed[path] = False
        fi.keep_cache = 1
        return 0

    # -- writes: every one goes to the filesystem, which refuses them on read-only paths ------
    @translated
    def create(self, path: str, mode: int, fi: Any = None) -> int:
        fi.fh = self.fs.create(path, mode, fi.flags)
        self._set_caching(fi)
        return 0

    @translated
    def write(self, path: str, data: bytes, offset: int, fi: Any) -> int:
        return self.fs.write(fi.fh, data, offset)

    @translated
    def truncate(self, path: str | None, length: int, fi: Any = None) -> int:
        """``fi`` is set for ``ftruncate`` (see ``_FUSE.truncate_fuse_3``): the open file is
        truncated, whatever its path; ``path`` is None once its directory was removed."""
        self.fs.truncate(path, length, fi.fh if fi is not None else None)
        return 0

    @translated
    def fsync(self, path: str, datasync: int, fi: Any) -> int:
        # Handle 0: an immutable mount declines OPEN, so its files have no handle and
        # nothing to sync.
        self.fs.fsync(fi.fh if fi is not None and fi.fh else None)
        return 0

    @translated
    def mkdir(self, path: str, mode: int) -> int:
        self.fs.mkdir(path, mode)
        return 0

    @translated
    def unlink(self, path: str) -> int:
        self.fs.unlink(path)
        return 0

    @translated
    def rmdir(self, path: str) -> int:
        self.fs.rmdir(path)
        return 0

    @translated
    def rename(self, old: str, new: str) -> int:
        self.fs.rename(old, new)
        return 0

    @translated
    def symlink(self, path: str, target: str) -> int:  # mfusepy passes (link path, content)
        self.fs.symlink(path, target)
        return 0

    @translated
    def link(self, path: str, existing: str) -> int:  # mfusepy passes (new path, existing)
        self.fs.link(path, existing)
        return 0

    @translated
    def mknod(self, path: str, mode: int, dev: int) -> int:
        self.fs.mknod(path, mode)
        return 0

    @translated
    def chmod(self, path: str, mode: int) -> int:
        self.fs.chmod(path, mode)
        return 0

    @translated
    def chown(self, path: str, uid: int, gid: int) -> int:
        self.fs.chown(path, uid, gid)
        return 0

    @translated
    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        self.fs.utimens(path, times)
        return 0

    @translated
    def setxattr(self, path: str, name: str, value: bytes, options: int, position: int = 0) -> int:
        self.fs.setxattr(path, name, value)
        return 0

    @translated
    def removexattr(self, path: str, name: str) -> int:
        self.fs.setxattr(path, name, None)
        return 0

    def init_with_config(self, conn: Any, config: Any) -> None:
        if self.passthrough_possible and passthrough.negotiate(conn):
            self.backing = passthrough.Backing()
            self.fs.read_path_mode = "passthrough"
        self.initialised = True
        self.fs.invalidate = kernel_invalidator()
        if self.on_ready is not None:
            self.on_ready()
        if config is None:
            return
        timeout = IMMUTABLE_TIMEOUT if self.fs.immutable else self.ref_ttl
        config.entry_timeout = timeout
        config.attr_timeout = timeout
        config.negative_timeout = min(timeout, 1.0)
        config.use_ino = 1
        config.readdir_ino = 1

    @translated
    def getattr(self, path: str | None, fh: Any = None) -> dict[str, int]:
        """``fh`` is the ``fuse_file_info`` (``raw_fi``) when the kernel asks about an open
        file; ``path`` is None when libfuse has no path for it any more."""
        handle = fh.fh if fh is not None else None
        return stat_dict(self.fs.getattr(path, handle), self.fs.uid, self.fs.gid)

    @translated
    def readdir_with_offset(self, path: str, offset: int, fh: int) -> list[tuple[str, Attr]]:
        """The listing with every entry's attributes (``.`` and ``..`` first), for
        ``_FUSE._readdir`` (mfusepy registers a readdir handler only under this name)."""
        here = self.fs.getattr(path)
        parent = self.fs.getattr(os.path.dirname(path)) if path != "/" else here
        return [(".", here), ("..", parent), *self.fs.readdir(path)]

    @translated
    def readlink(self, path: str) -> str:
        return self.fs.readlink(path)

    @translated
    def _open(self, path: str, fi: Any) -> int:
        fi.fh = self.fs.open(path, fi.flags)
        self._set_caching(fi)
        return 0

    def _set_caching(self, fi: Any) -> None:
        # The page cache is per path, shared by every open of it: after a branch moves, a
        # committed file opened earlier would see the new bytes. Direct I/O keeps each open
        # file on the content it was opened with; immutable files keep the page cache.
        mode = self.fs.caching(fi.fh)
        fi.keep_cache = 1 if mode == "keep" else 0
        fi.direct_io = 1 if mode == "direct" else 0

    @translated
    def read(self, path: str, size: int, offset: int, fi: Any) -> Bytes:
        # mfusepy copies the result into libfuse's buffer with ctypes.memmove at once, so a
        # chunk held in memory can be lent rather than sliced into a new bytes object.
        if self.fs.immutable:
            return self.fs.read_path(path, size, offset, borrow=True)
        return self.fs.read(fi.fh, size, offset, borrow=True)

    @translated
    def _release(self, path: str, fi: Any) -> int:
        self.fs.release(fi.fh)
        return 0

    @translated
    def getxattr(self, path: str, name: str, position: int = 0) -> bytes:
        # ls -l asks every file for its ACL and security label: only our own names can exist.
        if not name.startswith(XATTR_PREFIX):
            raise mfusepy.FuseOSError(errno.ENODATA)
        value = self.fs.xattrs(path).get(name)
        if value is None:
            raise mfusepy.FuseOSError(errno.ENODATA)
        return value

    @translated
    def listxattr(self, path: str) -> list[str]:
        return sorted(self.fs.xattrs(path))

    @translated
    def statfs(self, path: str) -> dict[str, int]:
        return self.fs.statfs()

    def destroy(self, path: str) -> None:
        pass  # the caller of mount() closes the filesystem, after any commit on unmount


class _FUSE(mfusepy.FUSE):
    """mfusepy's FUSE with readdirplus: every entry carries its full stat, so ``ls -l`` and
    ``find`` need no per-entry LOOKUP round trip; and with ``ftruncate`` through the handle."""

    def truncate_fuse_3(self, path: bytes | None, length: int, fip: Any) -> int:
        # mfusepy drops libfuse's file info here, so ftruncate would go by path, and fail once
        # an unlinked file's directory is gone (libfuse then passes a null path).
        decoded = None if path is None else path.decode(self.encoding, self.errors)
        return self.operations.truncate(decoded, length, fip.contents if fip else None)

    def getxattr(self, path: bytes, name: bytes, value: Any, size: int, *args: Any) -> int:
        # ls -l asks every file for its security label and ACLs: answered here, in the
        # callback, without an exception travelling through mfusepy's error handling.
        if not name.startswith(_OUR_XATTRS):
            return -errno.ENODATA
        return int(super().getxattr(path, name, value, size, *args))

    def _readdir(self, path: bytes | None, buf: Any, filler: Any, offset: int, fip: Any) -> int:
        # The stat structure is written with one struct.pack_into, not through mfusepy's
        # dictionaries: a walk of a million files spends most of its daemon time here.
        st = mfusepy.c_stat()
        view = memoryview(st).cast("B")  # type: ignore[arg-type]
        pack = _STAT.pack_into
        decoded = None if path is None else path.decode(self.encoding, self.errors)
        uid, gid = self.operations.fs.uid, self.operations.fs.gid
        encoding, errors = self.encoding, self.errors
        # libfuse's filler only copies the entry: called without releasing the interpreter lock
        # (ctypes releases it around every foreign call), a walk's million calls do not each
        # hand the lock to a look-ahead thread and wait to get it back.
        filler = _FILLER_HOLDING_GIL(ctypes.cast(filler, ctypes.c_void_p).value)
        for name, (mode, size, mtime_ns, ino, nlink) in self.operations.readdir_with_offset(
            decoded, offset, 0
        ):
            sec, ns = divmod(mtime_ns, 10**9)
            pack(view, 0, ino, nlink, mode, uid, gid, size, BLOCK_SIZE, (size + 511) // 512,
                 sec, ns, sec, ns, sec, ns)  # fmt: skip
            if filler(buf, name.encode(encoding, errors), st, 0, FUSE_FILL_DIR_PLUS):
                break
        return 0


def _stat_struct() -> struct.Struct:
    """A ``struct`` that writes a whole ``c_stat`` (zeros elsewhere) from: ino, nlink, mode,
    uid, gid, size, blksize, blocks, then seconds and nanoseconds of atime, mtime, ctime.
    Built from mfusepy's own field offsets; they must come in that order (Linux)."""
    c, ts = mfusepy.c_stat, mfusepy.c_timespec
    names = ["st_ino", "st_nlink", "st_mode", "st_uid", "st_gid", "st_size", "st_blksize",
             "st_blocks"]  # fmt: skip
    fields = [(getattr(c, n).offset, getattr(c, n).size) for n in names]
    for t in ("st_atimespec", "st_mtimespec", "st_ctimespec"):
        base = getattr(c, t).offset
        fields += [(base + ts.tv_sec.offset, ts.tv_sec.size)]
        fields += [(base + ts.tv_nsec.offset, ts.tv_nsec.size)]
    if fields != sorted(fields):
        raise RuntimeError("unexpected struct stat layout")
    fmt, pos = "=", 0
    for off, size in fields:
        fmt += "x" * (off - pos) + {8: "q", 4: "I", 2: "H"}[size]
        pos = off + size
    return struct.Struct(fmt + "x" * (ctypes.sizeof(c) - pos))


_STAT = _stat_struct()
_FILLER_HOLDING_GIL = ctypes.PYFUNCTYPE(
    ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, mfusepy.c_stat_p, mfusepy.c_off_t, ctypes.c_int
)
_OUR_XATTRS = XATTR_PREFIX.encode()


READ_AHEAD_KB = 1024
LIBFUSE_MAX_THREADS = 10  # libfuse's default cap on worker threads


def tune_kernel_readahead(mountpoint: str, timeout: float = 30.0) -> None:
    """Raise the mount's read-ahead from the kernel's 128 KiB so sequential reads arrive in
    1 MiB requests (an eighth of the round trips), once it is mounted. Needs root; otherwise
    the default stays."""
    deadline = time.monotonic() + timeout
    while not os.path.ismount(mountpoint):
        if time.monotonic() > deadline:
            return
        time.sleep(0.05)
    dev = os.stat(mountpoint).st_dev
    knob = f"/sys/class/bdi/{os.major(dev)}:{os.minor(dev)}/read_ahead_kb"
    try:
        with open(knob, "w") as fh:
            fh.write(str(READ_AHEAD_KB))
    except OSError as err:
        log.debug("cannot set %s: %s", knob, err)


def collect_less_often() -> None:
    """Run the cyclic garbage collector after 50,000 new container objects, not Python's
    700: a walk decodes millions of tree entries (and dictionaries and tuples with them), and
    with the default a fifth of the daemon's CPU went to collections that found nothing
    (perf, a find over 100,000 files). Nothing the daemon keeps forms cycles on purpose."""
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(50_000, gen1, gen2)


def keep_freed_memory() -> None:
    """Stop glibc from returning freed chunk buffers to the kernel at once: re-faulting fresh
    pages for every 8 MiB chunk cost more CPU than the reads themselves (measured)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_top_pad, m_mmap_threshold, m_arena_max = -1, -2, -3, -8
    libc.mallopt(m_mmap_threshold, 32 * 1024 * 1024)
    libc.mallopt(m_trim_threshold, 1024 * 1024 * 1024)
    libc.mallopt(m_top_pad, 64 * 1024 * 1024)
    libc.mallopt(m_arena_max, 2)


def _auto_unmount_works() -> bool:
    """Whether ``auto_unmount`` can be asked for with the libfuse loaded here (see
    ``passthrough.fusermount_understands``); without it, the caller unmounts as usual."""
    ok = passthrough.fusermount_understands(mfusepy.fuse_version_major, mfusepy.fuse_version_minor)
    if not ok:
        log.info("mounting without auto_unmount: fusermount3 is older than the loaded libfuse")
    return ok


def mount(
    fs: Filesystem,
    mountpoint: str,
    *,
    ref_ttl: float,
    allow_other: bool = False,
    debug: bool = False,
    fsname: str = "s3fsv",
    on_ready: Callable[[], None] | None = None,
    timer: Callable[[str], Callable[[float], None]] | None = None,
    auto_unmount: bool = False,
) -> None:
    """Serve ``fs`` at ``mountpoint`` in the foreground until unmounted; ``on_ready`` is
    called once the kernel has accepted the session (the mount is usable); ``timer(op)``
    gives the function told each duration of operation ``op``. ``auto_unmount``: should this
    process die without unmounting, the mount is taken away (by fusermount3, or where the
    installed one refuses the option, by an :class:`UnmountGuard`)."""
    options: dict[str, Any] = {
        "fsname": fsname,
        "subtype": "s3fsv",
        "default_permissions": True,
        # libfuse's own default (unset, read as 2**32 - 1) makes it log a bogus warning.
        "max_idle_threads": LIBFUSE_MAX_THREADS,
    }
    if fs.immutable or fs.spec.read_only or (fs.fixed is not None and not fs.spec.rw):
        options["ro"] = True  # shown in /proc/mounts; the kernel refuses writes before asking
    guard = None
    if auto_unmount and _auto_unmount_works():
        options["auto_unmount"] = True
    elif auto_unmount:  # the same, by a watcher of our own
        guard = UnmountGuard(os.path.abspath(mountpoint))
        on_ready = _then(guard.start, on_ready)  # (before anything may use the mount)
    ops = Operations(fs, ref_ttl=ref_ttl, on_ready=on_ready, timer=timer)
    if fs.immutable and not ops.passthrough_possible:
        # (With passthrough, _open_pinned keeps the cache per open: the kernel refuses
        # FOPEN_KEEP_CACHE together with a backing file.)
        options["kernel_cache"] = True
    if allow_other:
        options["allow_other"] = True
    keep_freed_memory()
    collect_less_often()
    threading.Thread(
        target=tune_kernel_readahead, args=(mountpoint,), name="s3fsv-readahead", daemon=True
    ).start()
    try:
        _FUSE(ops, mountpoint, raw_fi=True, foreground=True, debug=debug, **options)
    except RuntimeError as err:  # libfuse's own message is already on stderr
        if ops.initialised and not os.path.ismount(mountpoint):
            # libfuse reports a session ended by SIGTERM or SIGINT as a failure; it unmounted.
            log.info("FUSE session of %s stopped by a signal (libfuse status %s)", mountpoint, err)
            return
        raise S3fsvError(f"FUSE mount of {mountpoint} failed (libfuse status {err})") from None
    finally:
        if guard is not None:
            guard.release()


def _then(first: Callable[[], object], then: Callable[[], None] | None) -> Callable[[], None]:
    def both() -> None:
        first()
        if then is not None:
            then()

    return both
