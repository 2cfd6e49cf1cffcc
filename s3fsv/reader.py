"""File content reads for mounts: cache-first chunk access, de-duplicated fetches, prefetch.

A read of file bytes goes: the chunks this reader fetched most recently (kept in memory, a
bounded number, because the disk cache writes large entries past the page cache) -> disk cache
(``pread`` of a verified entry) -> on a miss, one fetch of the whole chunk from the store,
verified against its SHA-256 and written to the cache. Concurrent readers of the same missing
chunk share one fetch. Prefetch requests (sequential read-ahead and sibling files) run on a
bounded pool and are dropped, not queued without limit, when it is busy.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor

from cachetools import LRUCache

from s3fsv.cache import DiskCache
from s3fsv.errors import CorruptObject
from s3fsv.objects import TreeEntry
from s3fsv.objectstore import ObjectStore

log = logging.getLogger(__name__)

MAX_WINDOW_CHUNKS = 8
MAX_PENDING_PREFETCH = 64
# Fetched chunks stay in memory until this many chunks' worth of newer ones arrived: room for a
# full read-ahead window ahead of the chunk being read, for two sequential readers.
RECENT_CHUNKS = 2 * (MAX_WINDOW_CHUNKS + 1)


class ChunkReader:
    """Reads file ranges of one repo through the shared disk cache. Thread-safe."""

    def __init__(
        self,
        objects: ObjectStore,
        cache: DiskCache,
        chunk_size: int,
        *,
        threads: int = 16,
    ) -> None:
        self.objects = objects
        self.cache = cache
        self.chunk_size = chunk_size
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="s3fsv-fetch")
        self._inflight: dict[str, Future[bytes | None]] = {}
        self._lock = threading.Lock()
        # Verified chunks as fetched, served from memory while sequential reads consume them
        # (and whatever the disk cache could not store).
        self._recent: LRUCache[str, bytes] = LRUCache(
            maxsize=RECENT_CHUNKS * chunk_size, getsizeof=len
        )
        self._recent_prefetch: LRUCache[str, bool] = LRUCache(maxsize=4096)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- fetching ---------------------------------------------------------------------------
    def _fetch(self, oid: str, check_cache: bool, fut: Future[bytes | None]) -> None:
        """Fetch ``oid`` and resolve ``fut`` with its verified bytes (None when a prefetch finds
        it cached already), then write it to the cache: readers do not wait for the disk."""
        try:
            if not fut.set_running_or_notify_cancel():
                return
            try:
                if check_cache and self.cache.size(oid) is not None:
                    fut.set_result(None)
                    return
                data = self.objects.get_bytes(oid, fill_cache=False)  # verifies the hash
            except BaseException as err:
                fut.set_exception(err)
                return
            if len(data) <= self._recent.maxsize:
                with self._lock:
                    self._recent[oid] = data
            fut.set_result(data)
            self.cache.put(oid, data)  # logs, never raises, for a full or unwritable disk
        finally:
            with self._lock:
                self._inflight.pop(oid, None)

    def _start(self, oid: str, check_cache: bool = False) -> Future[bytes | None]:
        with self._lock:
            fut = self._inflight.get(oid)
            if fut is None:
                fut = self._inflight[oid] = Future()
                task = self._pool.submit(self._fetch, oid, check_cache, fut)
                task.add_done_callback(lambda t, f=fut: t.cancelled() and f.cancel())
            return fut

    def chunk_range(self, oid: str, size: int, offset: int) -> bytes:
        """``size`` bytes at ``offset`` of chunk ``oid``, fetching the chunk if needed."""
        with self._lock:
            recent = self._recent.get(oid)
        if recent is not None:
            return recent[offset : offset + size]
        data = self.cache.pread(oid, size, offset)
        if data is not None:
            return data
        for _ in range(2):  # a prefetch may report "already cached" just before an eviction
            fetched = self._start(oid).result()
            if fetched is not None:
                return fetched[offset : offset + size]
            data = self.cache.pread(oid, size, offset)
            if data is not None:
                return data
        raise CorruptObject(oid, "chunk vanished from the cache while it was read")

    def prefetch(self, oids: Iterable[str]) -> None:
        """Start background fetches of ``oids`` not already cached, within the pending bound."""
        for oid in oids:
            with self._lock:
                if oid in self._recent_prefetch or oid in self._inflight:
                    continue
                if len(self._inflight) >= MAX_PENDING_PREFETCH:
                    return
                self._recent_prefetch[oid] = True
            # The cache check (a disk read and a hash) runs in the pool, not in this request.
            self._start(oid, check_cache=True).add_done_callback(_log_prefetch_failure)

    # -- file reads -------------------------------------------------------------------------
    def read(self, entry: TreeEntry, offset: int, size: int) -> bytes:
        """Bytes ``[offset, offset + size)`` of a file entry (short at end of file)."""
        end = min(entry.size, offset + size)
        if offset >= end:
            return b""
        first, last = offset // self.chunk_size, (end - 1) // self.chunk_size
        if len(entry.chunks) != (entry.size + self.chunk_size - 1) // self.chunk_size:
            raise CorruptObject(entry.sha256, "file entry's chunk list does not match its size")
        if last > first:  # start later chunks now so they download in parallel
            for idx in range(first + 1, last + 1):
                self._start(entry.chunks[idx], check_cache=True)
        parts = []
        pos = offset
        while pos < end:
            idx, within = divmod(pos, self.chunk_size)
            want = min(end - pos, self.chunk_size - within)
            piece = self.chunk_range(entry.chunks[idx], want, within)
            if len(piece) != want:
                raise CorruptObject(entry.chunks[idx], "chunk is shorter than its file entry says")
            parts.append(piece)
            pos += want
        return parts[0] if len(parts) == 1 else b"".join(parts)


class Sequential:
    """Per-open-file read-ahead state: a window of chunks that doubles while reads continue
    where the previous one ended, and resets on a seek."""

    def __init__(self) -> None:
        self.next_offset = 0
        self.window = 1

    def advise(self, reader: ChunkReader, entry: TreeEntry, offset: int, size: int) -> None:
        self.window = 1 if offset != self.next_offset else min(self.window * 2, MAX_WINDOW_CHUNKS)
        self.next_offset = offset + size
        if len(entry.chunks) > 1 and size > 0:
            idx = (offset + size - 1) // reader.chunk_size
            reader.prefetch(entry.chunks[idx + 1 : idx + 1 + self.window])


def _log_prefetch_failure(fut: Future[bytes | None]) -> None:
    if fut.cancelled():
        return
    err = fut.exception()
    if err is not None:
        log.warning("prefetch failed: %s", err)
