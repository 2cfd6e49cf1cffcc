"""Corrupted, truncated and hostile stored data, uninitialised stores, stores that ignore
conditional writes, and invalid names: each is refused with a clear error, never read as data."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from s3fsv.errors import (
    AlreadyExists,
    CorruptObject,
    InvalidName,
    NotADirectory,
    NotFound,
    UnsupportedStore,
)
from s3fsv.store import transfer
from s3fsv.store.backend.base import Backend, ObjectInfo
from s3fsv.store.backend.memory import MemoryBackend
from s3fsv.store.objects import Commit, Tree, TreeEntry, canonical_json, encode, sha256_hex
from s3fsv.store.repo import Repository
from s3fsv.store.store import MARKER, Store, probe_conditional_writes
from s3fsv.store.upload import Uploader

CHUNK = 4096
# 10240 distinct-looking bytes: three different chunks, the last one short.
DATA = b"".join(hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(320))


def new_url() -> str:
    return f"memory://bad-input-{uuid.uuid4().hex}"


@pytest.fixture
def url() -> str:
    return new_url()


@pytest.fixture
def repo(url: str) -> Repository:
    return Store.init(url).create_repo("r", chunk_size=CHUNK)


def reopen(url: str) -> Repository:
    """A new Repository on the same store: nothing cached from the writer."""
    return Store.open(url).repo("r")


def commit_file(repo: Repository, path: str = "dir/file.bin", data: bytes = DATA) -> str:
    with Uploader(repo.objects, CHUNK, threads=2) as up:
        content = up.add_bytes(data)
        up.finish()
    entry = content.entry(path.rsplit("/", 1)[-1], 0o644, 0)
    return repo.commit("main", {path: entry}, "add file")


def commit_tree(repo: Repository, tree_bytes: bytes, branch: str = "hostile") -> str:
    """Store raw tree bytes under their real hash and point a new branch's commit at them."""
    tree_id = repo.objects.put_bytes(tree_bytes)
    assert tree_id == sha256_hex(tree_bytes)
    commit = Commit(tree_id, (repo.resolve("main"),), "mallory", "2024-01-01T00:00:00Z", "evil")
    cid = repo.objects.put(commit)
    repo.refs.create_branch(branch, cid)
    return cid


def assert_corrupt(info: pytest.ExceptionInfo[CorruptObject], key: str, *words: str) -> None:
    err = info.value
    assert err.key == key
    assert key in str(err)
    for word in words:
        assert word in str(err), str(err)


def test_a_failed_download_names_the_file_and_what_was_written(
    url: str, repo: Repository, tmp_path: Path
) -> None:
    commit_file(repo, "a/1-good.bin", DATA[:100])
    cid = commit_file(repo, "a/2-bad.bin")
    victim = repo.stat(cid, "a/2-bad.bin").chunks[1]
    repo.backend.put(repo.objects.key(victim), b"garbage")
    with pytest.raises(CorruptObject) as info:  # one thread: the files in name order
        transfer.get(reopen(url), cid, "a", tmp_path / "out", threads=1)
    message = str(info.value)
    assert f"(downloading {tmp_path / 'out/2-bad.bin'})" in message
    assert "1 of 2 file(s) were downloaded" in message and "\n" not in message
    assert (tmp_path / "out/1-good.bin").read_bytes() == DATA[:100]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["1-good.bin"]  # no part file


# -- chunks ------------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["flip", "truncate", "extend", "replace"])
def test_corrupted_chunk_is_never_returned(url: str, repo: Repository, damage: str) -> None:
    cid = commit_file(repo)
    entry = repo.stat(cid, "dir/file.bin")
    assert len(entry.chunks) == 3
    victim = entry.chunks[1]
    key = repo.objects.key(victim)
    good = repo.backend.get(key)
    bad = {
        "flip": good[:100] + bytes([good[100] ^ 1]) + good[101:],
        "truncate": good[:-1],
        "extend": good + b"\0",
        "replace": b"garbage",
    }[damage]
    repo.backend.put(key, bad)

    fresh = reopen(url)
    entry = fresh.stat(cid, "dir/file.bin")
    # Ranges entirely within intact chunks still read correctly.
    assert fresh.read_range(entry, 0, CHUNK) == DATA[:CHUNK]
    assert fresh.read_range(entry, 2 * CHUNK, 10) == DATA[2 * CHUNK : 2 * CHUNK + 10]
    for offset, size in [(0, len(DATA)), (CHUNK, 1), (CHUNK - 1, 2), (2 * CHUNK - 1, 1)]:
        with pytest.raises(CorruptObject) as info:
            fresh.read_range(entry, offset, size)
        assert_corrupt(info, key, "hash")
    with pytest.raises(CorruptObject) as info:
        b"".join(fresh.read_file(entry))
    assert_corrupt(info, key)
    with pytest.raises(CorruptObject):
        fresh.objects.get_bytes(victim)


