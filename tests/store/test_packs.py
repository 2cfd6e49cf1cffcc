"""Pack objects without FUSE: how small files are stored together, read back and prefetched.

Small files are appended to packs at upload; a tree entry records the pack and offset. Reads
fetch a member's range (or a span of neighbours in one request) and verify every member
against its own hash, so a damaged pack can cost a refetch or an error, never wrong bytes.
"""

from __future__ import annotations

import contextlib
import ctypes
import random
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from s3fsv.errors import CorruptObject
from s3fsv.mount.staging import Staged, Staging
from s3fsv.store.backend.memory import MemoryBackend
from s3fsv.store.cache import DiskCache
from s3fsv.store.objects import Tree, TreeEntry
from s3fsv.store.objectstore import ObjectStore
from s3fsv.store.reader import LOOKAHEAD_BYTES, SPAN_MIN, ChunkReader
from s3fsv.store.store import Store
from s3fsv.store.upload import Uploader

CHUNK = 64 * 1024
OID = "ab" * 32
OID2 = "cd" * 32
SMALL = 10_000


class CountingBackend(MemoryBackend):
    """A memory store that counts requests by kind, and can damage stored bytes."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()
        self._count_lock = threading.Lock()

    def get(self, key: str, start: int | None = None, end: int | None = None) -> bytes:
        with self._count_lock:
            self.calls["get"] += 1
        return super().get(key, start, end)

    def put(self, key: str, data: bytes, **kw: object) -> str:
        with self._count_lock:
            self.calls["put"] += 1
        return super().put(key, data, **kw)  # type: ignore[arg-type]

    def damage(self, key: str, offset: int) -> None:
        data = bytearray(super().get(key))
        data[offset] ^= 0xFF
        self.delete(key)
        super().put(key, bytes(data))


def files(n: int, size: int = SMALL) -> dict[str, bytes]:
    rnd = random.Random(n)
    return {f"d/f{i:04d}": rnd.randbytes(size) for i in range(n)}


def upload(objects: ObjectStore, contents: dict[str, bytes], **kw: int) -> dict[str, TreeEntry]:
    with Uploader(objects, CHUNK, threads=4, **kw) as up:
        queued = {path: up.add_bytes(data) for path, data in sorted(contents.items())}
        up.finish()
    return {p: c.entry(p.rsplit("/", 1)[-1], 0o644, 0) for p, c in queued.items()}


@contextlib.contextmanager
def packed_reader(
    tmp_path: Path, n: int, *, damage: str | None = None
) -> Iterator[tuple[CountingBackend, ChunkReader, dict[str, TreeEntry], dict[str, bytes]]]:
    """``n`` packed files and a reader with an empty cache; ``damage`` flips a byte of that
    file inside its pack. Request counts start at zero."""
    backend = CountingBackend()
    contents = files(n)
    entries = upload(ObjectStore(backend, "r"), contents)
    if damage is not None:
        victim = entries[damage]
        backend.damage(ObjectStore(backend, "r").key(victim.pack), victim.pack_offset + 3)
    cache = DiskCache(tmp_path / "cache")
    reader = ChunkReader(ObjectStore(backend, "r", cache), cache, CHUNK, threads=4)
    backend.calls.clear()
    try:
        yield backend, reader, entries, contents
    finally:
        reader.close()


def in_order(entries: dict[str, TreeEntry]) -> list[TreeEntry]:
    return [entries[p] for p in sorted(entries)]


def test_small_files_share_few_packs_and_big_ones_are_chunked() -> None:
    backend = CountingBackend()
    objects = ObjectStore(backend, "r")
    contents = files(40)
    contents["big"] = random.Random(1).randbytes(3 * CHUNK + 5)
    entries = upload(objects, contents, pack_target=150_000)
    packed = [e for p, e in entries.items() if p != "big"]
    assert all(e.pack and e.chunks == (e.sha256,) for e in packed)
    assert len({e.pack for e in packed}) == 3  # 40 x 10 kB in packs sealed at 150 kB
    assert not entries["big"].pack and len(entries["big"].chunks) == 4
    assert backend.calls["put"] == 3 + 4
    # Path order: each file starts where the one before it ended, unless a pack was sealed.
    ordered = sorted(packed, key=lambda e: e.name)
    for a, b in zip(ordered, ordered[1:], strict=False):
        if a.pack == b.pack:
            assert b.pack_offset == a.pack_offset + a.size
    for path, e in entries.items():
        data = b"".join(objects.file_chunk(e, i) for i in range(len(e.chunks)))
        assert data == contents[path]


def test_identical_small_files_are_stored_once() -> None:
    objects = ObjectStore(CountingBackend(), "r")
    same = b"x" * 500
    entries = upload(objects, {"a": same, "b": same, "c": b"y" * 500})
    assert (entries["a"].pack, entries["a"].pack_offset) == (
        entries["b"].pack,
        entries["b"].pack_offset,
    )
    assert entries["c"].pack_offset == 500
    again = upload(objects, {"d": same})  # a later upload by this process reuses the member
    assert (again["d"].pack, again["d"].pack_offset) == (entries["a"].pack, 0)


def test_content_is_unusable_before_finish() -> None:
    with Uploader(ObjectStore(MemoryBackend(), "r"), CHUNK) as up:
        content = up.add_bytes(b"abc")
        with pytest.raises(RuntimeError, match="finish"):
            content.entry("f", 0o644, 0)
        up.finish()
        assert content.entry("f", 0o644, 0).pack


def test_empty_file_has_no_chunks_and_no_pack() -> None:
    entries = upload(ObjectStore(MemoryBackend(), "r"), {"e": b""})
    assert entries["e"].chunks == () and not entries["e"].pack


def test_span_prefetch_fetches_neighbours_with_one_request(tmp_path: Path) -> None:
    with packed_reader(tmp_path, 60) as (backend, reader, entries, contents):
        reader.prefetch_files(in_order(entries), last=True)
        for path in sorted(entries):
            assert reader.read(entries[path], 0, SMALL + 1) == contents[path]
        assert backend.calls["get"] == 1  # 600 kB of neighbours: one span, one ranged read


def test_a_walk_looks_ahead_once_per_half_window(tmp_path: Path) -> None:
    """Opening files in name order scans the files after the opened one only when it lies
    past the first half of the last scan's window, and still fetches them all in spans."""
    size = 50_000  # packed (under CHUNK): a window is LOOKAHEAD_BYTES of them
    backend = CountingBackend()
    contents = files(1000, size)
    entries = upload(ObjectStore(backend, "r"), contents)
    cache = DiskCache(tmp_path / "cache")
    reader = ChunkReader(ObjectStore(backend, "r", cache), cache, CHUNK, threads=4)
    backend.calls.clear()
    order = sorted(entries)
    scans = 0
    try:
        for i, path in enumerate(order):
            if reader.lookahead_due(entries[path]):
                scans += 1
                reader.prefetch_files([entries[p] for p in order[i + 1 :]], last=True)
            assert reader.read(entries[path], 0, size) == contents[path]
    finally:
        reader.close()
    half_window = LOOKAHEAD_BYTES // 2 // size
    assert 2 <= scans <= len(order) // half_window + 2
    assert all(entries[p].pack for p in order)
    assert backend.calls["get"] <= len(order) // 20  # spans, not a request per file


