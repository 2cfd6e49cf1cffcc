"""Early uploads of staged files being written, without FUSE: what is uploaded when, and that
a commit never depends on them being right."""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from s3fsv.mount.write_behind import WriteBehind
from s3fsv.store.objects import TreeEntry
from s3fsv.store.objectstore import ObjectStore
from s3fsv.store.upload import Uploader, upload_files
from tests.store.test_packs import CountingBackend

CHUNK = 64 * 1024


@contextlib.contextmanager
def following(
    tmp_path: Path, threads: int = 4
) -> Iterator[tuple[CountingBackend, ObjectStore, WriteBehind]]:
    """A write-behind over data files in ``tmp_path`` storing to a counting backend."""
    backend = CountingBackend()
    objects = ObjectStore(backend, "r")
    wb = WriteBehind(objects, CHUNK, lambda name: tmp_path / name, threads=threads)
    try:
        yield backend, objects, wb
    finally:
        wb.close()


def write(path: Path, wb: WriteBehind, data: bytes, offset: int) -> None:
    """What the overlay does for one write."""
    token = wb.will_write(path.name, offset)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        n = os.pwrite(fd, data, offset)
    finally:
        os.close(fd)
    wb.wrote(path.name, n, token)


def commit_puts(
    objects: ObjectStore, backend: CountingBackend, path: Path, wb: WriteBehind | None = None
) -> tuple[int, TreeEntry]:
    """Upload ``path`` the way a commit does; return (PUTs it made, the file's entry)."""
    backend.calls.clear()
    early = (lambda _, up: wb.content(path.name, up)) if wb is not None else None
    ((content, _),) = upload_files(objects, CHUNK, {"f": path}, threads=2, early=early).values()
    return backend.calls["put"], content.entry("f", 0o644, 0)


def test_sequential_writes_upload_finished_chunks_and_the_commit_skips_them(
    tmp_path: Path,
) -> None:
    with following(tmp_path, threads=2) as (backend, objects, wb):
        data = random.Random(1).randbytes(3 * CHUNK + 1000)
        wb.started("f")
        for off in range(0, len(data), 10_000):
            write(tmp_path / "f", wb, data[off : off + 10_000], off)
        wb.flush()
        wb.settle(["f"])
        assert backend.calls["put"] == 3  # the three full chunks; the tail waits for the commit
        puts, entry = commit_puts(objects, backend, tmp_path / "f")
        assert puts == 1  # only the tail
        assert entry.sha256 == hashlib.sha256(data).hexdigest()
        puts, fast = commit_puts(objects, backend, tmp_path / "f", wb)
        assert puts == 0 and fast == entry  # the early ids, without hashing chunks again


def test_the_commit_reads_only_the_tail_of_a_followed_file(tmp_path: Path) -> None:
    with following(tmp_path, threads=2) as (backend, objects, wb):
        data = random.Random(5).randbytes(3 * CHUNK + 1000)
        path = tmp_path / "f"
        wb.started("f")
        for off in range(0, len(data), 10_000):
            write(path, wb, data[off : off + 10_000], off)
        wb.flush()
        wb.settle(["f"])
        # Scribble over the early chunks behind the follower's back (the overlay never lets
        # this happen): a commit that re-read them would record a different hash.
        st = path.stat()
        with open(path, "r+b") as fh:
            fh.write(bytes(3 * CHUNK))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        puts, entry = commit_puts(objects, backend, path, wb)
        assert puts == 1  # the tail
        assert entry.sha256 == hashlib.sha256(data).hexdigest()
        assert entry.size == len(data)


def test_an_overwrite_stops_early_uploads_and_the_commit_records_the_new_bytes(
    tmp_path: Path,
) -> None:
    with following(tmp_path, threads=2) as (backend, objects, wb):
        data = bytearray(random.Random(2).randbytes(2 * CHUNK))
        wb.started("f")
        write(tmp_path / "f", wb, bytes(data[:CHUNK]), 0)
        wb.flush()  # chunk 0 is stored early
        data[5:9] = b"XXXX"
        write(tmp_path / "f", wb, b"XXXX", 5)  # not where the last write ended: stop following
        write(tmp_path / "f", wb, bytes(data[CHUNK:]), CHUNK)
        wb.settle(["f"])
        assert backend.calls["put"] == 1
        assert wb.content("f", Uploader(objects, CHUNK)) is None  # no longer followed
        puts, _ = commit_puts(objects, backend, tmp_path / "f")
        assert puts == 2  # both chunks: the early one no longer matches the file
        stored = b"".join(
            backend.get(objects.key(oid))
            for oid in upload_files(objects, CHUNK, {"f": tmp_path / "f"})["f"][0].chunks
        )
        assert stored == bytes(data)


