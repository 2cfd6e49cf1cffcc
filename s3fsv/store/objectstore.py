"""Content-addressed object access for one repo: verified reads, idempotent writes, caching.

Keys are ``<repo>/objects/<id[:2]>/<id[2:]>``. Every read is verified against its id before it is
returned or cached; bytes that do not hash to their key raise ``CorruptObject`` naming the key.
Writes use ``if_none_match`` so racing writers of the same object both succeed harmlessly.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

from cachetools import LRUCache

from s3fsv.errors import CorruptObject, MissingObject, NotFound, PreconditionFailed, SourceChanged
from s3fsv.store.backend.base import Backend, ReadsInto
from s3fsv.store.buffers import POOLED_MIN, SHARED_POOL, BufferPool, ChunkData
from s3fsv.store.keepalive import MOVED_HOPS, KeepAlive
from s3fsv.store.objects import (
    Commit,
    Object,
    Source,
    Tree,
    TreeEntry,
    TreePage,
    decode,
    encode,
    is_object_id,
    sha256_hex,
)

if TYPE_CHECKING:
    from s3fsv.store.external import Sources

T = TypeVar("T", Tree, TreePage, Commit)
D = TypeVar("D")  # a body as a backend read returns it (bytes, or a caller's buffer)
HEAD_FIRST_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Moved:
    """Where the members of a pack that gc rewrote went (docs/format.md, 7.3): ``pack``, the
    new pack, and old offset -> (new offset, size) for each member that was kept."""

    pack: str
    members: dict[int, tuple[int, int]]

    def to_json(self) -> dict[str, object]:
        rows = [[old, new, size] for old, (new, size) in sorted(self.members.items())]
        return {"members": rows, "pack": self.pack, "type": "moved", "v": 1}

    @classmethod
    def from_json(cls, raw: object, key: str) -> Moved:
        try:
            assert isinstance(raw, dict) and set(raw) == {"members", "pack", "type", "v"}
            assert raw["type"] == "moved" and raw["v"] == 1 and is_object_id(raw["pack"])
            members: dict[int, tuple[int, int]] = {}
            for old, new, size in raw["members"]:
                assert all(type(x) is int and x >= 0 for x in (old, new, size))
                members[old] = (new, size)
        except (AssertionError, TypeError, ValueError):
            raise CorruptObject(key, "not a moved-pack record") from None
        return cls(raw["pack"], members)


@dataclass(frozen=True)
class Member:
    """A chunk stored inside a larger object: ``size`` bytes at ``offset`` of ``pack`` (a
    packed file), or of ``source`` (an imported original), hashing to ``oid``."""

    oid: str
    pack: str
    offset: int
    size: int
    source: Source | None = None

    @classmethod
    def of(cls, entry: TreeEntry) -> Member:
        """A packed file's one chunk."""
        return cls(entry.chunks[0], entry.pack, entry.pack_offset, entry.size)

    @classmethod
    def at(cls, entry: TreeEntry, idx: int, chunk_size: int) -> Member | None:
        """Chunk ``idx`` of a file entry when it is part of another object; None when the
        chunk is an object of its own."""
        if entry.source is not None:
            start = idx * chunk_size
            size = entry.size if len(entry.chunks) == 1 else min(chunk_size, entry.size - start)
            return cls(entry.chunks[idx], "", start, size, entry.source)
        if entry.pack:
            return cls.of(entry)
        return None


class ByteCache(Protocol):
    """A cache of verified object bytes keyed by object id (see ``s3fsv.store.cache``)."""

    def get(self, oid: str) -> bytes | None: ...

    def put(self, oid: str, data: bytes) -> None: ...


DECODED_BYTES = 48 * 1024 * 1024  # memory for decoded trees, pages and commits (estimated)
_ENTRY_BYTES = 720  # a decoded TreeEntry with its strings (tracemalloc, 1,000-entry page)


def decoded_size(obj: Object) -> int:
    """About how much memory a decoded object holds."""
    if isinstance(obj, (Tree, TreePage)):
        return 200 + _ENTRY_BYTES * len(obj.entries) + 200 * len(getattr(obj, "pages", ()))
    return 1024