def test_listing_a_file_is_not_a_directory(repo: Repository) -> None:
    cid = commit_file(repo)
    with pytest.raises(NotADirectory, match="dir/file.bin"):
        repo.listdir(cid, "dir/file.bin")
    with pytest.raises(NotADirectory):
        repo.stat(cid, "dir/file.bin/below")
    with pytest.raises(NotFound):
        repo.listdir(cid, "dir/missing")


def test_missing_chunk_is_not_found(url: str, repo: Repository) -> None:
    cid = commit_file(repo)
    entry = repo.stat(cid, "dir/file.bin")
    repo.backend.delete(repo.objects.key(entry.chunks[0]))
    with pytest.raises(NotFound, match=entry.chunks[0]):
        reopen(url).read_range(entry, 0, 10)


def _file_entry(name: str, size: int, chunks: tuple[str, ...]) -> dict[str, Any]:
    return {
        "name": name,
        "type": "file",
        "mode": 0o644,
        "mtime": 0,
        "size": size,
        "sha256": "0" * 64,
        "chunks": list(chunks),
    }


def test_file_entry_inconsistent_with_its_chunks_is_refused(url: str, repo: Repository) -> None:
    """A (re-hashed, so well-formed) tree whose file entries disagree with their chunks: reads
    raise CorruptObject, whatever the offset, instead of crashing or returning wrong bytes."""
    full = repo.objects.put_bytes(b"a" * CHUNK)
    double = repo.objects.put_bytes(b"b" * (2 * CHUNK))
    short = repo.objects.put_bytes(b"c" * 10)
    entries = [
        _file_entry("double", 2 * CHUNK, (double,)),  # one chunk twice the chunk size
        _file_entry("few", 3 * CHUNK, (full,)),  # size needs three chunks, lists one
        _file_entry("short", 2 * CHUNK, (short, full)),  # a short chunk that is not the last
        _file_entry("tail", 10, (full,)),  # the last chunk longer than the file's end
    ]
    tree = canonical_json({"type": "tree", "v": 1, "entries": entries})
    cid = commit_tree(repo, tree)
    fresh = reopen(url)
    by_name = {e.name: e for e in fresh.listdir(cid)}
    for name, offset in [("double", 0), ("double", CHUNK), ("few", CHUNK), ("few", 0)]:
        with pytest.raises(CorruptObject, match=name):
            fresh.read_range(by_name[name], offset, 3 * CHUNK)
    with pytest.raises(CorruptObject) as info:
        fresh.read_range(by_name["short"], 0, 20)
    assert_corrupt(info, fresh.objects.key(short), "short", "10 bytes")
    with pytest.raises(CorruptObject):
        fresh.read_range(by_name["tail"], 0, 5)


# -- trees --------------------------------------------------------------------------------------


def test_truncated_tree_object_fails_its_hash(url: str, repo: Repository) -> None:
    cid = commit_file(repo)
    dir_tree = repo.stat(cid, "dir").tree
    key = repo.objects.key(dir_tree)
    repo.backend.put(key, repo.backend.get(key)[:-5])
    fresh = reopen(url)
    for read in (
        lambda: fresh.stat(cid, "dir/file.bin"),
        lambda: list(fresh.listdir(cid, "dir")),
        lambda: list(fresh.walk(cid)),
    ):
        with pytest.raises(CorruptObject) as info:
            read()
        assert_corrupt(info, key, "does not match its hash")


def test_truncated_tree_under_its_own_hash_fails_decoding(url: str, repo: Repository) -> None:
    cid = commit_file(repo)
    whole = encode(repo.objects.get(repo.commit_object(cid).tree, Tree))
    hostile = commit_tree(repo, whole[:-7])
    key = repo.objects.key(sha256_hex(whole[:-7]))
    with pytest.raises(CorruptObject) as info:
        list(reopen(url).walk(hostile))
    assert_corrupt(info, key, "not a valid object")


