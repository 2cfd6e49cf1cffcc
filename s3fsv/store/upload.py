"""Uploading file contents: big files as chunk objects, small files packed together.

A file of at most ``PACK_MEMBER_MAX`` bytes is appended to an in-memory pack; a pack is sealed
and stored as one object once it holds ``PACK_TARGET`` bytes (or when the upload finishes).
Storing thousands of small files as a few packs turns thousands of requests into a few, which
is what both uploads and cold reads pay for. Larger files are split into ``chunk_size`` chunks,
each its own object. All object writes run on a bounded pool with bounded memory in flight.
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from s3fsv.store.objects import TreeEntry, check_name, sha256_hex
from s3fsv.store.objectstore import ObjectStore

PACK_MEMBER_MAX = 1024 * 1024
PACK_TARGET = 16 * 1024 * 1024


@dataclass
class PackSlot:
    """Where one packed file will be: ``offset`` in a pack whose id is set once it is stored."""

    offset: int
    pack: str = ""


@dataclass
class Content:
    """An uploaded file's content. Its chunk ids and pack location are final only after
    ``Uploader.finish()`` returned; ``entry`` refuses to run before that."""

    size: int
    sha256: str
    _chunks: list[Future[str]] = field(default_factory=list)
    _slot: PackSlot | None = None

    @property
    def chunks(self) -> tuple[str, ...]:
        if self._slot is not None:
            return (self.sha256,)
        if not all(f.done() for f in self._chunks):
            raise RuntimeError("content used before Uploader.finish()")
        return tuple(f.result() for f in self._chunks)

    @property
    def final(self) -> bool:
        """Whether ``chunks`` and ``entry`` are usable (everything is stored)."""
        if self._slot is not None:
            return bool(self._slot.pack)
        return all(f.done() for f in self._chunks)

    def cancel(self) -> None:
        """Drop the chunk uploads of this content that have not started."""
        for fut in self._chunks:
            fut.cancel()

    def entry(self, name: str, mode: int, mtime_ns: int) -> TreeEntry:
        pack, offset = "", 0
        if self._slot is not None:
            if not self._slot.pack:
                raise RuntimeError("content used before Uploader.finish()")
            pack, offset = self._slot.pack, self._slot.offset
        return TreeEntry(
            check_name(name),
            "file",
            mode & 0o7777,
            mtime_ns,
            self.size,
            self.sha256,
            self.chunks,
            pack=pack,
            pack_offset=offset,
        )


class Uploader:
    """Uploads file contents; use as a context manager and call ``finish`` before using results.

    ``add_file``/``add_bytes`` return at once (waiting only while too much is in flight), so one
    thread can feed files in path order: packed siblings then sit next to each other, which is
    what read-ahead over a directory fetches in one request. ``progress`` (optional) is called
    with the number of bytes just stored, from any thread.
    """

    def __init__(
        self,
        objects: ObjectStore,
        chunk_size: int,
        *,
        threads: int = 16,
        progress: Callable[[int], None] | None = None,
        pack_target: int = PACK_TARGET,
        pack_member_max: int = PACK_MEMBER_MAX,
    ) -> None:
        self.objects = objects
        self.chunk_size = chunk_size
        self.progress = progress
        self.pack_target = pack_target
        self.pack_member_max = min(pack_member_max, chunk_size)
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="s3fsv-upload")
        self._in_flight = threading.BoundedSemaphore(threads * 2)
        self._lock = threading.Lock()
        self._pack = bytearray()
        self._members: dict[str, PackSlot] = {}  # content id -> slot, in the open pack
        self._packed: dict[str, PackSlot] = {}  # content id -> slot, in any pack of this upload
        self._futures: list[Future[str]] = []

    def __enter__(self) -> Uploader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    # -- object writes ----------------------------------------------------------------------
    def _put(self, data: bytes | bytearray, oid: str | None, members: dict[str, PackSlot]) -> str:
        try:
            stored = self.objects.put_bytes(bytes(data), fill_cache=False, oid=oid)
            # Set here, not in a done-callback: ``finish`` may return before callbacks run.
            for member, slot in members.items():
                slot.pack = stored
                self.objects.remember_location(member, stored, slot.offset)
            return stored
        finally:
            self._in_flight.release()
            if self.progress is not None and not members:  # packed files count when added
                self.progress(len(data))

    def _submit(
        self, data: bytes | bytearray, oid: str | None, members: dict[str, PackSlot] | None = None
    ) -> Future[str]:
        """Queue one object write, waiting while too many are in flight (bounded memory)."""
        self._in_flight.acquire()
        try:
            fut = self._pool.submit(self._put, data, oid, members or {})
        except BaseException:  # the pool is shutting down: give the slot back
            self._in_flight.release()
            raise
        with self._lock:
            self._futures.append(fut)
        return fut

    # -- packs --------------------------------------------------------------------------------
    def _add_member(self, data: bytes, oid: str) -> PackSlot:
        if self.progress is not None:
            self.progress(len(data))
        with self._lock:
            slot = self._packed.get(oid)
            if slot is not None:  # the same bytes twice in one upload: store them once
                return slot
            known = self.objects.location(oid)
            if known is not None:
                slot = self._packed[oid] = PackSlot(known[1], known[0])
                return slot
            slot = self._members[oid] = self._packed[oid] = PackSlot(len(self._pack))
            self._pack += data
            full = len(self._pack) >= self.pack_target
        if full:
            self._seal()
        return slot

    def _seal(self) -> None:
        """Queue the open pack for storing; its members learn the pack id once it is stored."""
        with self._lock:
            data, members = bytes(self._pack), self._members
            self._pack, self._members = bytearray(), {}
        if data:
            self._submit(data, sha256_hex(data), members)

    def finish(self) -> None:
        """Store what is still buffered and wait for every write; raise the first failure."""
        self._seal()
        with self._lock:
            futures, self._futures = self._futures, []
        try:
            for fut in futures:
                fut.result()
        except BaseException:
            with self._lock:  # packs that failed must not be reused by a later call
                self._packed = {oid: slot for oid, slot in self._packed.items() if slot.pack}
            raise
        with self._lock:  # stored: the object store's record of locations de-duplicates now
            self._packed = {oid: slot for oid, slot in self._packed.items() if not slot.pack}

    # -- public -------------------------------------------------------------------------------
    def add_bytes(self, data: bytes) -> Content:
        if 0 < len(data) <= self.pack_member_max:
            oid = sha256_hex(data)
            return Content(len(data), oid, _slot=self._add_member(data, oid))
        futures = [
            self._submit(data[off : off + self.chunk_size], None)
            for off in range(0, len(data), self.chunk_size)
        ]
        return Content(len(data), hashlib.sha256(data).hexdigest(), futures)

    def add_file(
        self,
        path: str | os.PathLike[str],
        stored: Mapping[int, str] | None = None,
        resume: tuple[Any, int] | None = None,
    ) -> Content:
        """Queue one regular file. The file must not change while it is read; if its size or
        mtime changes underneath, ``OSError`` is raised rather than recording a torn snapshot.
        ``stored`` maps chunk indexes to the ids of chunks the caller knows to be stored with
        exactly the bytes the file now holds there: those are neither hashed nor uploaded.
        ``resume`` is (SHA-256 state of the file's first N bytes, N), N a multiple of the
        chunk size, vouched for like ``stored``: stored chunks below N are not even read."""
        with open(path, "rb") as fh:
            before = os.fstat(fh.fileno())
            if not stat.S_ISREG(before.st_mode):
                raise OSError(f"not a regular file: {path}")
            if before.st_size <= self.pack_member_max:
                data = fh.read(self.pack_member_max + 1)
                after = os.fstat(fh.fileno())
                _check_unchanged(path, before, after, len(data))
                return self.add_bytes(data)
            digest, hashed = resume if resume is not None else (hashlib.sha256(), 0)
            if hashed % self.chunk_size or hashed > before.st_size:
                raise OSError(f"file changed while it was uploaded (now shorter): {path}")
            futures: list[Future[str]] = []
            size = 0
            while size < hashed:
                idx = size // self.chunk_size
                if stored and idx in stored:
                    futures.append(_done(stored[idx]))
                    size += self.chunk_size
                    continue
                data = os.pread(fh.fileno(), self.chunk_size, size)
                if len(data) != self.chunk_size:
                    raise OSError(f"file changed while it was uploaded: {path}")
                futures.append(self._submit(data, None))
                size += self.chunk_size
            fh.seek(size)
            while data := fh.read(self.chunk_size):
                idx = size // self.chunk_size
                size += len(data)
                digest.update(data)
                if stored and idx in stored and len(data) == self.chunk_size:
                    futures.append(_done(stored[idx]))
                else:
                    futures.append(self._submit(data, None))
            after = os.fstat(fh.fileno())
        _check_unchanged(path, before, after, size)
        return Content(size, digest.hexdigest(), futures)


def upload_files(
    objects: ObjectStore,
    chunk_size: int,
    files: Mapping[str, str | os.PathLike[str]],
    *,
    threads: int = 16,
    progress: Callable[[int], None] | None = None,
    early: Callable[[str, Uploader], Content | None] | None = None,
) -> dict[str, tuple[Content, os.stat_result]]:
    """Upload local files given as repo path -> local path, fed in depth-first walk order (so
    small siblings share packs, next to each other). ``early(repo path, uploader)`` may supply
    a file's content itself (see ``WriteBehind.content``). Returns repo path -> (content, the
    file's stat taken before it was read)."""
    out: dict[str, tuple[Content, os.stat_result]] = {}
    with Uploader(objects, chunk_size, threads=threads, progress=progress) as up:
        for rel in sorted(files, key=_walk_order):
            st = os.stat(files[rel])
            content = early(rel, up) if early is not None else None
            out[rel] = (content or up.add_file(files[rel]), st)
        up.finish()
    return out


def _done(oid: str) -> Future[str]:
    fut: Future[str] = Future()
    fut.set_result(oid)
    return fut


def _walk_order(path: str) -> list[bytes]:
    """The order a depth-first walk in name order visits paths (``a/x`` before ``a-1``)."""
    return [part.encode() for part in path.split("/")]


def _check_unchanged(path: object, before: os.stat_result, after: os.stat_result, n: int) -> None:
    if n != after.st_size or before.st_mtime_ns != after.st_mtime_ns:
        raise OSError(f"file changed while it was uploaded: {path}")
