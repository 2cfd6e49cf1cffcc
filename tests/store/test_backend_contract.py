"""The Backend contract (see ``s3fsv/backend/base.py``), written once and run against every backend.

The ``backend`` fixture runs each contract test on memory://, file://, moto and SeaweedFS. Below
the contract: races (threads on every backend, processes on file://), then file://
specifics: layout, permissions, OS error translation. S3 specifics are in ``test_backend_s3.py``.
"""

from __future__ import annotations

import errno
import multiprocessing
import os
import random
import stat
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from s3fsv.errors import (
    AccessDenied,
    InvalidName,
    NotFound,
    PreconditionFailed,
    StoreUnavailable,
    UsageError,
)
from s3fsv.store.backend import Backend, ObjectInfo, open_backend
from s3fsv.store.backend.base import ReadsInto
from s3fsv.store.backend.file import FileBackend
from s3fsv.store.backend.file import _translate as file_translate
from s3fsv.store.buffers import BufferPool, aligned_address

# ---------------------------------------------------------------------------------------------
# get / head
# ---------------------------------------------------------------------------------------------


def test_get_whole_and_ranges(backend: Backend) -> None:
    data = bytes(range(256)) * 4
    backend.put("a/b", data)
    assert backend.get("a/b") == data
    assert backend.get("a/b", 0, 10) == data[:10]
    assert backend.get("a/b", 10) == data[10:]
    assert backend.get("a/b", None, 5) == data[:5]
    assert backend.get("a/b", 1000, 1024) == data[1000:]
    assert backend.get("a/b", 0, len(data)) == data


def test_get_range_beyond_end_is_clamped(backend: Backend) -> None:
    backend.put("k", b"hello world")
    assert backend.get("k", 6, 100) == b"world"
    assert backend.get("k", 11) == b""
    assert backend.get("k", 11, 20) == b""
    assert backend.get("k", 50, 60) == b""


def test_get_empty_range_and_empty_value(backend: Backend) -> None:
    backend.put("k", b"hello")
    assert backend.get("k", 3, 3) == b""
    assert backend.get("k", 0, 0) == b""
    backend.put("empty", b"")
    assert backend.get("empty") == b""
    assert backend.get("empty", 0, 10) == b""
    assert backend.head("empty").size == 0


def test_get_bad_range_is_usage_error(backend: Backend) -> None:
    backend.put("k", b"hello")
    with pytest.raises(UsageError):
        backend.get("k", 4, 2)
    with pytest.raises(UsageError):
        backend.get("k", -1, 2)


def test_missing_key_is_not_found(backend: Backend) -> None:
    with pytest.raises(NotFound):
        backend.get("nope")
    with pytest.raises(NotFound):
        backend.get("nope", 0, 10)
    with pytest.raises(NotFound):
        backend.get("no/such/dir/key")
    with pytest.raises(NotFound):
        backend.head("nope")


def test_read_into_fills_the_callers_memory(backend: Backend) -> None:
    """Where a backend can ``read_into``: one ``alloc`` call with the value's size, the whole
    value in the buffer it returned, NotFound for a missing key."""
    assert isinstance(backend, ReadsInto)
    data = os.urandom(3 * 1024 * 1024 + 17)  # many socket reads, an unaligned end
    backend.put("big", data)
    backend.put("empty", b"")
    sizes: list[int] = []

    def alloc(n: int) -> bytearray:
        sizes.append(n)
        return bytearray(n)

    assert backend.read_into("big", alloc) == data
    assert backend.read_into("empty", alloc) == b""
    assert sizes == [len(data), 0]
    pooled = backend.read_into("big", BufferPool().take)
    assert aligned_address(pooled) is not None and bytes(pooled) == data
    with pytest.raises(NotFound):
        backend.read_into("nope", alloc)
    assert backend.get("big", 1, 4) == data[1:4]


def test_head_size_and_etag(backend: Backend) -> None:
    etag = backend.put("dir/k", b"12345")
    info = backend.head("dir/k")
    assert isinstance(info, ObjectInfo)
    assert info == ObjectInfo(5, etag)