@pytest.mark.parametrize("name", ["..", ".", "a/b", "x\x00y", "/etc"])
def test_hostile_tree_entry_is_refused(url: str, repo: Repository, name: str) -> None:
    blob = repo.objects.put_bytes(b"owned")
    entry = _file_entry(name, 5, (blob,))
    tree = canonical_json({"type": "tree", "v": 1, "entries": [entry]})
    key = repo.objects.key(sha256_hex(tree))
    cid = commit_tree(repo, tree)
    fresh = reopen(url)
    for read in (lambda: list(fresh.listdir(cid)), lambda: list(fresh.walk(cid))):
        with pytest.raises(CorruptObject) as info:
            read()
        assert_corrupt(info, key, "hostile tree entry", "invalid name")
    # Nested one level down: reached through an honest parent directory.
    inner = sha256_hex(tree)
    outer = canonical_json(
        {
            "type": "tree",
            "v": 1,
            "entries": [{"name": "d", "type": "dir", "mode": 0o755, "mtime": 0, "tree": inner}],
        }
    )
    nested = commit_tree(repo, outer, branch="nested")
    with pytest.raises(CorruptObject) as info:
        reopen(url).stat(nested, "d/x")
    assert_corrupt(info, key, "hostile")


def test_hostile_page_reference_is_refused(url: str, repo: Repository) -> None:
    page_id = "ab" * 32
    tree = canonical_json(
        {"type": "tree", "v": 1, "pages": [{"first": "../up", "count": 1, "id": page_id}]}
    )
    cid = commit_tree(repo, tree)
    with pytest.raises(CorruptObject, match="hostile"):
        list(reopen(url).walk(cid))


def test_object_of_the_wrong_type_is_refused(url: str, repo: Repository) -> None:
    cid = commit_file(repo)
    tree_id = repo.commit_object(cid).tree
    # A tree where a commit is expected, and a commit where a tree is expected.
    repo.refs.create_branch("points-at-tree", tree_id)
    with pytest.raises(CorruptObject, match="expected a commit"):
        list(reopen(url).log("points-at-tree"))
    bogus = Commit(cid, (), "a", "t", "commit id used as a tree")
    bad = repo.objects.put(bogus)
    repo.refs.create_branch("tree-is-commit", bad)
    with pytest.raises(CorruptObject, match="expected a tree"):
        list(reopen(url).walk(bad))


# -- refs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"garbage",
        b"\xff\xfe\x00",
        b"",
        b"[]",
        b'{"commit": 5}',
        b'{"commit": "not-a-hex-id"}',
        b'{"commit": "' + b"A" * 64 + b'"}',
        b'{"sha": "' + b"a" * 64 + b'"}',
    ],
)
def test_ref_pointing_to_garbage_is_corrupt(url: str, repo: Repository, body: bytes) -> None:
    key = "r/refs/branches/main"
    repo.backend.put(key, body)
    fresh = reopen(url)
    with pytest.raises(CorruptObject) as info:
        fresh.resolve("main")
    assert_corrupt(info, key, "ref")
    with pytest.raises(CorruptObject):
        fresh.refs.branches()


def test_ref_to_a_missing_commit_is_not_found(url: str, repo: Repository) -> None:
    repo.backend.put("r/refs/branches/main", canonical_json({"commit": "cd" * 32}))
    with pytest.raises(NotFound, match="cd" * 32):
        list(reopen(url).log("main"))


# -- stores ---------------------------------------------------------------------------------------


def test_open_uninitialised_store_says_to_run_init() -> None:
    url = new_url()
    with pytest.raises(NotFound) as info:
        Store.open(url)
    assert "s3fsv init" in str(info.value)
    assert url in str(info.value)


@pytest.mark.parametrize(
    "marker, word",
    [
        (b"not json", "marker"),
        (b'{"format":"zfs"}', "marker"),
        (b'{"format":"s3fsv","version":99}', "version"),
    ],
)
def test_foreign_store_marker_is_unsupported(marker: bytes, word: str) -> None:
    url = new_url()
    MemoryBackend(url.removeprefix("memory://")).put(MARKER, marker)
    with pytest.raises(UnsupportedStore, match=word):
        Store.open(url)


def test_missing_or_foreign_repo(url: str, repo: Repository) -> None:
    store = Store.open(url)
    with pytest.raises(NotFound, match="no such repo"):
        store.repo("nope")
    store.backend.put("foreign/repo.json", b'{"format":"git"}')
    with pytest.raises(UnsupportedStore):
        store.repo("foreign")
    store.backend.put("tiny/repo.json", b'{"chunk_size":1,"format":"s3fsv-repo","version":1}')
    with pytest.raises(UnsupportedStore, match="chunk size"):
        store.repo("tiny")
    with pytest.raises(AlreadyExists):
        store.create_repo("r")