def test_files_read_before_their_prefetch_lands_are_not_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a warm cache a reader may read files straight from it while their span prefetch
    is still loading them; the prefetch then neither loads nor keeps what was already read."""
    with packed_reader(tmp_path, 40) as (_, reader, entries, contents):
        for path in sorted(entries):  # warm the disk cache
            assert reader.read(entries[path], 0, SMALL) == contents[path]
        reader.close(wait=True)
    cache = DiskCache(tmp_path / "cache")
    reader = ChunkReader(ObjectStore(MemoryBackend(), "r", cache), cache, CHUNK, threads=2)
    gate = threading.Event()
    loaded: list[str] = []
    real_get = DiskCache.get

    def slow_get(self: DiskCache, oid: str) -> bytes | None:
        gate.wait(10)
        loaded.append(oid)
        return real_get(self, oid)

    monkeypatch.setattr(DiskCache, "get", slow_get)
    try:
        reader.prefetch_files(in_order(entries), last=True)
        for path in sorted(entries)[:30]:  # served by the cache while the span waits
            assert reader.read(entries[path], 0, SMALL) == contents[path]
        gate.set()
    finally:
        reader.close(wait=True)
    read = {entries[p].sha256 for p in sorted(entries)[:30]}
    assert not read & set(reader._recent.keys())
    assert len(set(loaded) & read) <= 1  # at most the member being loaded when reads began


def test_short_spans_wait_for_more_files_unless_last(tmp_path: Path) -> None:
    assert 5 * SMALL < SPAN_MIN
    with packed_reader(tmp_path, 5) as (backend, reader, entries, contents):
        reader.prefetch_files(in_order(entries), last=False)
        # Held back, more files may join the span: nothing queued, nothing fetched.
        assert reader.pending() == 0 and backend.calls["get"] == 0
        reader.prefetch_files(in_order(entries), last=True)  # the directory ends here
        for path in sorted(entries):
            assert reader.read(entries[path], 0, SMALL) == contents[path]
        assert backend.calls["get"] == 1


def test_damaged_member_is_an_error_and_its_neighbours_still_read(tmp_path: Path) -> None:
    with packed_reader(tmp_path, 30, damage="d/f0007") as (_, reader, entries, contents):
        victim = entries["d/f0007"]
        reader.prefetch_files(in_order(entries), last=True)
        for path in sorted(entries):
            if path == "d/f0007":
                with pytest.raises(CorruptObject):
                    reader.read(victim, 0, SMALL)
            else:
                assert reader.read(entries[path], 0, SMALL) == contents[path]
        assert reader.cache.get(victim.sha256) is None


def test_location_pointing_at_other_bytes_is_refused() -> None:
    backend = CountingBackend()
    objects = ObjectStore(backend, "r")
    entries = upload(objects, files(3))
    a, b = entries["d/f0000"], entries["d/f0001"]
    lying = TreeEntry(
        "x", "file", 0o644, 0, a.size, a.sha256, a.chunks, pack=b.pack, pack_offset=b.pack_offset
    )
    with pytest.raises(CorruptObject):
        ObjectStore(backend, "r").file_chunk(lying, 0)
    past_end = TreeEntry(
        "x", "file", 0o644, 0, a.size, a.sha256, a.chunks, pack=a.pack, pack_offset=10**9
    )
    with pytest.raises(CorruptObject):
        ObjectStore(backend, "r").file_chunk(past_end, 0)


def test_repacked_file_is_not_a_change_in_diff() -> None:
    repo = Store.init("memory://").create_repo("r", chunk_size=CHUNK)
    data = b"same bytes"
    first = upload(repo.objects, {"a": data})["a"]
    c1 = repo.commit("main", {"a": first}, "one")
    other_pack = repo.objects.put_bytes(b"12345" + data)  # a commit refers to stored objects
    moved = TreeEntry(
        "a", "file", first.mode, first.mtime_ns, first.size, first.sha256, first.chunks,
        pack=other_pack, pack_offset=5,
    )  # fmt: skip
    c2 = repo.commit("main", {"a": moved}, "same content, stored elsewhere")
    assert repo.diff(c1, c2).paths() == set()


def test_staged_move_of_a_packed_file_keeps_its_location_across_restarts(tmp_path: Path) -> None:
    moved = Staged("new/name", "file", 0o640, 5, None, 3, OID, (OID,), pack=OID2, pack_offset=77)
    plain = Staged("old", "file", 0o644, 6, None, 3, OID2, (OID2,))
    first = Staging(tmp_path / "area")
    first.put(moved)
    first.put(plain)
    again = Staging(tmp_path / "area")  # as after a crash: only what SQLite holds
    assert again.entries["new/name"] == moved
    assert again.entries["old"] == plain


def test_borrowed_reads_copy_the_same_bytes_as_plain_reads(tmp_path: Path) -> None:
    backend = CountingBackend()
    data = random.Random(3).randbytes(3 * CHUNK + 100)
    (entry,) = upload(ObjectStore(backend, "r"), {"big": data}).values()
    cache = DiskCache(tmp_path / "cache")
    reader = ChunkReader(ObjectStore(backend, "r", cache), cache, CHUNK, threads=2)
    try:
        for offset, size in [(0, 10), (5, CHUNK - 5), (CHUNK - 7, 20), (3 * CHUNK, 500), (0, 0)]:
            got = reader.read(entry, offset, size, borrow=True)
            out = ctypes.create_string_buffer(max(len(got), 1))
            ctypes.memmove(out, got, len(got))  # what the FUSE layer does with it
            assert out.raw[: len(got)] == data[offset : offset + size]
            assert reader.read(entry, offset, size) == data[offset : offset + size]
    finally:
        reader.close()


def test_files_of_a_span_read_correctly_while_it_is_written_to_the_cache(tmp_path: Path) -> None:
    """With 4 KiB chunks the in-memory chunks hold less than a span; a waiter released before
    the disk cache has its file must fetch it itself, not fail."""
    objects = ObjectStore(MemoryBackend(), "r")
    rnd = random.Random(1)
    contents = {f"f{i:04d}": rnd.randbytes(4000) for i in range(1000)}
    with Uploader(objects, 4096, threads=2) as up:
        queued = {p: up.add_bytes(d) for p, d in sorted(contents.items())}
        up.finish()
    entries = [c.entry(p, 0o644, 0) for p, c in sorted(queued.items())]
    reader = ChunkReader(objects, DiskCache(tmp_path / "cache"), 4096, threads=4)
    try:
        reader.prefetch_files(entries[1:], last=True)
        for e in entries[::37]:
            assert reader.read(e, 0, 4000) == contents[e.name]
    finally:
        reader.close()


def test_a_wrong_pack_location_does_not_spoil_other_files_with_that_content(
    tmp_path: Path,
) -> None:
    objects = ObjectStore(MemoryBackend(), "r")
    with Uploader(objects, CHUNK, pack_member_max=0) as up:  # stored as its own chunk object
        plain = up.add_bytes(b"x" * 5000)
        other = up.add_bytes(b"y" * 6000)
        up.finish()
    entry = plain.entry("plain", 0o644, 0)
    with Uploader(objects, CHUNK) as up:
        packed = up.add_bytes(b"z" * 100)
        up.finish()
    bad = replace(entry, name="bad", pack=packed.entry("p", 0o644, 0).pack, pack_offset=1)
    assert other.chunks  # a second object in the store, unrelated
    reader = ChunkReader(objects, DiskCache(tmp_path / "cache"), CHUNK, threads=2)
    try:
        with pytest.raises(CorruptObject):
            reader.read(bad, 0, 10)
        assert reader.read(entry, 0, 10) == b"x" * 10
    finally:
        reader.close()


def test_progress_counts_every_file_byte_once() -> None:
    seen: list[int] = []
    contents = files(30)
    contents["dup"] = contents["d/f0003"]  # stored once, but still part of the work done
    contents["big"] = random.Random(9).randbytes(2 * CHUNK + 1)
    with Uploader(ObjectStore(MemoryBackend(), "r"), CHUNK, progress=seen.append) as up:
        for data in contents.values():
            up.add_bytes(data)
        up.finish()
    assert sum(seen) == sum(len(d) for d in contents.values())


def test_a_pack_that_failed_to_store_is_not_reused_by_a_retry() -> None:
    class FailOnce(CountingBackend):
        failed = False

        def put(self, key: str, data: bytes, **kw: object) -> str:
            if "/objects/" in key and not self.failed:
                self.failed = True
                raise OSError("network down")
            return super().put(key, data, **kw)

    backend = FailOnce()
    objects = ObjectStore(backend, "r")
    with Uploader(objects, CHUNK) as up:
        up.add_bytes(b"hello")
        with pytest.raises(OSError):
            up.finish()
        again = up.add_bytes(b"hello")
        up.finish()
        entry = again.entry("f", 0o644, 0)
    assert objects.file_chunk(entry, 0) == b"hello"


def test_listing_a_directory_loads_its_subdirectories_ahead(tmp_path: Path) -> None:
    repo = Store.init("memory://").create_repo("r", chunk_size=CHUNK)
    entries = upload(repo.objects, {f"d{i}/f": b"x" * (i + 1) for i in range(5)})
    root = repo.objects.get(repo.commit_object(repo.commit("main", entries, "m")).tree, Tree)
    subtrees = [e.tree for e in root.entries]
    backend = CountingBackend()
    for key in repo.objects.backend.list(""):
        backend.put(key, repo.objects.backend.get(key))
    objects = ObjectStore(backend, "r")
    reader = ChunkReader(objects, DiskCache(tmp_path / "cache"), CHUNK, threads=2)
    reader.warm_trees(subtrees)
    for _ in range(500):  # up to about 5 s: close drops what is still queued
        if all(isinstance(objects._decoded.get(t), Tree) for t in subtrees):
            break
        threading.Event().wait(0.01)
    reader.close(wait=True)
    backend.calls.clear()
    assert [objects.get(t, Tree).entries[0].name for t in subtrees] == ["f"] * 5
    assert backend.calls["get"] == 0  # all five were loaded ahead