def test_etag_changes_with_content(backend: Backend) -> None:
    e1 = backend.put("k", b"one")
    e2 = backend.put("k", b"two")
    assert e1 != e2
    assert backend.head("k").etag == e2
    assert backend.get("k") == b"two"


# ---------------------------------------------------------------------------------------------
# conditional puts
# ---------------------------------------------------------------------------------------------


def test_put_if_none_match(backend: Backend) -> None:
    etag = backend.put("refs/tags/v1", b"first", if_none_match=True)
    assert backend.head("refs/tags/v1").etag == etag
    with pytest.raises(PreconditionFailed):
        backend.put("refs/tags/v1", b"second", if_none_match=True)
    assert backend.get("refs/tags/v1") == b"first"


def test_put_if_match(backend: Backend) -> None:
    e1 = backend.put("refs/branches/main", b"v1")
    e2 = backend.put("refs/branches/main", b"v2", if_match=e1)
    assert e2 != e1
    assert backend.head("refs/branches/main").etag == e2
    with pytest.raises(PreconditionFailed):
        backend.put("refs/branches/main", b"v3", if_match=e1)  # stale etag
    assert backend.get("refs/branches/main") == b"v2"
    e3 = backend.put("refs/branches/main", b"v3", if_match=e2)
    assert backend.head("refs/branches/main").etag == e3


def test_put_if_match_on_missing_key_fails(backend: Backend) -> None:
    etag = backend.put("other", b"x")
    with pytest.raises(PreconditionFailed):
        backend.put("missing", b"x", if_match=etag)
    with pytest.raises(NotFound):
        backend.get("missing")


# ---------------------------------------------------------------------------------------------
# list / delete / names
# ---------------------------------------------------------------------------------------------

LIST_KEYS = [
    "objects/ab/1111",
    "objects/ab/2222",
    "objects/ac/3333",
    "objects/b0/4444",
    "refs/branches/main",
    "refs/branches/main-2",
    "refs/tags/v1",
    "x-c",
    "x.d",
    "x/a/z",
    "x/b",
    "x0",
]


def test_list_prefixes_sorted(backend: Backend) -> None:
    keys = list(LIST_KEYS)
    random.Random(7).shuffle(keys)
    for k in keys:
        backend.put(k, k.encode())
    assert list(backend.list()) == sorted(LIST_KEYS)
    assert list(backend.list("")) == sorted(LIST_KEYS)
    assert list(backend.list("objects/")) == sorted(LIST_KEYS[:4])
    assert list(backend.list("objects/a")) == sorted(LIST_KEYS[:3])  # ends mid-name
    assert list(backend.list("objects/ab/2")) == ["objects/ab/2222"]
    assert list(backend.list("objects/ab/2222")) == ["objects/ab/2222"]
    assert list(backend.list("refs/branches/main")) == [
        "refs/branches/main",
        "refs/branches/main-2",
    ]
    assert list(backend.list("x")) == sorted(k for k in LIST_KEYS if k.startswith("x"))
    assert list(backend.list("x/")) == ["x/a/z", "x/b"]
    assert list(backend.list("nothing")) == []
    assert list(backend.list("nothing/here/")) == []
    assert list(backend.list("objects/ab/2222/deeper")) == []


def test_list_prefixes_lists_one_level(backend: Backend) -> None:
    for k in ("cams/repo.json", "cams/objects/ab/cd", "dogs/repo.json", "top", "x/a/z", "x/b"):
        backend.put(k, b"v")
    assert list(backend.list_prefixes("")) == ["cams/", "dogs/", "x/"]
    assert list(backend.list_prefixes("cams/")) == ["cams/objects/"]
    assert list(backend.list_prefixes("x/")) == ["x/a/"]
    assert list(backend.list_prefixes("nothing/")) == []