def test_settle_leaves_no_chunk_uploaded_twice(tmp_path: Path) -> None:
    with following(tmp_path, threads=1) as (backend, objects, wb):
        data = random.Random(3).randbytes(20 * CHUNK)
        wb.started("f")
        write(tmp_path / "f", wb, data, 0)
        wb.settle(["f"])
        early = backend.calls["put"]
        puts, entry = commit_puts(objects, backend, tmp_path / "f", wb)
        assert early + puts == 20  # whatever was cancelled or done, nothing was stored twice
        # The digest the early uploads fed stops at the first cancelled chunk; the commit
        # hashes on from there.
        assert entry.sha256 == hashlib.sha256(data).hexdigest()


def test_unfollowed_and_truncated_files_are_not_uploaded_early(tmp_path: Path) -> None:
    with following(tmp_path, threads=4) as (backend, objects, wb):
        write(tmp_path / "copied-up", wb, b"x" * (2 * CHUNK), 0)  # never started: not followed
        wb.started("t")
        write(tmp_path / "t", wb, b"y" * 100, 0)
        wb.will_truncate("t", 10)
        write(tmp_path / "t", wb, b"y" * (2 * CHUNK), 10)
        wb.flush()
        assert backend.calls["put"] == 0


def test_content_gives_up_while_a_write_is_in_progress_or_after_any_change(
    tmp_path: Path,
) -> None:
    with following(tmp_path, threads=2) as (backend, objects, wb):
        data = random.Random(4).randbytes(2 * CHUNK + 7)
        with Uploader(objects, CHUNK) as up:
            wb.started("f")
            write(tmp_path / "f", wb, data, 0)
            wb.flush()
            token = wb.will_write("f", len(data))  # an append has begun and not ended
            assert wb.content("f", up) is None
            wb.wrote("f", 0, token)
            got = wb.content("f", up)
            assert got is not None
            up.finish()
            assert got.sha256 == hashlib.sha256(data).hexdigest()
            wb.will_truncate("f", 5)  # any change but an append at the end stops following
            assert wb.content("f", up) is None


class _SlowHash:
    """A SHA-256 whose updates announce themselves and take a while."""

    feeding = threading.Event()

    def __init__(self) -> None:
        self.inner = hashlib.sha256()

    def update(self, data: bytes) -> None:
        self.inner.update(data)
        _SlowHash.feeding.set()
        time.sleep(0.3)  # fed, but not yet counted

    def copy(self) -> Any:
        return self.inner.copy()


def test_content_never_copies_a_digest_halfway_through_a_chunk(tmp_path: Path) -> None:
    _SlowHash.feeding.clear()
    with following(tmp_path, threads=2) as (backend, objects, wb):
        data = random.Random(6).randbytes(CHUNK + 10)
        wb.started("f")
        wb._files["f"].digest = _SlowHash()
        write(tmp_path / "f", wb, data, 0)
        assert _SlowHash.feeding.wait(10)  # chunk 0 is being fed into the file's digest now
        with Uploader(objects, CHUNK) as up:
            got = wb.content("f", up)
            up.finish()
        assert got is not None and got.sha256 == hashlib.sha256(data).hexdigest()


def test_a_chunk_that_fails_before_its_turn_does_not_block_the_next(tmp_path: Path) -> None:
    objects = ObjectStore(CountingBackend(), "r")
    calls = []

    def path_of(name: str) -> Path:
        calls.append(name)
        if len(calls) == 1:
            raise FileNotFoundError(name)  # chunk 0: its data file vanished
        return tmp_path / name

    wb = WriteBehind(objects, CHUNK, path_of, threads=2)
    try:
        wb.started("f")
        write(tmp_path / "f", wb, random.Random(7).randbytes(3 * CHUNK), 0)
        done = threading.Thread(target=wb.flush, daemon=True)
        done.start()
        done.join(10)
        assert not done.is_alive()  # chunks 1 and 2 did not wait for chunk 0 forever
    finally:
        wb.forget(["f"])  # releases any waiter, so that a failure here cannot hang close()
        wb.close()


def test_resuming_past_the_end_of_a_shrunk_file_is_a_changed_file(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * (2 * CHUNK))
    with Uploader(ObjectStore(CountingBackend(), "r"), CHUNK) as up, pytest.raises(OSError):
        up.add_file(path, resume=(hashlib.sha256(), 3 * CHUNK))


def test_a_write_from_before_a_restart_stops_following(tmp_path: Path) -> None:
    with following(tmp_path, threads=4) as (backend, objects, wb):
        wb.started("f")
        token = wb.will_write("f", 0)
        wb.started("f")  # reopened with O_TRUNC while that write was under way
        wb.wrote("f", 2 * CHUNK, token)
        wb.flush()
        assert backend.calls["put"] == 0
        assert wb.content("f", Uploader(ObjectStore(backend, "r"), CHUNK)) is None