class IgnoresConditions:
    """A backend wrapper that silently drops the conditions on puts, like a store without
    conditional-write support."""

    def __init__(self, inner: Backend, *, drop_none_match: bool, drop_match: bool) -> None:
        self.inner = inner
        self.url = inner.url
        self.drop_none_match = drop_none_match
        self.drop_match = drop_match

    def get(self, key: str, start: int | None = None, end: int | None = None) -> bytes:
        return self.inner.get(key, start, end)

    def head(self, key: str) -> ObjectInfo:
        return self.inner.head(key)

    def put(
        self,
        key: str,
        data: bytes,
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
        content_sha256: str | None = None,
    ) -> str:
        return self.inner.put(
            key,
            data,
            if_none_match=if_none_match and not self.drop_none_match,
            if_match=None if self.drop_match else if_match,
            content_sha256=content_sha256,
        )

    def list(self, prefix: str = "") -> Iterator[str]:
        return self.inner.list(prefix)

    def list_prefixes(self, prefix: str = "") -> Iterator[str]:
        return self.inner.list_prefixes(prefix)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def close(self) -> None:
        self.inner.close()


@pytest.mark.parametrize(
    "drop_none_match, drop_match, words",
    [
        (True, True, ["If-None-Match", "If-Match"]),
        (True, False, ["If-None-Match"]),
        (False, True, ["If-Match with a wrong etag"]),
    ],
)
def test_probe_refuses_a_store_that_ignores_conditional_writes(
    drop_none_match: bool, drop_match: bool, words: list[str]
) -> None:
    inner = MemoryBackend()
    wrapper = IgnoresConditions(inner, drop_none_match=drop_none_match, drop_match=drop_match)
    assert isinstance(wrapper, Backend)
    with pytest.raises(UnsupportedStore) as info:
        probe_conditional_writes(wrapper)
    for word in words:
        assert word in str(info.value)
    assert "conditional writes" in str(info.value)
    assert list(inner.list("")) == []  # the probe cleans up after itself


def test_probe_accepts_a_store_that_honours_conditional_writes() -> None:
    inner = MemoryBackend()
    probe_conditional_writes(inner)
    probe_conditional_writes(IgnoresConditions(inner, drop_none_match=False, drop_match=False))
    assert list(inner.list("")) == []


# -- names ------------------------------------------------------------------------------------

BAD_REF_NAMES = [
    "",
    ".",
    "..",
    "a/b",
    "../main",
    "-x",
    ".hidden",
    "_probe",
    "x..y",
    "topic.lock",
    "sp ace",
    "tab\t",
    "nul\x00",
    "ünï",
    "x" * 101,
]


@pytest.mark.parametrize("name", BAD_REF_NAMES)
def test_invalid_repo_names_are_refused(url: str, name: str) -> None:
    store = Store.init(url)
    with pytest.raises(InvalidName):
        store.create_repo(name)
    with pytest.raises(InvalidName):
        store.repo(name)
    assert store.repos() == []


@pytest.mark.parametrize("name", BAD_REF_NAMES)
def test_invalid_branch_and_tag_names_are_refused(repo: Repository, name: str) -> None:
    with pytest.raises(InvalidName):
        repo.create_branch(name, "main")
    with pytest.raises(InvalidName):
        repo.create_tag(name, "main")
    with pytest.raises(InvalidName):
        repo.refs.branch(name)
    assert repo.refs.branches() == {"main": repo.resolve("main")}
    assert repo.refs.tags() == {}


@pytest.mark.parametrize("good", ["a", "dev", "v1.0", "feature_x-2", "X" * 100, "9lives"])
def test_valid_ref_names_are_accepted(repo: Repository, good: str) -> None:
    assert repo.create_branch(good, "main") == repo.resolve("main")
    assert repo.resolve(good) == repo.resolve("main")


@pytest.mark.parametrize("path", ["a/../b", "./a", "a//b", "a/\x00", ".."])
def test_invalid_paths_in_a_commit_are_refused(repo: Repository, path: str) -> None:
    entry = TreeEntry("f", "file", 0o644, 0)
    head = repo.resolve("main")
    with pytest.raises(InvalidName):
        repo.commit("main", {path: entry}, "bad path")
    with pytest.raises(InvalidName):
        repo.stat(head, path)
    assert repo.resolve("main") == head


def test_a_store_cannot_be_made_inside_another(store_url: str) -> None:
    Store.init(store_url)
    with pytest.raises(AlreadyExists, match="is inside the s3fsv store"):
        Store.init(store_url + "/some/where")