def test_list_is_lazy_iterator(backend: Backend) -> None:
    for k in ("p/1", "p/2", "p/3"):
        backend.put(k, b"")
    it = iter(backend.list("p/"))
    assert next(it) == "p/1"
    assert list(it) == ["p/2", "p/3"]


def test_list_empty_store(backend: Backend) -> None:
    assert list(backend.list()) == []
    assert list(backend.list("objects/a")) == []


def test_delete(backend: Backend) -> None:
    backend.put("d/k", b"x")
    backend.put("d/k2", b"y")
    backend.delete("d/k")
    with pytest.raises(NotFound):
        backend.get("d/k")
    assert list(backend.list("d/")) == ["d/k2"]
    backend.delete("d/k")  # already gone
    backend.delete("never/existed")


BAD_KEYS = ["../x", "a/../b", "a//b", "/a", "", "a/", "a\0b", ".", "a/./b", ".."]


@pytest.mark.parametrize("bad", BAD_KEYS)
def test_invalid_keys_refused(backend: Backend, bad: str) -> None:
    ops: list[Callable[[], object]] = [
        lambda: backend.get(bad),
        lambda: backend.head(bad),
        lambda: backend.put(bad, b"x"),
        lambda: backend.put(bad, b"x", if_none_match=True),
        lambda: backend.delete(bad),
    ]
    for op in ops:
        with pytest.raises(InvalidName):
            op()


# ---------------------------------------------------------------------------------------------
# races
# ---------------------------------------------------------------------------------------------


# moto is no concurrent store: it checks If-Match / If-None-Match and then writes without a lock
# (lost CAS updates, 78 of 80 increments seen here), and a GET racing an overwrite of the same key
# can fail with "ValueError: I/O operation on closed file". Races run on the other backends.
RACE_KINDS = ["memory", "file", pytest.param("seaweed", marks=pytest.mark.s3)]


@pytest.mark.parametrize("backend", RACE_KINDS, indirect=True)
def test_race_if_none_match_one_winner(backend: Backend) -> None:
    n = 16
    barrier = threading.Barrier(n)

    def attempt(i: int) -> bool:
        barrier.wait(timeout=30)
        try:
            backend.put("refs/branches/race", f"writer-{i}".encode(), if_none_match=True)
            return True
        except PreconditionFailed:
            return False

    with ThreadPoolExecutor(n) as pool:
        won = list(pool.map(attempt, range(n)))
    assert won.count(True) == 1
    assert backend.get("refs/branches/race") == f"writer-{won.index(True)}".encode()


def _cas_increment(backend: Backend, key: str) -> int:
    """Increment the counter at ``key`` by compare-and-swap; return the number of lost races."""
    lost = 0
    while True:
        etag = backend.head(key).etag  # etag first: a newer value then fails the CAS, never wins
        value = int(backend.get(key))
        try:
            backend.put(key, str(value + 1).encode(), if_match=etag)
            return lost
        except PreconditionFailed:
            lost += 1


@pytest.mark.parametrize("backend", RACE_KINDS, indirect=True)
def test_race_cas_counter_no_lost_updates(backend: Backend, backend_kind: str) -> None:
    threads, per_thread = 8, (10 if backend_kind == "seaweed" else 25)
    backend.put("counter", b"0")
    barrier = threading.Barrier(threads)

    def worker(_: int) -> int:
        barrier.wait(timeout=30)
        return sum(_cas_increment(backend, "counter") for _ in range(per_thread))

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(worker, range(threads)))
    assert int(backend.get("counter")) == threads * per_thread


def _mp_put_once(root: str, key: str, i: int, barrier: object, results: object) -> None:
    store = FileBackend(root)
    barrier.wait(timeout=120)  # type: ignore[attr-defined]
    try:
        store.put(key, f"process-{i}".encode(), if_none_match=True)
        results.put((i, True))  # type: ignore[attr-defined]
    except PreconditionFailed:
        results.put((i, False))  # type: ignore[attr-defined]


def _mp_increment(root: str, key: str, times: int, barrier: object) -> None:
    store = FileBackend(root)
    barrier.wait(timeout=120)  # type: ignore[attr-defined]
    for _ in range(times):
        _cas_increment(store, key)


