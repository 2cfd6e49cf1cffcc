"""Reads through the API: every byte verified. A corrupt disk-cache entry is fetched again, a
corrupt stored object is ``CorruptObject``, and ``Repo.open`` gives a seekable file whose bytes
hash to what the commit records."""

from __future__ import annotations

import hashlib
import io
import os
import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from api_support import CHUNK, new_store

import s3fsv
from s3fsv.errors import CorruptObject, NotFound, UsageError
from s3fsv.store.store import Store as LowStore

BIG = random.Random(1).randbytes(3 * CHUNK + 123)  # four chunks
SMALL = b"a small file, stored in a pack with its neighbours\n"


@pytest.fixture
def commit(repo: s3fsv.Repo) -> str:
    with repo.transaction("main", message="data") as tx:
        tx.write("big", BIG)
        tx.write("small", SMALL)
        tx.write("other", b"another small file")
    assert tx.commit_id is not None
    return tx.commit_id


def eventually(check: Callable[[], bool], what: str) -> None:
    for _ in range(200):
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


def chunks_of(tmp_path: Path, commit: str, path: str) -> tuple[tuple[str, ...], str, int]:
    """(chunk ids, pack id or "", offset in the pack) of a committed file."""
    low = LowStore.open((tmp_path / "store").as_uri())
    try:
        entry = low.repo("r").stat(commit, path)
    finally:
        low.close()
    return entry.chunks, entry.pack, entry.pack_offset