class ObjectStore:
    """Objects of one repo. Thread-safe.

    ``cache`` (optional) holds raw bytes of any object, typically on disk and shared between
    processes; decoded metadata objects are also kept in a bounded in-memory LRU.
    """

    def __init__(
        self,
        backend: Backend,
        repo: str,
        cache: ByteCache | None = None,
        *,
        chunk_size: int = 0,
        sources: Sources | None = None,
    ) -> None:
        self.backend = backend
        self.repo = repo
        self.cache = cache
        self.chunk_size = chunk_size
        self._sources = sources
        # Bounded by (estimated) bytes, not entries: a walk of a million files must not keep
        # a million decoded entries alive in a mount's daemon.
        self._decoded: LRUCache[str, Object] = LRUCache(
            maxsize=DECODED_BYTES, getsizeof=decoded_size
        )
        self._known: LRUCache[str, bool] = LRUCache(maxsize=1 << 16)
        self._located: LRUCache[str, tuple[str, int]] = LRUCache(maxsize=1 << 16)
        self._moved: LRUCache[str, Moved] = LRUCache(maxsize=4096)
        self.keepalive = KeepAlive(self)  # what a concurrent gc must not delete
        self._lock = threading.Lock()
        self.writes = 0
        self.bytes_written = 0

    def key(self, oid: str) -> str:
        if not is_object_id(oid):
            raise CorruptObject(oid, "not an object id")
        return f"{self.repo}/objects/{oid[:2]}/{oid[2:]}"

    # -- raw bytes ---------------------------------------------------------------------------
    def get_bytes(self, oid: str, *, fill_cache: bool = True) -> bytes:
        """The verified bytes of ``oid``. A cached copy that fails verification is a miss.
        ``fill_cache=False`` leaves storing fetched bytes in the cache to the caller."""
        if self.cache is not None:
            data = self.cache.get(oid)
            if data is not None:
                return data
        data = self._fetch_verified(oid, self.backend.get)
        if self.cache is not None and fill_cache:
            self.cache.put(oid, data)
        return data

    def fetch_chunk(self, oid: str, pool: BufferPool = SHARED_POOL) -> ChunkData:
        """The verified bytes of the file chunk ``oid``, fetched from the store; the cache is
        neither consulted nor filled (the reader that calls this manages it). A body of at
        least ``POOLED_MIN`` bytes lands in a ``Chunk`` from ``pool`` when the backend can read
        into it (see ``s3fsv.store.buffers``)."""
        backend = self.backend
        if not isinstance(backend, ReadsInto):
            return self.get_bytes(oid, fill_cache=False)
        data = self._fetch_verified(
            oid,
            lambda key: backend.read_into(
                key, lambda n: pool.take(n) if n >= POOLED_MIN else bytearray(n)
            ),
        )
        return bytes(data) if isinstance(data, bytearray) else data

    def _fetch_verified(self, oid: str, read: Callable[[str], D]) -> D:
        """``read(key)`` of object ``oid`` from the store, checked against its SHA-256. A
        missing object is ``MissingObject``: objects are read because something refers to them
        (``get`` makes a missing commit, which may be an id someone asked for, plain
        ``NotFound``)."""
        key = self.key(oid)
        try:
            data = read(key)
        except NotFound:
            raise MissingObject(f"object {oid} is missing from repo {self.repo!r}") from None
        if sha256_hex(data) != oid:  # type: ignore[arg-type]
            size = len(data)  # type: ignore[arg-type]
            raise CorruptObject(key, f"content does not match its hash ({size} bytes read)")
        with self._lock:
            self._known[oid] = True
        return data

    def moved_key(self, pack: str) -> str:
        if not is_object_id(pack):
            raise CorruptObject(pack, "not an object id")
        return f"{self.repo}/moved/{pack}"

    def moved(self, pack: str) -> Moved | None:
        """Where gc moved the members of ``pack``, or None when it did not."""
        with self._lock:
            known = self._moved.get(pack)
        if known is not None:
            return known  # records never change; their absence may (gc writes them)
        key = self.moved_key(pack)
        try:
            found = Moved.from_json(json.loads(self.backend.get(key)), key)
        except NotFound:
            return None
        except ValueError:
            raise CorruptObject(key, "not JSON") from None
        self.note_moved(pack, found)
        return found

    def note_moved(self, pack: str, moved: Moved | None) -> None:
        """Set (or, with None, forget) what this process knows of where ``pack`` moved."""
        with self._lock:
            if moved is None:
                self._moved.pop(pack, None)
            else:
                self._moved[pack] = moved

    def get_members(
        self, pack: str, members: Sequence[Member], *, fill_cache: bool = True, hops: int = 0
    ) -> tuple[dict[str, bytes], list[str]]:
        """Fetch packed members of ``pack`` with one ranged read spanning them all and verify
        each on its own. Returns (oid -> bytes of those that verified, oids of those that did
        not); with ``fill_cache``, the good ones are also put in the cache. A pack that gc
        rewrote is read where its record says its members went."""
        start = min(m.offset for m in members)
        end = max(m.offset + m.size for m in members)
        try:
            span = self.backend.get(self.key(pack), start, end)
        except NotFound:
            moved = self.moved(pack) if hops < MOVED_HOPS else None
            if moved is None:
                raise MissingObject(f"pack {pack} is missing from repo {self.repo!r}") from None
            there = [m for m in members if moved.members.get(m.offset, (0, -1))[1] == m.size]
            if not there:
                raise MissingObject(
                    f"pack {pack} of repo {self.repo!r} was rewritten without this file"
                ) from None
            forwarded = [
                Member(m.oid, moved.pack, moved.members[m.offset][0], m.size) for m in there
            ]
            good, bad = self.get_members(
                moved.pack, forwarded, fill_cache=fill_cache, hops=hops + 1
            )
            return good, bad + [m.oid for m in members if m not in there]
        view = memoryview(span)
        good: dict[str, bytes] = {}
        bad: list[str] = []
        for m in members:
            data = bytes(view[m.offset - start : m.offset - start + m.size])
            if len(data) != m.size or sha256_hex(data) != m.oid:
                bad.append(m.oid)
                continue
            good[m.oid] = data
            if self.cache is not None and fill_cache:
                self.cache.put(m.oid, data)
            with self._lock:
                self._located[m.oid] = (pack, m.offset)
        return good, bad

    @property
    def sources(self) -> Sources:
        """Clients of the buckets imported originals are kept in (made on first use)."""
        if self._sources is None:
            from s3fsv.store.external import Sources  # boto3 only for stores that need it

            with self._lock:
                if self._sources is None:
                    self._sources = Sources.beside(self.backend)
        return self._sources

    def get_member(self, member: Member, *, fill_cache: bool = True) -> bytes:
        """The verified bytes of one packed file or chunk of an imported original (from the
        cache when it holds them)."""
        if self.cache is not None:
            data = self.cache.get(member.oid)
            if data is not None:
                return data
        if member.source is not None:
            return self._get_sourced(member, fill_cache)
        good, _ = self.get_members(member.pack, [member], fill_cache=fill_cache)
        if member.oid not in good:
            raise CorruptObject(
                self.key(member.pack),
                f"{member.size} bytes at offset {member.offset} do not match their hash "
                f"{member.oid}",
            )
        return good[member.oid]

    def _get_sourced(self, member: Member, fill_cache: bool) -> bytes:
        assert member.source is not None
        data = self.sources.read(member.source, member.offset, member.offset + member.size)
        if len(data) != member.size or sha256_hex(data) != member.oid:
            raise SourceChanged(
                f"the original {member.source.url} no longer holds the bytes imported "
                f"({member.size} at offset {member.offset} do not match their SHA-256)"
            )
        if self.cache is not None and fill_cache:
            self.cache.put(member.oid, data)
        return data

    def file_chunk(self, entry: TreeEntry, idx: int) -> bytes:
        """The verified bytes of chunk ``idx`` of a file entry, wherever it is stored."""
        member = Member.at(entry, idx, self.chunk_size)
        if member is not None:
            return self.get_member(member)
        return self.get_bytes(entry.chunks[idx])

    def location(self, oid: str) -> tuple[str, int] | None:
        """(pack, offset) of a packed chunk this process stored or read, if it knows one."""
        with self._lock:
            return self._located.get(oid)

    def remember_location(self, oid: str, pack: str, offset: int) -> None:
        with self._lock:
            self._located[oid] = (pack, offset)

    def exists(self, oid: str) -> bool:
        with self._lock:
            if oid in self._known:
                return True
        try:
            self.backend.head(self.key(oid))
        except NotFound:
            return False
        with self._lock:
            self._known[oid] = True
        return True

    def put_bytes(
        self,
        data: bytes,
        *,
        check_exists: bool = True,
        fill_cache: bool = True,
        oid: str | None = None,
    ) -> str:
        """Store ``data`` and return its id. Skips the upload when the object is known to exist
        (``check_exists`` adds a HEAD for objects of at least ``HEAD_FIRST_BYTES`` this process
        has not seen; smaller objects are simply put with ``if_none_match``, because a second
        request costs more than re-sending their bytes); an object stored before, and not by
        this process lately, is revived instead (``keepalive``), so that a concurrent gc keeps
        it. ``oid``, when given, must be the SHA-256 of ``data`` computed by the caller.
        ``fill_cache=False`` keeps bulk uploads from writing every byte a second time into the
        local read cache."""
        oid = oid or sha256_hex(data)
        keep = self.keepalive
        if keep.young(oid):
            return oid
        with self._lock:
            known = oid in self._known
        there = known or (check_exists and len(data) >= HEAD_FIRST_BYTES and self.exists(oid))
        if there and keep.revive(oid):  # stored already, maybe long ago: made young again
            return oid
        for _attempt in range(2):
            try:
                self.backend.put(self.key(oid), data, if_none_match=True, content_sha256=oid)
                with self._lock:
                    self.writes += 1
                    self.bytes_written += len(data)
                keep.wrote(oid)
                break
            except PreconditionFailed:  # same id means same bytes: stored already
                if keep.revive(oid):
                    break  # (else gc deleted it just now: store it again)
        with self._lock:
            self._known[oid] = True
        if self.cache is not None and fill_cache:
            self.cache.put(oid, bytes(data))
        return oid

    def stored(self, oid: str) -> bool:
        """Whether object ``oid`` is in the store now (a HEAD; no cache)."""
        try:
            self.backend.head(self.key(oid))
        except NotFound:
            return False
        return True

    def forget_pack(self, oid: str) -> None:
        """Forget that ``oid`` exists, and any pack location in it: gc deleted it."""
        with self._lock:
            self._known.pop(oid, None)
            for member in [m for m, (p, _) in self._located.items() if p == oid]:
                del self._located[member]

    # -- decoded objects ------------------------------------------------------------------------
    def decoded(self, oid: str) -> Object | None:
        """The object ``oid`` if it is held decoded in memory (no I/O), else None."""
        with self._lock:
            return self._decoded.get(oid)

    def cached_bytes(self, oid: str) -> bytes | None:
        """The bytes of ``oid`` from the local cache (verified against the digest they were
        stored with), or None: no request to the store."""
        return self.cache.get(oid) if self.cache is not None else None

    def get(self, oid: str, kind: type[T]) -> T:
        """Read and decode an object, checking that it is of type ``kind``."""
        with self._lock:
            obj = self._decoded.get(oid)
        if obj is None:
            # Metadata enters the cache only once it decoded in full, canonical form included,
            # so a cached copy (verified by its digest) is decoded without re-encoding it: a
            # walk of a million files decodes sixteen thousand pages.
            raw = self.cache.get(oid) if self.cache is not None else None
            if raw is not None:
                obj = decode(raw, self.key(oid), canonical=False)
            else:
                try:
                    raw = self.get_bytes(oid, fill_cache=False)
                except MissingObject as err:
                    if kind is Commit:  # an id someone asked for: it does not exist
                        raise NotFound(str(err)) from None
                    raise
                obj = decode(raw, self.key(oid))
                if self.cache is not None:
                    self.cache.put(oid, raw)
            with self._lock:
                self._decoded[oid] = obj
        if not isinstance(obj, kind):
            raise CorruptObject(self.key(oid), f"expected a {kind.__name__.lower()}")
        return obj

    def put(self, obj: Object) -> str:
        data = encode(obj)
        oid = self.put_bytes(data, check_exists=False)
        with self._lock:
            self._decoded[oid] = obj
        return oid