def _run_processes(target: Callable[..., None], args_list: list[tuple[object, ...]]) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=target, args=args) for args in args_list]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=180)
        assert p.exitcode == 0, f"worker exited with {p.exitcode}"


def test_file_multiprocess_if_none_match_one_winner(tmp_path: Path) -> None:
    n = 8
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(n), ctx.Queue()
    root = str(tmp_path / "store")
    _run_processes(_mp_put_once, [(root, "refs/tags/t", i, barrier, results) for i in range(n)])
    outcome = dict(results.get(timeout=10) for _ in range(n))
    winners = [i for i, won in outcome.items() if won]
    assert len(winners) == 1
    assert FileBackend(root).get("refs/tags/t") == f"process-{winners[0]}".encode()


def test_file_multiprocess_cas_counter(tmp_path: Path) -> None:
    n, times = 4, 25
    root = str(tmp_path / "store")
    FileBackend(root).put("counter", b"0")
    barrier = multiprocessing.get_context("spawn").Barrier(n)
    _run_processes(_mp_increment, [(root, "counter", times, barrier) for _ in range(n)])
    assert FileBackend(root).get("counter") == str(n * times).encode()


# ---------------------------------------------------------------------------------------------
# file:// specifics
# ---------------------------------------------------------------------------------------------


def test_file_layout_and_permissions(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = open_backend(root.as_uri())
    assert isinstance(store, FileBackend)
    store.put("objects/ab/cdef", b"data", if_none_match=True)
    store.put("refs/branches/main", b"head")
    store.put("refs/branches/main", b"head2", if_match=store.head("refs/branches/main").etag)
    assert (root / "objects" / "ab" / "cdef").read_bytes() == b"data"
    for d in (root, root / "objects", root / "objects" / "ab", root / "refs" / "branches"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    for f in (root / "objects" / "ab" / "cdef", root / "refs" / "branches" / "main"):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    # leftovers of a crashed writer and the lock directory are invisible
    (root / "objects" / "ab" / ".s3fsv-tmp-0123").write_bytes(b"partial")
    assert list(store.list()) == ["objects/ab/cdef", "refs/branches/main"]
    assert not [p for p in (root / "refs" / "branches").iterdir() if p.name.startswith(".s3fsv")]


def test_file_reserved_and_clashing_keys(tmp_path: Path) -> None:
    store = FileBackend(str(tmp_path / "store"))
    with pytest.raises(InvalidName):
        store.put(".s3fsv-locks/00", b"x")
    with pytest.raises(InvalidName):
        store.get("a/.s3fsv-tmp-1")
    with pytest.raises(InvalidName):
        list(store.list("../"))
    store.put("a", b"x")
    with pytest.raises(InvalidName):
        store.put("a/b", b"y")  # "a" is a value, it cannot also be a prefix here
    with pytest.raises(NotFound):
        store.get("a/b")
    store.put("d/e", b"z")
    with pytest.raises(NotFound):
        store.get("d")  # a prefix, not a key
    with pytest.raises(PreconditionFailed):
        store.put("d", b"z", if_none_match=True)


def test_file_missing_root_reads_as_empty(tmp_path: Path) -> None:
    store = FileBackend(str(tmp_path / "absent"))
    assert list(store.list()) == []
    with pytest.raises(NotFound):
        store.get("k")
    store.delete("k")
    assert not (tmp_path / "absent").exists()


def test_file_oserror_translation() -> None:
    cases = [
        (errno.ENOENT, "get", NotFound),
        (errno.EACCES, "get", AccessDenied),
        (errno.EPERM, "put", AccessDenied),
        (errno.EIO, "get", StoreUnavailable),
        (errno.ENOSPC, "put", StoreUnavailable),
    ]
    for code, op, cls in cases:
        err = file_translate(OSError(code, os.strerror(code), "/some/path"), "k", op)
        assert type(err) is cls
        assert "\n" not in str(err) and "k" in str(err)
