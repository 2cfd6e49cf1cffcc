"""Pooled, page-aligned chunk buffers (``s3fsv.store.buffers``) and their path through the reader:
store -> ``read_into`` -> SHA-256 -> disk cache (``O_DIRECT`` without staging) -> a borrowed
FUSE reply."""

from __future__ import annotations

import ctypes
import gc
import hashlib
import os
import threading
import time
from pathlib import Path

import pytest

from s3fsv.errors import CorruptObject
from s3fsv.store.backend.file import FileBackend
from s3fsv.store.buffers import PAGE, POOLED_MIN, BufferPool, aligned_address
from s3fsv.store.cache import DiskCache
from s3fsv.store.objects import TreeEntry, sha256_hex
from s3fsv.store.objectstore import ObjectStore
from s3fsv.store.reader import Borrowed, ChunkReader, Sequential

MiB = 1024 * 1024


def test_chunks_are_aligned_bytes_like_and_exact_size() -> None:
    pool = BufferPool()
    chunk = pool.take(MiB + 5)
    address = aligned_address(chunk)
    assert address is not None and address % PAGE == 0
    assert len(chunk) == MiB + 5
    view = memoryview(chunk).cast("B")
    view[:] = os.urandom(len(chunk))
    data = bytes(view)
    view.release()
    assert chunk[10:20] == data[10:20] and isinstance(chunk[10:20], bytes)
    assert hashlib.sha256(chunk).hexdigest() == hashlib.sha256(data).hexdigest()
    assert b"".join([memoryview(chunk)[:3], b"x"]) == data[:3] + b"x"
    assert aligned_address(data) is None


def test_memory_returns_to_the_pool_only_when_unreferenced() -> None:
    pool = BufferPool()
    chunk = pool.take(2 * MiB)
    first = aligned_address(chunk)
    lent = memoryview(chunk)  # e.g. a FUSE reply being copied
    del chunk
    gc.collect()
    assert pool.idle_bytes() == 0
    lent.release()
    del lent
    assert pool.idle_bytes() == 2 * MiB
    again = pool.take(2 * MiB - 100)  # same capacity class: the same memory
    assert aligned_address(again) == first
    assert pool.idle_bytes() == 0


def test_idle_memory_is_bounded() -> None:
    pool = BufferPool(max_idle_bytes=MiB)
    held = [pool.take(MiB), pool.take(MiB)]
    del held
    assert pool.idle_bytes() == MiB


def test_store_chunks_land_in_the_pool_and_are_verified(tmp_path: Path) -> None:
    backend = FileBackend(str(tmp_path / "store"))
    objects = ObjectStore(backend, "r")
    big, small = os.urandom(3 * MiB + 123), os.urandom(POOLED_MIN - 1)
    big_id, small_id = objects.put_bytes(big), objects.put_bytes(small)
    got = objects.fetch_chunk(big_id)
    assert aligned_address(got) is not None and bytes(got) == big
    assert objects.fetch_chunk(small_id) == small
    # A value that does not match its name is refused, never returned.
    backend.delete(objects.key(big_id))
    backend.put(objects.key(big_id), big[:-1] + b"!")
    with pytest.raises(CorruptObject):
        objects.fetch_chunk(big_id)


def test_cache_writes_pooled_chunks_directly(tmp_path: Path) -> None:
    """A pooled chunk goes to disk with O_DIRECT straight from its own memory (no staging
    buffer is ever made) and reads back exactly, also in a fresh process's view."""
    pool = BufferPool()
    data = os.urandom(2 * MiB + 4096 + 77)
    chunk = pool.take(len(data))
    memoryview(chunk).cast("B")[:] = data
    cache = DiskCache(tmp_path / "c")
    oid = sha256_hex(data)
    cache.put(oid, chunk)
    assert getattr(cache._local, "buf", None) is None
    assert DiskCache(tmp_path / "c").get(oid) == data
    assert cache.pread(oid, 100, len(data) - 50) == data[-50:]


