"""The shared on-disk object cache.

One cache directory serves every mount and process on the machine. Entries are keyed by object
id (the SHA-256 of the content), so they never need invalidation. Layout::

    ROOT/objects/<id[:2]>/<id[2:]>     content + 24-byte trailer, mode 0600
    ROOT/tmp/                          files being filled, renamed into place when complete
    ROOT/evict.lock                    serialises eviction scans between processes

The trailer is ``MAGIC (8 bytes) + XXH3-128 of the content (16 bytes)``. Content is verified
against its SHA-256 before it is cached (by the caller, see ``ObjectStore``) and against the
trailer's XXH3 whenever a process first uses an entry, or when the file's size or mtime changed
since: a truncated, foreign or corrupted file is deleted and reported as a miss, never returned.
XXH3 runs at tens of GB/s here where SHA-256 runs at ~1.6 GB/s, which is what keeps warm reads at
page-cache speed. Entries of at least ``DIRECT_MIN`` bytes are written with ``O_DIRECT`` where the
filesystem allows it (straight from a page-aligned pooled chunk, see ``s3fsv.store.buffers``, or
through a staging buffer), so they do not also occupy the page cache: whoever just fetched such an
object holds its bytes already (see ``s3fsv.store.reader``), and the kernel caches what the mount
serves. Filling the page cache cost more CPU than anything else in a cold 1 GiB read (measured:
about 1.3 s of kernel copy into new pages, against 0.1 s for direct writes).

Eviction is LRU by file mtime (touched at most once a minute per entry), bounded by
``max_bytes``, and runs in whichever process notices the cache has grown past its budget. It
covers the whole-file entries of ``s3fsv.store.wholefile`` (``ROOT/files/``) too.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import io
import logging
import mmap
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import xxhash
from cachetools import LRUCache

from s3fsv.config import private_dir
from s3fsv.store.buffers import ChunkData, aligned_address
from s3fsv.store.objects import is_object_id

log = logging.getLogger(__name__)

MAGIC = b"s3fsvC1\n"
TRAILER = len(MAGIC) + 16
TOUCH_EVERY_NS = 60 * 10**9  # how often an entry in use has its mtime (eviction age) renewed
DIRECT_MIN = 1024 * 1024  # entries at least this large bypass the page cache when written
_DIRECT_ALIGN = 4096  # offset, length and buffer alignment that O_DIRECT needs
_DIRECT_BUFFER = 1024 * 1024  # per-thread aligned staging buffer, reused for every entry


@dataclass
class _Open:
    """A verified entry. ``file`` is never closed explicitly: a reader holding this object keeps
    the descriptor valid, and it closes when the last reference goes (no reuse races)."""

    file: io.FileIO
    size: int
    signature: tuple[int, int, int]
    touched_ns: int

    @property
    def fd(self) -> int:
        return self.file.fileno()


class DiskCache:
    """Content-addressed byte cache on local disk, safe for concurrent use by many processes.

    ``get`` returns the whole content or None; ``pread`` reads part of it without loading the
    rest. Both only ever return bytes that passed verification.
    """

    def __init__(self, root: str | os.PathLike[str], max_bytes: int = 10 * 1024**3) -> None:
        self.root = private_dir(Path(root))
        self.objects = private_dir(self.root / "objects")
        self.tmp = private_dir(self.root / "tmp")
        self.max_bytes = max_bytes
        self._open: LRUCache[str, _Open] = LRUCache(maxsize=256)
        self._lock = threading.RLock()
        self._added = 0  # bytes added since the last eviction pass started
        self._scanned = False  # a first pass (at the first addition) has started
        self._evicting = False
        self.hits = 0
        self.misses = 0
        # For metrics and status (read, never reset): bytes put into the cache, and entries
        # and bytes this process's eviction passes removed.
        self.filled_bytes = 0
        self.evicted_entries = 0
        self.evicted_bytes = 0
        self._usage: tuple[float, int] | None = None  # (when, bytes) of the last usage scan
        self._local = threading.local()  # per-thread aligned buffer for direct writes

    def path(self, oid: str) -> Path:
        if not is_object_id(oid):
            raise ValueError(f"not an object id: {oid!r}")
        return self.objects / oid[:2] / oid[2:]

    # -- reading --------------------------------------------------------------------------------
    def size(self, oid: str) -> int | None:
        """Content size of a verified entry, or None when it is absent or bad."""
        handle = self._handle(oid)
        return None if handle is None else handle.size

    def pread(self, oid: str, size: int, offset: int) -> bytes | None:
        """Up to ``size`` bytes at ``offset`` of a verified entry, or None on a miss."""
        handle = self._handle(oid)
        if handle is None:
            return None
        size = max(0, min(size, handle.size - offset))
        data = os.pread(handle.fd, size, offset) if size else b""
        if len(data) != size:  # shrunk underneath us: treat as corrupt
            self.discard(oid)
            return None
        return data

    def get(self, oid: str) -> bytes | None:
        """The whole verified entry, or None on a miss. An entry not open yet is read once:
        the bytes verified are the bytes returned."""
        with self._lock:
            handle = self._open.get(oid)
        if handle is not None:
            return self.pread(oid, handle.size, 0)
        found = self._open_kept(oid)
        return None if found is None else found[1]

    def holds(self, oid: str) -> bool:
        """Whether this process has the entry open and verified (no I/O)."""
        with self._lock:
            return oid in self._open

    def stored(self, oid: str) -> bool:
        """Whether an entry is open here or present on disk (at most a ``stat``; a present
        entry is verified when it is read, like any other)."""
        return self.holds(oid) or self.path(oid).exists()

    def will_need(self, oid: str) -> bool:
        """Whether an entry is open here or present on disk; a present one not open yet is
        read into the page cache by the kernel in the background (``POSIX_FADV_WILLNEED``),
        so that its later verified read does not wait for the disk. Nothing is verified here."""
        if self.holds(oid):
            return True
        try:
            fd = os.open(self.path(oid), os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
        except OSError:  # a filesystem without read-ahead: the read will just wait
            pass
        finally:
            os.close(fd)
        return True

    def __contains__(self, oid: str) -> bool:
        return self._handle(oid) is not None

    def _handle(self, oid: str) -> _Open | None:
        with self._lock:
            handle = self._open.get(oid)
            if handle is not None:
                st = os.fstat(handle.fd)
                if (st.st_size, st.st_mtime_ns, st.st_ino) == handle.signature:
                    self.hits += 1
                    self._maybe_touch(oid, handle)
                    return handle
                self._open.pop(oid, None)
        found = self._open_kept(oid)
        return None if found is None else found[0]

    def _open_kept(self, oid: str) -> tuple[_Open, bytes] | None:
        """``_open_and_verify``, counted, and kept open when good."""
        found = self._open_and_verify(oid)
        with self._lock:
            if found is None:
                self.misses += 1
                return None
            self.hits += 1
            self._open[oid] = found[0]  # LRUCache drops the least recently used reference
        return found

    def _open_and_verify(self, oid: str) -> tuple[_Open, bytes] | None:
        """The entry opened, with its content as read and verified."""
        path = self.path(oid)
        try:
            file = io.FileIO(path, "r")
        except FileNotFoundError:
            return None
        st = os.fstat(file.fileno())
        size = st.st_size - TRAILER
        # Two reads rather than one and a copy of the content out of it.
        content = os.pread(file.fileno(), size, 0) if size >= 0 else b""
        trailer = os.pread(file.fileno(), TRAILER, size) if size >= 0 else b""
        if (
            len(content) != size
            or trailer[: len(MAGIC)] != MAGIC
            or xxhash.xxh3_128_digest(content) != trailer[len(MAGIC) :]
        ):
            log.warning("cache entry %s is corrupt or truncated; refetching", path)
            file.close()
            _unlink_if_same(path, st)
            return None
        return _Open(file, len(content), _signature(st), st.st_mtime_ns), content

    def _maybe_touch(self, oid: str, handle: _Open) -> None:
        now = time.time_ns()
        if now - handle.touched_ns < TOUCH_EVERY_NS:
            return
        handle.touched_ns = now
        with contextlib.suppress(OSError):
            os.utime(self.path(oid))
            handle.signature = _signature(os.fstat(handle.fd))

    def discard(self, oid: str) -> bool:
        """Delete the entry of ``oid`` (a purge erases content from every cache that saw it, a
        reader an entry that proved bad); True when there was one."""
        with self._lock:
            self._open.pop(oid, None)
        return remove(self.path(oid))

    # -- filling --------------------------------------------------------------------------------
    def put(self, oid: str, data: ChunkData) -> None:
        """Store verified content. Atomic: readers see the whole entry or none. Never raises for
        a full or unwritable disk: the cache is an optimisation, so the error is only logged."""
        final = self.path(oid)
        if final.exists():
            return
        try:
            tmp = self.tmp / f"{oid}.{os.getpid()}.{threading.get_ident()}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                view = memoryview(data)
                if len(data) >= DIRECT_MIN:
                    view = view[self._write_direct(fd, data) :]
                while view:
                    view = view[os.write(fd, view) :]
                os.write(fd, MAGIC + xxhash.xxh3_128_digest(data))
            finally:
                os.close(fd)
            try:
                os.replace(tmp, final)
            except FileNotFoundError:  # its fan-out directory is new (or was removed)
                private_dir(final.parent)
                os.replace(tmp, final)
            # The content was just verified against its SHA-256: register it without re-reading.
            file = io.FileIO(final, "r")
            st = os.fstat(file.fileno())
            with self._lock:
                self._open[oid] = _Open(file, len(data), _signature(st), st.st_mtime_ns)
        except OSError as err:
            log.warning("cannot write cache entry %s: %s", final, err)
            return
        self.account(len(data) + TRAILER, len(data))

    def account(self, added: int, content: int) -> None:
        """Count ``added`` bytes (``content`` of them file content) just written below the
        cache directory (by ``put``, or a whole-file entry) and start an eviction pass in the
        background when one is due."""
        with self._lock:
            self._added += added
            self.filled_bytes += content
            # Another process may have filled the cache: this one looks at its first addition.
            due = not self._evicting and (self._added > self.max_bytes // 10 or not self._scanned)
            if due:
                self._evicting = self._scanned = True
                self._added = 0
        if due:
            try:
                threading.Thread(target=self._evict, name="s3fsv-evict", daemon=True).start()
            except RuntimeError:  # no thread to spare: the next addition tries again
                with self._lock:
                    self._evicting = False

    def _write_direct(self, fd: int, data: ChunkData) -> int:
        """Write a block-aligned prefix of ``data`` at the start of ``fd`` with ``O_DIRECT``:
        straight from a page-aligned ``Chunk``, else through this thread's aligned buffer.
        Return how many bytes were written (0 when the filesystem refuses direct I/O). ``fd``
        is left without ``O_DIRECT``, positioned after the written prefix, for the caller to
        write the rest. Other write errors propagate."""
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        try:
            fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_DIRECT)
        except OSError:
            return 0  # tmpfs and some network filesystems: buffered writes only
        aligned = len(data) - len(data) % _DIRECT_ALIGN
        try:
            if aligned_address(data) is not None:
                return _write_all(fd, memoryview(data)[:aligned])  # type: ignore[arg-type]
            return self._write_staged(fd, data, aligned)  # type: ignore[arg-type]
        except OSError as err:
            if err.errno != errno.EINVAL:
                raise
            # The filesystem accepted the flag but not these writes: the caller writes it all.
            os.lseek(fd, 0, os.SEEK_SET)
            os.ftruncate(fd, 0)
            return 0
        finally:
            fcntl.fcntl(fd, fcntl.F_SETFL, flags)

    def _write_staged(self, fd: int, data: bytes, aligned: int) -> int:
        """``_write_direct`` for unaligned ``data``: copy it through a page-aligned buffer."""
        buf: mmap.mmap | None = getattr(self._local, "buf", None)
        if buf is None:
            buf = self._local.buf = mmap.mmap(-1, _DIRECT_BUFFER)  # page-aligned
        staging = memoryview(buf)
        target = ctypes.addressof(ctypes.c_char.from_buffer(buf))
        held = bytes(data)  # the same object for bytes; keeps the source alive while copied
        source = ctypes.cast(ctypes.c_char_p(held), ctypes.c_void_p).value or 0
        done = 0
        try:
            while done < aligned:
                n = min(_DIRECT_BUFFER, aligned - done)
                ctypes.memmove(target, source + done, n)  # unlike a slice copy, frees the GIL
                written = os.write(fd, staging[:n])
                done += written
                if written != n:  # short write: the caller finishes with buffered writes
                    break
        finally:
            staging.release()
        return done

    # -- eviction -------------------------------------------------------------------------------
    def _evict(self) -> None:
        """Eviction passes, in the background, until less than a tenth of the budget was
        added since the last one started: entries added during a pass count for the next,
        so the cache comes back under its budget after the last addition, not only after
        the next tenth."""
        try:
            while True:
                self._evict_once()
                with self._lock:
                    if self._added <= self.max_bytes // 10:
                        return
                    self._added = 0
        finally:
            with self._lock:
                self._evicting = False

    def _evict_once(self, *, wait: bool = True) -> None:
        """One pass, under the lock all processes take for it; without ``wait``, none when
        another pass holds that lock."""
        try:
            with open(self.root / "evict.lock", "a+b") as lock:
                os.fchmod(lock.fileno(), 0o600)
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
                except BlockingIOError:
                    return
                self.evict_now()
        except Exception as err:  # best effort: never fails a read, a write or an unmount
            log.warning("cache eviction failed: %s", err)

    def _entries(self) -> tuple[list[tuple[int, int, str]], int]:
        """Every entry as (mtime_ns, size, path), and their total size."""
        entries: list[tuple[int, int, str]] = []
        total = 0
        # Whole-file entries (``wholefile``) live beside the chunks and count the same way.
        files = self.root / "files"
        fan_out = [*os.scandir(self.objects), *(os.scandir(files) if files.is_dir() else ())]
        for sub in fan_out:
            if not sub.is_dir(follow_symlinks=False):
                continue
            for ent in os.scandir(sub.path):
                with contextlib.suppress(FileNotFoundError):
                    st = ent.stat(follow_symlinks=False)
                    entries.append((st.st_mtime_ns, st.st_size, ent.path))
                    total += st.st_size
        return entries, total

    def usage(self, max_age: float = 10.0) -> int:
        """Bytes the cache directory holds (every process's entries), from a scan at most
        ``max_age`` seconds old: for status and metrics, never for reads."""
        now = time.monotonic()
        last = self._usage
        if last is None or now - last[0] > max_age:
            last = self._usage = (now, self._entries()[1])
        return last[1]

    def evict_now(self) -> int:
        """Delete least recently used entries until the cache is under 90% of its budget;
        return the number of bytes freed."""
        entries, total = self._entries()
        freed = 0
        if total <= self.max_bytes:
            return 0
        target = self.max_bytes * 9 // 10
        entries.sort()
        for _, size, path in entries:
            if total - freed <= target:
                break
            if remove(path):
                freed += size
                self.evicted_entries += 1
        self.evicted_bytes += freed
        self._usage = None
        log.info("cache eviction freed %d bytes", freed)
        return freed

    def close(self) -> None:
        """Forget open entries; if a pass was due, make one now, so that the cache is left
        within its budget. Never waits: when another pass holds the lock (this process's own,
        still running, or another process's), that pass does the work."""
        with self._lock:
            self._open.clear()
            due = self._added > self.max_bytes // 10
        if due:
            self._evict_once(wait=False)


def _write_all(fd: int, view: memoryview) -> int:
    """Write ``view`` (stopping early on a short write); return the bytes written."""
    done = 0
    while done < len(view):
        written = os.write(fd, view[done:])
        if not written:
            break
        done += written
    return done


def _signature(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_size, st.st_mtime_ns, st.st_ino)


def remove(path: Path | str) -> bool:
    """Delete the entry file ``path``; True when there was one (another process may have
    evicted or discarded it first)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def _unlink_if_same(path: Path, opened: os.stat_result) -> None:
    """Remove ``path`` only while it is still the file that was opened: another thread may
    have replaced a corrupt entry with a good one in the meantime, and that one must stay."""
    with contextlib.suppress(FileNotFoundError):
        now = os.stat(path)
        if (now.st_dev, now.st_ino) == (opened.st_dev, opened.st_ino):
            os.unlink(path)
