"""File content reads for mounts: cache-first chunk access, de-duplicated fetches, prefetch.

A read of file bytes goes: the chunks this reader fetched most recently (kept in memory, a
bounded number, because the disk cache writes large entries past the page cache) -> disk cache
(``pread`` of a verified entry) -> on a miss, one fetch of the whole chunk from the store (for a
packed file, its range of the pack), verified against its SHA-256 and written to the cache.
Concurrent readers of the same missing chunk share one fetch. Prefetch requests (sequential
read-ahead and sibling files) run on a bounded pool and are dropped, not queued without limit,
when it is busy. Packed siblings are prefetched in spans: one ranged read fetches many
neighbouring files, because requests, not bytes, are what cost.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

from cachetools import LRUCache

from s3fsv.errors import CorruptObject
from s3fsv.store.buffers import ChunkData, aligned_address
from s3fsv.store.cache import DIRECT_MIN, DiskCache
from s3fsv.store.objects import TreeEntry
from s3fsv.store.objectstore import Member, ObjectStore
from s3fsv.store.reader_warmup import DirectoryWarmup, remember

log = logging.getLogger(__name__)

MAX_WINDOW_CHUNKS = 8
MAX_PENDING_PREFETCH = 64
# Fetched chunks stay in memory until this many chunks' worth of newer ones arrived: room for a
# full read-ahead window ahead of the chunk being read, for two sequential readers.
RECENT_CHUNKS = 2 * (MAX_WINDOW_CHUNKS + 1)
SPAN_MIN = 2 * 1024 * 1024  # a prefetch span waits until it is worth a request of its own
SPAN_MAX = 8 * 1024 * 1024
SPAN_GAP = 256 * 1024  # bytes of other members a span may read through to join two runs
LOOKAHEAD_BYTES = 24 * 1024 * 1024  # packed files prefetched ahead of the one opened
PLAIN_LOOKAHEAD = 16  # files stored as their own objects prefetched ahead


class ReadMeter(Protocol):
    """Told about every chunk read: ``hit`` when memory or the disk cache served it, ``miss``
    when it waited for the store. Called on the read path: must not block."""

    def hit(self, nbytes: int) -> None: ...

    def miss(self, nbytes: int) -> None: ...


class ChunkReader(DirectoryWarmup):
    """Reads file ranges of one repo through the shared disk cache. Thread-safe."""

    def __init__(
        self,
        objects: ObjectStore,
        cache: DiskCache,
        chunk_size: int,
        *,
        threads: int = 16,
        meter: ReadMeter | None = None,
    ) -> None:
        self.objects = objects
        self.meter = meter
        self.cache = cache
        self.chunk_size = chunk_size
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="s3fsv-fetch")
        # Snapshot walks (warm_snapshot) run one at a time on a thread of their own: never
        # ahead of reads in the fetch pool's queue.
        self._walker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="s3fsv-walk")
        self._closed = False
        # The pool starts a thread per submit until it has them all, and each start costs
        # milliseconds here: inside a fresh mount's first listings (which warm the trees below
        # them) that made a find 50% slower (measured). They start now, in the background.
        threading.Thread(
            target=self._start_workers, args=(threads,), name="s3fsv-prestart", daemon=True
        ).start()
        self._inflight: dict[str, Future[ChunkData | None]] = {}
        self._lock = threading.Lock()
        # Verified chunks as fetched, served from memory while sequential reads consume them
        # (and whatever the disk cache could not store).
        self._recent: LRUCache[str, ChunkData] = LRUCache(
            maxsize=max(RECENT_CHUNKS * chunk_size, 2 * LOOKAHEAD_BYTES), getsizeof=len
        )
        # Ids whose prefetch started lately. Tested for every file after the one opened, on
        # every open: a plain ordered dict keeps that test a C-level lookup.
        self._recent_prefetch: OrderedDict[str, None] = OrderedDict()
        self._passed: LRUCache[str, bool] = LRUCache(maxsize=1024)  # see done_with
        self._covered: OrderedDict[str, None] = OrderedDict()  # see lookahead_due
        self._warmed: OrderedDict[str, None] = OrderedDict()  # see warm_snapshot
        self._spans = 0  # span fetches queued or running
        self._page_loads: dict[str, Future[None]] = {}  # directory pages being loaded

    def _start_workers(self, threads: int) -> None:
        # Tasks that wait for each other keep every started thread busy, so each submit
        # starts another (an idle thread would take the next task instead).
        # Short: real work that took a thread first leaves the others waiting this long.
        barrier = threading.Barrier(threads, timeout=0.25)

        def meet() -> None:
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait()

        with contextlib.suppress(RuntimeError):  # closed meanwhile
            for _ in range(threads):
                self._pool.submit(meet)

    def close(self, *, wait: bool = False) -> None:
        """Stop fetching: queued work is dropped; with ``wait``, running work is waited for."""
        self._closed = True  # ends a snapshot walk at its next directory
        self._walker.shutdown(wait=wait, cancel_futures=True)
        self._pool.shutdown(wait=wait, cancel_futures=True)

    def forget(self, oids: Iterable[str]) -> None:
        """Drop ``oids`` from memory (a purge erased them)."""
        with self._lock:
            for oid in oids:
                self._recent.pop(oid, None)

    def pending(self) -> int:
        """Chunks being fetched or queued for fetching right now."""
        with self._lock:
            return len(self._inflight)

    # -- fetching ---------------------------------------------------------------------------
    def _fetch(
        self, oid: str, check_cache: bool, fut: Future[ChunkData | None], member: Member | None
    ) -> None:
        """Fetch ``oid`` and resolve ``fut`` with its verified bytes (None when a prefetch finds
        it cached already), then write it to the cache: readers do not wait for the disk. The
        fetch leaves ``_inflight`` before ``fut`` resolves, so a reader that sees it fail and
        asks again gets a new fetch, not the same failure."""
        if not fut.set_running_or_notify_cancel():
            with self._lock:
                self._inflight.pop(oid, None)
            return
        data: ChunkData | None = None
        try:
            if not (check_cache and self.cache.size(oid) is not None):
                # Both verify the hash.
                if member is not None:
                    data = self.objects.get_member(member, fill_cache=False)
                else:
                    data = self.objects.fetch_chunk(oid)
        except BaseException as err:
            with self._lock:
                self._inflight.pop(oid, None)
            fut.set_exception(err)
            self._release_passed([oid])
            return
        with self._lock:
            if data is not None and len(data) <= self._recent.maxsize:
                self._recent[oid] = data
            self._inflight.pop(oid, None)
        fut.set_result(data)
        if data is not None:
            self.cache.put(oid, data)  # logs, never raises, for a full or unwritable disk
        self._release_passed([oid])

    def _start(
        self, oid: str, check_cache: bool = False, member: Member | None = None
    ) -> Future[ChunkData | None]:
        with self._lock:
            fut = self._inflight.get(oid)
            if fut is None and oid in self._recent:  # a fetch just ended: no second request
                fut = Future()
                fut.set_result(None)
            elif fut is None:
                fut = self._inflight[oid] = Future()
                task = self._pool.submit(self._fetch, oid, check_cache, fut, member)
                task.add_done_callback(lambda t, f=fut: t.cancelled() and f.cancel())
            return fut

    def chunk_range(
        self,
        oid: str,
        size: int,
        offset: int,
        *,
        borrow: bool = False,
        member: Member | None = None,
    ) -> Bytes:
        """``size`` bytes at ``offset`` of chunk ``oid`` (stored as ``member`` of a pack, when
        given), fetching it if needed. With ``borrow``, a chunk held in memory is lent as a
        ``Borrowed`` range, not copied."""
        # Memory, then disk; else fetch and look again (a fetch that resolves with None left
        # the chunk in memory or on disk). Twice, because a prefetch may report "already
        # cached" just before an eviction.
        meter = self.meter
        for fetches in range(3):
            with self._lock:
                recent = self._recent.get(oid)
            if recent is not None:
                got = _part(recent, offset, size, borrow)
                break
            got = self.cache.pread(oid, size, offset)
            if got is not None:
                break
            if fetches == 2:
                got = None
                break
            fetched = self._start(oid, member=member).result()
            if fetched is not None:
                got = _part(fetched, offset, size, borrow)
                fetches += 1
                break
        if got is not None:
            if meter is not None:
                (meter.miss if fetches else meter.hit)(len(got))
            return got
        raise CorruptObject(oid, "chunk vanished from the cache while it was read")

    def prefetch(self, chunks: Iterable[str | Member]) -> bool:
        """Start background fetches of ``chunks`` (ids of chunk objects, or members of
        another object) not already cached, within the pending bound; False when the bound
        stopped it before the end."""
        for chunk in chunks:
            member = chunk if isinstance(chunk, Member) else None
            oid = chunk.oid if isinstance(chunk, Member) else chunk
            with self._lock:
                if oid in self._recent_prefetch or oid in self._inflight:
                    continue
                if len(self._inflight) >= MAX_PENDING_PREFETCH:
                    return False
                remember(self._recent_prefetch, oid)
            # The cache check (a disk read and a hash) runs in the pool, not in this request.
            fut = self._start(oid, check_cache=True, member=member)
            fut.add_done_callback(_log_prefetch_failure)
        return True

    def chunk(self, entry: TreeEntry, idx: int) -> str | Member:
        """Chunk ``idx`` of a file entry as ``prefetch`` takes it."""
        return Member.at(entry, idx, self.chunk_size) or entry.chunks[idx]

    def done_with(self, oids: Iterable[str]) -> None:
        """A sequential reader has read past ``oids``: those the disk cache holds leave memory
        now rather than when newer chunks push them out, so their buffers are reused instead
        of fresh memory being faulted in (another reader of them reads the cache)."""
        with self._lock:
            for oid in oids:
                if oid in self._recent and self.cache.stored(oid):
                    del self._recent[oid]
                elif oid in self._recent or oid in self._inflight:
                    # Still being written to the cache, or a prefetch of it is still running
                    # (the reader got there first): released, or not kept, when that ends.
                    self._passed[oid] = True

    def _release_passed(self, oids: Iterable[str]) -> None:
        """At the end of a fetch: ``done_with`` for chunks a reader passed meanwhile (and
        forget that it did, whatever the fetch's outcome)."""
        with self._lock:
            for oid in oids:
                if self._passed.pop(oid, False) and self.cache.stored(oid):
                    self._recent.pop(oid, None)

    def warm_trees(self, tree_ids: Iterable[str], limit: int = 64) -> None:
        """Load, in the background, directories a listing is likely to be followed by (a walk
        such as ``find`` or ``ls -R`` lists every subdirectory next)."""
        for tid in itertools.islice(tree_ids, limit):
            with self._lock:
                if tid in self._recent_prefetch or self._spans >= MAX_PENDING_PREFETCH:
                    continue
                remember(self._recent_prefetch, tid)
            self._pool.submit(self._warm_tree, tid)

    def lookahead_due(self, entry: TreeEntry) -> bool:
        """Whether opening ``entry`` should look at the files after it (``prefetch_files``):
        not when a recent look-ahead covered it in the first half of its window. A walk then
        scans once per half window instead of on every open."""
        if not entry.chunks:
            return False
        with self._lock:
            return entry.chunks[0] not in self._covered

    def prefetch_files(self, entries: Iterable[TreeEntry], *, last: bool) -> None:
        """Start background fetches of the files ``entries`` (in the order they are expected to
        be read), up to ``LOOKAHEAD_BYTES`` of packed files and ``PLAIN_LOOKAHEAD`` others
        (their first chunk). Packed files are grouped into spans of one pack, each fetched with
        one ranged read; a span smaller than ``SPAN_MIN`` is held back until more files join it
        on a later call, unless ``last`` says that no more entries follow."""
        plain: list[str | Member] = []
        spans: list[list[Member]] = []
        span: _Span | None = None
        budget = LOOKAHEAD_BYTES
        covered: list[str] = []  # the first half of the window, for lookahead_due
        with self._lock:  # one acquisition for the scan: this runs on many opens
            for e in entries:
                if e.kind != "file" or not e.chunks:
                    continue
                if not e.pack:
                    if len(plain) < PLAIN_LOOKAHEAD:
                        plain.append(self.chunk(e, 0))
                        if len(plain) <= PLAIN_LOOKAHEAD // 2:
                            covered.append(e.chunks[0])
                    continue
                budget -= e.size
                if budget < 0:
                    last = False
                    break
                oid = e.chunks[0]
                if budget >= LOOKAHEAD_BYTES // 2:
                    covered.append(oid)
                if oid in self._recent_prefetch or oid in self._inflight:
                    continue
                m = Member.of(e)
                if span is not None and not span.add(m):
                    spans.append(span.members)
                    span = None
                if span is None:
                    span = _Span(m)
                if span.extent >= SPAN_MAX:
                    spans.append(span.members)
                    span = None
        held: set[str] = set()
        if span is not None and (last or span.extent >= SPAN_MIN):
            spans.append(span.members)
        elif span is not None:
            held = {m.oid for m in span.members}
        for members in spans:
            if not self._start_span(members):
                held.update(m.oid for m in members)
        if plain and not self.prefetch(plain):
            held.update(p.oid if isinstance(p, Member) else p for p in plain)
        with self._lock:
            for oid in covered:
                if oid not in held:
                    remember(self._covered, oid)

    def _start_span(self, members: list[Member]) -> bool:
        """Start fetching ``members`` (those not in flight already); False when too many
        spans are pending and nothing was started."""
        with self._lock:
            if self._spans >= MAX_PENDING_PREFETCH:
                return False
            members = [m for m in members if m.oid not in self._inflight]
            if not members:
                return True
            self._spans += 1
            fut: Future[ChunkData | None] = Future()
            for m in members:
                remember(self._recent_prefetch, m.oid)
                self._inflight[m.oid] = fut
        task = self._pool.submit(self._fetch_span, members, fut)
        task.add_done_callback(lambda t, f=fut: t.cancelled() and f.cancel())
        return True

    def _fetch_span(self, members: list[Member], fut: Future[ChunkData | None]) -> None:
        """Fetch the members of one span not yet cached, with one ranged read of their pack.
        Waiters are released once the members are in memory and no longer in flight, so one
        that misses (a bad member, an eviction) starts a fetch of its own."""
        got: dict[str, bytes] = {}
        cached: dict[str, bytes] = {}  # held in memory too: the read then needs no second read
        try:
            missing = []
            for m in members:
                with self._lock:
                    if m.oid in self._passed:  # already read: no need to load it at all
                        continue
                data = self.cache.get(m.oid)
                if data is None:
                    missing.append(m)
                else:
                    cached[m.oid] = data
            if missing:
                got, bad = self.objects.get_members(missing[0].pack, missing, fill_cache=False)
                if bad:
                    log.warning("packed file %s does not match its hash", bad[0])
        except Exception as err:
            log.warning("prefetch of %d packed files failed: %s", len(members), err)
        finally:
            with self._lock:
                for oid, data in (*cached.items(), *got.items()):
                    if oid not in self._passed or not self.cache.stored(oid):
                        self._recent[oid] = data
                self._spans -= 1
                for m in members:
                    if self._inflight.get(m.oid) is fut:
                        del self._inflight[m.oid]
            fut.set_result(None)
        for oid, data in got.items():
            self.cache.put(oid, data)  # logs, never raises
        self._release_passed(m.oid for m in members)

    # -- file reads -------------------------------------------------------------------------
    def read(self, entry: TreeEntry, offset: int, size: int, *, borrow: bool = False) -> Bytes:
        """Bytes ``[offset, offset + size)`` of a file entry (short at end of file). With
        ``borrow``, the result may be a ``Borrowed`` range of a chunk held in memory."""
        end = min(entry.size, offset + size)
        if offset >= end:
            return b""
        first, last = offset // self.chunk_size, (end - 1) // self.chunk_size
        if len(entry.chunks) != (entry.size + self.chunk_size - 1) // self.chunk_size:
            raise CorruptObject(entry.sha256, "file entry's chunk list does not match its size")
        if last > first:  # start later chunks now so they download in parallel
            for idx in range(first + 1, last + 1):
                later = Member.at(entry, idx, self.chunk_size)
                self._start(entry.chunks[idx], check_cache=True, member=later)
        parts = []
        pos = offset
        while pos < end:
            idx, within = divmod(pos, self.chunk_size)
            want = min(end - pos, self.chunk_size - within)
            member = Member.at(entry, idx, self.chunk_size)
            piece = self.chunk_range(entry.chunks[idx], want, within, borrow=borrow, member=member)
            if len(piece) != want:
                raise CorruptObject(entry.chunks[idx], "chunk is shorter than its file entry says")
            parts.append(piece)
            pos += want
        if end == entry.size and len(entry.chunks) == 1 and (offset == 0 or end < DIRECT_MIN):
            # A one-chunk file read to its end is done with: keeping it in memory until newer
            # files push it out made every file fresh memory. A re-read comes from the page
            # cache, or (a branch view) the disk cache. Not after a read of just the tail of
            # a larger file (formats with a footer read it first), whose cache entry was
            # written past the page cache.
            self.done_with(entry.chunks)
        if len(parts) == 1:
            return parts[0]
        return b"".join(p.view() if isinstance(p, Borrowed) else p for p in parts)


class Borrowed:
    """``length`` bytes at ``start`` of an immutable chunk, lent without copying. ``ctypes``
    accepts it where it expects a pointer (``_as_parameter_``), so the FUSE layer copies the
    bytes straight into the kernel's reply buffer; the chunk stays alive while this exists."""

    __slots__ = ("data", "start", "length")

    def __init__(self, data: ChunkData, start: int, length: int) -> None:
        self.data, self.start, self.length = data, start, length

    def __len__(self) -> int:
        return self.length

    def view(self) -> memoryview:
        return memoryview(self.data)[self.start : self.start + self.length]

    @property
    def _as_parameter_(self) -> ctypes.c_void_p:
        base = aligned_address(self.data)
        if base is None:
            base = ctypes.cast(ctypes.c_char_p(self.data), ctypes.c_void_p).value or 0
        return ctypes.c_void_p(base + self.start)


Bytes = bytes | Borrowed


def _part(chunk: ChunkData, offset: int, size: int, borrow: bool) -> Bytes:
    if borrow:
        return Borrowed(chunk, offset, max(0, min(size, len(chunk) - offset)))
    return chunk[offset : offset + size]


class Sequential:
    """Per-open-file read-ahead state: a window of chunks that doubles while reads continue
    where the previous one ended, and resets on a seek. Chunks a sequential read has left
    behind (by more than one chunk, as parallel FUSE reads arrive slightly out of order) are
    released from memory (see ``ChunkReader.done_with``)."""

    def __init__(self) -> None:
        self.next_offset = 0
        self.window = 1
        self.released = 0  # chunks before this index were released

    def advise(self, reader: ChunkReader, entry: TreeEntry, offset: int, size: int) -> None:
        sequential = offset == self.next_offset
        self.window = min(self.window * 2, MAX_WINDOW_CHUNKS) if sequential else 1
        self.next_offset = offset + size
        if len(entry.chunks) > 1 and size > 0:
            first = offset // reader.chunk_size
            if sequential and first - 1 > self.released:
                reader.done_with(entry.chunks[self.released : first - 1])
                self.released = first - 1
            idx = (offset + size - 1) // reader.chunk_size
            ahead = range(idx + 1, min(idx + 1 + self.window, len(entry.chunks)))
            reader.prefetch(reader.chunk(entry, i) for i in ahead)


class _Span:
    """Packed members that one ranged read of their pack can fetch together."""

    def __init__(self, first: Member) -> None:
        self.members = [first]
        self.lo, self.hi = first.offset, first.offset + first.size

    @property
    def extent(self) -> int:
        return self.hi - self.lo

    def add(self, m: Member) -> bool:
        """Add ``m`` if it is in the same pack and close enough; say whether it was added."""
        if m.pack != self.members[0].pack:
            return False
        lo, hi = min(self.lo, m.offset), max(self.hi, m.offset + m.size)
        near = self.lo - SPAN_GAP <= m.offset <= self.hi + SPAN_GAP
        if not near or hi - lo > SPAN_MAX + SPAN_GAP:
            return False
        self.members.append(m)
        self.lo, self.hi = lo, hi
        return True


def _log_prefetch_failure(fut: Future[ChunkData | None]) -> None:
    if fut.cancelled():
        return
    err = fut.exception()
    if err is not None:
        log.warning("prefetch failed: %s", err)