def test_reader_lends_pooled_chunks_to_fuse(tmp_path: Path) -> None:
    """What FUSE copies out of a borrowed range (through its ctypes pointer) is the file's
    bytes, for ranges inside one chunk and across two."""
    backend = FileBackend(str(tmp_path / "store"))
    objects = ObjectStore(backend, "r")
    chunk_size = 2 * MiB
    data = os.urandom(2 * chunk_size + 999)
    ids = [objects.put_bytes(data[i : i + chunk_size]) for i in range(0, len(data), chunk_size)]
    cache = DiskCache(tmp_path / "cache")
    reader = ChunkReader(ObjectStore(backend, "r", cache), cache, chunk_size, threads=2)
    entry = _file_entry(ids, data)
    try:
        for offset, size in ((5, 4096), (chunk_size - 100, 300), (len(data) - 10, 4096)):
            got = reader.read(entry, offset, size, borrow=True)
            want = data[offset : offset + size]
            if isinstance(got, Borrowed):
                assert ctypes.string_at(got, len(got)) == want
            else:
                assert got == want
    finally:
        reader.close(wait=True)


def _file_entry(ids: list[str], data: bytes) -> TreeEntry:
    return TreeEntry("f", "file", 0o644, 0, len(data), sha256_hex(data), tuple(ids))


def test_sequential_reads_release_the_chunks_they_left_behind(tmp_path: Path) -> None:
    """Chunks a sequential reader has passed leave memory once the disk cache holds them, so
    a long read keeps a window's worth of buffers, not the whole in-memory budget."""
    backend = FileBackend(str(tmp_path / "store"))
    objects = ObjectStore(backend, "r")
    data = os.urandom(12 * MiB)
    ids = [objects.put_bytes(data[i : i + MiB]) for i in range(0, len(data), MiB)]
    cache = DiskCache(tmp_path / "cache")
    reader = ChunkReader(ObjectStore(backend, "r", cache), cache, MiB, threads=2)
    entry = _file_entry(ids, data)
    seq = Sequential()
    step = 256 * 1024
    try:
        for offset in range(0, len(data), step):
            seq.advise(reader, entry, offset, step)
            assert reader.read(entry, offset, step) == data[offset : offset + step]
    finally:
        reader.close(wait=True)
    assert all(cache.holds(oid) for oid in ids)
    assert not set(ids[:-2]) & set(reader._recent.keys())


def test_memory_given_back_while_the_pool_is_busy_does_not_deadlock() -> None:
    """A chunk may die anywhere, even inside the cycle collector while this very thread holds
    the pool's lock; giving its memory back must not wait for that lock."""
    pool = BufferPool()
    chunk = pool.take(MiB)
    done = threading.Event()

    def drop_while_locked() -> None:
        nonlocal chunk
        with pool._lock:
            del chunk  # the finalizer runs here, in this thread
        done.set()

    worker = threading.Thread(target=drop_while_locked, daemon=True)
    worker.start()
    worker.join(5)
    assert done.is_set()
    assert pool.idle_bytes() == MiB


def test_a_footer_read_keeps_a_large_file_in_memory(tmp_path: Path) -> None:
    """Reading only the tail of a one-chunk file (formats with a footer do that first) keeps
    the chunk in memory for the reads that follow; a whole-file read releases it."""
    backend = FileBackend(str(tmp_path / "store"))
    objects = ObjectStore(backend, "r")
    data = os.urandom(2 * MiB)
    oid = objects.put_bytes(data)
    cache = DiskCache(tmp_path / "cache")
    reader = ChunkReader(ObjectStore(backend, "r", cache), cache, 4 * MiB, threads=2)
    entry = _file_entry([oid], data)
    try:
        assert reader.read(entry, len(data) - 100, 100) == data[-100:]
        deadline = time.monotonic() + 10  # until the fetch has cached it and settled
        while not cache.stored(oid) or oid in reader._passed:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert oid in reader._recent
        assert reader.read(entry, 0, len(data)) == data
    finally:
        reader.close(wait=True)  # the cache write, which the release waits for, is done
    assert oid not in reader._recent