def flip_byte(path: Path, offset: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0xFF
    path.write_bytes(bytes(raw))


def stored(tmp_path: Path, oid: str) -> Path:
    return tmp_path / "store" / "r" / "objects" / oid[:2] / oid[2:]


def cached(cache: Path, oid: str) -> Path:
    return cache / "objects" / oid[:2] / oid[2:]


def test_a_corrupt_cache_entry_is_fetched_again(
    tmp_path: Path, store: s3fsv.Store, repo: s3fsv.Repo, commit: str
) -> None:
    assert repo.read_many(commit, ["big", "small"]) == {"big": BIG, "small": SMALL}
    big, _, _ = chunks_of(tmp_path, commit, "big")
    small, _, _ = chunks_of(tmp_path, commit, "small")
    cache = tmp_path / "cache"
    for oid in (big[1], small[0]):
        # A fetch writes the cache after its reader has the bytes: wait for that write.
        eventually(lambda oid=oid: cached(cache, oid).exists(), f"cache entry {oid} written")
        flip_byte(cached(cache, oid), 5)
    with s3fsv.open_store(store.url, cache_dir=cache) as again:  # a new process would see this
        fresh = again.repo("r")
        assert fresh.read_bytes(commit, "big") == BIG
        assert fresh.read_bytes(commit, "small") == SMALL
    # Only the store had good bytes for this new handle: they were fetched again. The corrupt
    # entries are gone, or replaced by good bytes (written once the read has them).
    for oid, want in ((big[1], BIG[CHUNK : 2 * CHUNK]), (small[0], SMALL)):
        eventually(lambda oid=oid, want=want: entry_is(cache, oid, want), f"cache entry {oid}")


def entry_is(cache: Path, oid: str, want: bytes) -> bool:
    """Whether the cache entry of ``oid`` is absent or holds ``want``."""
    try:
        return cached(cache, oid).read_bytes()[: len(want)] == want
    except FileNotFoundError:
        return True


@pytest.mark.parametrize("which", ["chunk", "pack"])
def test_a_corrupt_stored_object_is_an_error_never_data(
    tmp_path: Path, store: s3fsv.Store, commit: str, which: str
) -> None:
    big, _, _ = chunks_of(tmp_path, commit, "big")
    small, pack, offset = chunks_of(tmp_path, commit, "small")
    if which == "chunk":
        bad_oid, path = big[2], "big"
        flip_byte(stored(tmp_path, bad_oid), 7)
    else:
        bad_oid, path = small[0], "small"
        flip_byte(stored(tmp_path, pack), offset + 3)
    cache = tmp_path / "fresh-cache"
    with s3fsv.open_store(store.url, cache_dir=cache) as again:
        repo = again.repo("r")
        with pytest.raises(CorruptObject):
            repo.read_bytes(commit, path)
        with pytest.raises(CorruptObject):
            repo.read_many(commit, ["other", path])
        with repo.open(commit, path) as fh, pytest.raises(CorruptObject):
            fh.seek(2 * CHUNK + 10 if which == "chunk" else 0)
            fh.read(10)
        if which == "chunk":  # ranges that need only good chunks still read
            with repo.open(commit, "big") as fh:  # unbuffered: chunks smaller than a buffer
                fh.raw.seek(CHUNK - 5)
                assert fh.raw.read(CHUNK + 4) == BIG[CHUNK - 5 : CHUNK]  # short, at a chunk end
                assert fh.raw.read(CHUNK - 1) == BIG[CHUNK : 2 * CHUNK - 1]
        assert repo.read_bytes(commit, "other") == b"another small file"
    assert not cached(cache, bad_oid).exists()  # bad bytes are never cached


def test_buffered_reads_fetch_no_chunk_they_do_not_need(tmp_path: Path) -> None:
    """A small read near a chunk's end: the buffer's read-ahead must not fetch the next chunk
    (here, a corrupt one, which would fail the read). Chunks larger than the buffer, as
    real ones are."""
    chunk = 2 * 1024 * 1024
    data = random.Random(3).randbytes(3 * chunk)
    with new_store(tmp_path, chunk_size=chunk) as opened:
        repo = opened.repo("r")
        with repo.transaction("main", message="big") as tx:
            tx.write("f", data)
        bad = chunks_of(tmp_path, repo.resolve("main"), "f")[0][1]
        flip_byte(stored(tmp_path, bad), 0)
        with repo.open("main", "f") as fh:
            fh.seek(chunk - 100)
            assert fh.read(10) == data[chunk - 100 : chunk - 90]
            assert fh.read(90) == data[chunk - 90 : chunk]
            with pytest.raises(CorruptObject):
                fh.read(1)


def test_open_gives_a_seekable_binary_file(repo: s3fsv.Repo, commit: str) -> None:
    info = repo.stat(commit, "big")
    assert (info.kind, info.size) == ("file", len(BIG))
    with repo.open(commit, "big") as fh:
        assert fh.readable() and fh.seekable() and not fh.writable()
        with pytest.raises(io.UnsupportedOperation):
            fh.write(b"x")
        raw = fh.raw
        assert isinstance(raw, s3fsv.RepoFile)
        assert (raw.size, raw.sha256) == (info.size, info.sha256)
        assert fh.read(10) == BIG[:10] and fh.tell() == 10
        assert fh.seek(CHUNK - 2) == CHUNK - 2
        assert fh.read(4) == BIG[CHUNK - 2 : CHUNK + 2]
        assert fh.seek(-5, os.SEEK_END) == len(BIG) - 5
        assert fh.read() == BIG[-5:] and fh.read(3) == b""
        assert fh.seek(len(BIG) + 100) == len(BIG) + 100
        assert fh.read(10) == b""
        fh.seek(100)
        assert fh.seek(50, os.SEEK_CUR) == 150
        buffer = bytearray(CHUNK * 2)
        assert fh.readinto(buffer) == len(buffer) and bytes(buffer) == BIG[150 : 150 + len(buffer)]
        with pytest.raises((OSError, ValueError)):
            fh.seek(-1)
    with pytest.raises(ValueError):
        fh.read(1)  # closed


@pytest.mark.parametrize("buffered", [True, False])
def test_what_a_file_returns_hashes_to_its_entry(
    repo: s3fsv.Repo, commit: str, buffered: bool
) -> None:
    """``sha256sum`` of an opened file: read in pieces of any size, with readinto and read."""
    rnd = random.Random(2)
    for path in ("big", "small"):
        want = repo.stat(commit, path).sha256
        digest = hashlib.sha256()
        with repo.open(commit, path) as fh:
            f = fh if buffered else fh.raw
            view = memoryview(bytearray(CHUNK + 7))
            while True:
                n = rnd.choice([1, 100, CHUNK - 1, CHUNK + 7])
                if rnd.random() < 0.5:
                    got = f.readinto(view[:n])
                    piece = bytes(view[:got])
                else:
                    piece = f.read(n)
                if not piece:
                    break
                digest.update(piece)
        assert digest.hexdigest() == want


def test_reads_of_what_is_not_a_file(tmp_path: Path, repo: s3fsv.Repo) -> None:
    local = tmp_path / "local"
    (local / "sub").mkdir(parents=True)
    (local / "sub" / "f").write_bytes(b"target")
    os.symlink("sub/f", local / "link")
    os.symlink("../../outside", local / "escape")
    with repo.transaction("main", message="links") as tx:
        assert tx.upload(local, "d") == 1
    assert repo.read_bytes("main", "d/link") == b"target"  # followed inside the snapshot
    link = repo.stat("main", "d/link")
    assert (link.kind, link.target, link.name) == ("link", "sub/f", "link")
    with pytest.raises(UsageError):
        repo.read_bytes("main", "d/escape")
    with pytest.raises(UsageError):
        repo.read_bytes("main", "d/sub")
    with pytest.raises(NotFound):
        repo.read_bytes("main", "d/nothing")
    with pytest.raises(NotFound):
        repo.open("main~5", "d/link")
    assert [e.path for e in repo.ls("main", "d")] == ["d/escape", "d/link", "d/sub"]
    assert [e.path for e in repo.walk("main")] == ["d", "d/escape", "d/link", "d/sub", "d/sub/f"]
