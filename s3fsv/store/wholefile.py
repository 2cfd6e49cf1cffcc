"""Whole-file cache entries: a file's verified content as one plain file, for FUSE passthrough.

The chunk cache (``cache``) keeps objects with a trailer and splits large files into chunks;
the kernel can only serve a file straight from one backing file whose bytes are exactly the
file's, from offset 0. So a file read whole is also *materialised*, in the background::

    ROOT/files/<sha256[:2]>/<sha256[2:]>    the content alone, mode 0400, named by its SHA-256

Materialising copies the file's chunks from the verified chunk cache (never from the store)
into a private temporary file, hashing them on the way; only when the SHA-256 of the whole
equals the file's (as its tree entry records it) is the copy made read-only and renamed into
place. An entry is never written again. ``find`` accepts an entry only when it is a regular
file of the right size with no write permission. Eviction (``DiskCache.evict_now``) treats
these files like chunk entries: least recently used first.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from s3fsv.config import private_dir
from s3fsv.store.cache import TOUCH_EVERY_NS, DiskCache, remove
from s3fsv.store.objects import TreeEntry, is_object_id

log = logging.getLogger(__name__)

FILES_DIR = "files"
WHOLE_MIN = 1024 * 1024  # smaller files are served through the daemon (and the page cache)
_QUEUE_MAX = 64
_CHUNK_WAITS = 20  # tenths of a second a chunk not (yet) in the cache is waited for


def entry_path(cache: DiskCache, sha256: str) -> Path:
    """Where the whole-file entry of content ``sha256`` lives in ``cache``."""
    return cache.root / FILES_DIR / sha256[:2] / sha256[2:]


def discard(cache: DiskCache, sha256: str) -> bool:
    """Delete the whole-file entry of content ``sha256`` from ``cache`` (a purge erases content
    from every cache that saw it); True when there was one."""
    if not is_object_id(sha256):
        raise ValueError(f"not a content id: {sha256!r}")
    return remove(entry_path(cache, sha256))


class WholeFiles:
    """Whole-file entries below ``cache``'s directory; materialises in one background thread,
    from chunks the cache holds (a chunk still being written there is waited for a little)."""

    def __init__(self, cache: DiskCache) -> None:
        self.cache = cache
        self.root = cache.root / FILES_DIR
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="s3fsv-whole")
        self._queued: set[str] = set()
        self._lock = threading.Lock()
        self._closed = False

    def path(self, sha256: str) -> Path:
        return entry_path(self.cache, sha256)

    def find(self, entry: TreeEntry) -> Path | None:
        """The whole-file entry of ``entry``'s content, if there is a good one."""
        if entry.size < WHOLE_MIN or not entry.sha256:
            return None
        path = self.path(entry.sha256)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        if st.st_size != entry.size or st.st_mode & 0o7777 != 0o400:
            log.warning("whole-file cache entry %s is not as written: removing it", path)
            remove(path)
            return None
        if time.time_ns() - st.st_mtime_ns > TOUCH_EVERY_NS:  # eviction is by mtime
            with contextlib.suppress(OSError):
                os.utime(path)
        return path

    def schedule(self, entry: TreeEntry) -> None:
        """Materialise ``entry`` in the background, unless it is small, present or queued."""
        if entry.size < WHOLE_MIN or not entry.sha256 or self._closed:
            return
        with self._lock:
            if entry.sha256 in self._queued or len(self._queued) >= _QUEUE_MAX:
                return
            self._queued.add(entry.sha256)
        try:
            self._pool.submit(self._materialise, entry)
        except RuntimeError:  # closed meanwhile
            with self._lock:
                self._queued.discard(entry.sha256)

    def _materialise(self, entry: TreeEntry) -> None:
        # A copy runs while the reader that triggered it goes on (re-reading the file, say):
        # on a small machine it must not take a core away from that reader.
        with contextlib.suppress(OSError, AttributeError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        try:
            if self.find(entry) is None and not self._closed:
                self.materialise(entry)
        except Exception as err:  # the daemon reads as before
            log.warning("cannot materialise %s: %s", entry.sha256[:12], err)
        finally:
            with self._lock:
                self._queued.discard(entry.sha256)

    def materialise(self, entry: TreeEntry) -> Path | None:
        """Copy ``entry``'s cached chunks into its whole-file entry, verified; None when a
        chunk is not cached, the copy is stopped by ``close`` or its hash is wrong."""
        final = self.path(entry.sha256)
        tmp = self.cache.tmp / f"whole-{entry.sha256}.{os.getpid()}.{threading.get_ident()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        done = False
        try:
            digest = hashlib.sha256()
            for oid in entry.chunks:
                data = self._cached(oid)
                if data is None or self._closed:
                    return None
                digest.update(data)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            if digest.hexdigest() != entry.sha256:
                log.warning("cached chunks of %s do not make up its content", entry.sha256[:12])
                return None
            os.fchmod(fd, 0o400)
            private_dir(final.parent)
            os.replace(tmp, final)
            done = True
        finally:
            os.close(fd)
            if not done:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
        self.cache.account(entry.size, entry.size)
        log.info("materialised %s (%d bytes) for passthrough", entry.sha256[:12], entry.size)
        return final

    def _cached(self, oid: str) -> bytes | None:
        # Right after a read to the end, its last chunks may still be on their way to disk.
        for _ in range(_CHUNK_WAITS):
            data = self.cache.get(oid)
            if data is not None or self._closed:
                return data
            time.sleep(0.1)
        return None

    def discard(self, sha256: str) -> bool:
        """Delete the whole-file entry of content ``sha256``; True when there was one."""
        return discard(self.cache, sha256)

    def discard_all(self) -> int:
        """Delete every whole-file entry (after a purge: they are made again from chunks
        that are still there); return how many were deleted."""
        gone = 0
        for sub in self.root.glob("??"):
            for path in sub.iterdir():
                gone += remove(path)
        return gone

    def close(self, wait: float = 30.0) -> None:
        """Drop queued work; let a copy in progress finish within ``wait`` seconds (a fresh
        mount then finds it), else stop it."""
        timer = threading.Timer(wait, self._stop)
        timer.daemon = True
        timer.start()
        try:
            self._pool.shutdown(wait=True, cancel_futures=True)
        finally:
            timer.cancel()
            self._closed = True

    def _stop(self) -> None:
        self._closed = True
