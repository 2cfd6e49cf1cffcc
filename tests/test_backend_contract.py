"""The Backend contract (see ``s3fsv/backend/base.py``), written once and run against every backend.

The ``backend`` fixture runs each contract test on memory://, file://, moto and SeaweedFS. Below
the contract: races (threads on every backend, processes on file://), then backend-specific
behaviour: file layout and permissions, S3 error translation, outages, credentials.
"""

from __future__ import annotations

import errno
import multiprocessing
import os
import random
import socket
import stat
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import urllib3
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    IncompleteReadError,
    NoCredentialsError,
)
from conftest import isolate_aws_env
from s3server import SeaweedServer

from s3fsv.backend import Backend, ObjectInfo, open_backend
from s3fsv.backend.base import ReadsInto
from s3fsv.backend.file import FileBackend
from s3fsv.backend.file import _translate as file_translate
from s3fsv.backend.s3 import S3Backend
from s3fsv.backend.s3 import _fill as s3_fill
from s3fsv.buffers import BufferPool, aligned_address
from s3fsv.errors import (
    AccessDenied,
    BucketMissing,
    InvalidName,
    NotFound,
    PreconditionFailed,
    StoreUnavailable,
    UsageError,
)
from s3fsv.store import Store

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


def test_s3_read_into_reuses_its_connection(
    s3_bucket_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading a body straight into caller memory hands the drained connection back to the
    pool: twenty reads open at most one new connection."""
    backend = open_backend(s3_bucket_url)
    try:
        backend.put("k", os.urandom(2 * 1024 * 1024))
        backend.get("k", 0, 1)  # connect once
        connects: list[object] = []
        real = urllib3.connection.HTTPConnection.connect

        def counting(self: urllib3.connection.HTTPConnection) -> None:
            connects.append(self)
            real(self)

        monkeypatch.setattr(urllib3.connection.HTTPConnection, "connect", counting)
        assert isinstance(backend, ReadsInto)
        for _ in range(20):
            assert len(backend.read_into("k", bytearray)) == 2 * 1024 * 1024
        assert len(connects) <= 1
    finally:
        backend.close()


def test_s3_read_into_without_content_length() -> None:
    """A chunked answer carries no Content-Length: the body is read, then copied."""

    class Body:
        def read(self) -> bytes:
            return b"chunked body"

        def close(self) -> None:
            pass

    class Client:
        def get_object(self, **_: object) -> dict[str, object]:
            return {"Body": Body()}

    backend = S3Backend("bucket", endpoint_url="http://127.0.0.1:9")
    backend._client = Client()
    assert backend.read_into("k", bytearray) == b"chunked body"


def test_s3_short_or_unusual_bodies() -> None:
    """A body that ends before its Content-Length is an incomplete read (a store error, never
    a short chunk); a body without the usual urllib3 layers is read and copied."""

    class Plain:
        def __init__(self, data: bytes) -> None:
            self.data = data

        def read(self) -> bytes:
            return self.data

    view = memoryview(bytearray(5))
    s3_fill(Plain(b"hello"), view, 5)
    assert view.tobytes() == b"hello"
    with pytest.raises(IncompleteReadError):
        s3_fill(Plain(b"hell"), memoryview(bytearray(5)), 5)

    class Inner:  # http.client's response: readinto until the socket runs dry
        def __init__(self, data: bytes) -> None:
            self.data = data

        def readinto(self, b: memoryview) -> int:
            n = min(len(b), len(self.data), 2)
            b[:n] = self.data[:n]
            self.data = self.data[n:]
            return n

        def isclosed(self) -> bool:
            return not self.data

    class Raw:
        released = False

        def __init__(self, data: bytes) -> None:
            self._fp = Inner(data)

        def release_conn(self) -> None:
            self.released = True

    class Streaming:
        def __init__(self, data: bytes) -> None:
            self._raw_stream = Raw(data)

    body = Streaming(b"hello")
    view = memoryview(bytearray(5))
    s3_fill(body, view, 5)
    assert view.tobytes() == b"hello" and body._raw_stream.released
    body = Streaming(b"hel")
    with pytest.raises(IncompleteReadError):
        s3_fill(body, memoryview(bytearray(5)), 5)
    assert not body._raw_stream.released


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


# ---------------------------------------------------------------------------------------------
# S3 specifics
# ---------------------------------------------------------------------------------------------

S3_KINDS = ["moto", pytest.param("seaweed", marks=pytest.mark.s3)]


@pytest.mark.parametrize("backend", S3_KINDS, indirect=True)
def test_list_paginates_past_1000_keys(backend: Backend) -> None:
    keys = [f"objects/{i:05d}" for i in range(1100)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: backend.put(k, b"", if_none_match=True), keys))
    backend.put("objects-other", b"")
    assert list(backend.list("objects/")) == keys
    assert list(backend.list("objects/010")) == [f"objects/0{i}" for i in range(1000, 1100)]


@pytest.mark.parametrize("kind", ["moto", pytest.param("seaweed", marks=pytest.mark.s3)])
def test_s3_prefixes_are_isolated(kind: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("moto_s3_url" if kind == "moto" else "s3_bucket_url")
    a, b = open_backend(url), open_backend(url + "2")
    a.put("k", b"a")
    b.put("k", b"b")
    assert list(a.list()) == ["k"] and list(b.list()) == ["k"]
    assert a.get("k") == b"a" and b.get("k") == b"b"
    assert isinstance(a, S3Backend) and a.url == url


@pytest.mark.parametrize("kind", ["moto", pytest.param("seaweed", marks=pytest.mark.s3)])
def test_s3_list_modes(kind: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("moto_s3_url" if kind == "moto" else "s3_bucket_url")
    bucket, prefix = url[len("s3://") :].split("/", 1)
    walk = S3Backend(bucket, prefix, list_mode="walk")
    for k in LIST_KEYS:
        walk.put(k, b"")
    assert list(walk.list()) == sorted(LIST_KEYS)
    assert list(walk.list("objects/a")) == sorted(LIST_KEYS[:3])
    assert list(walk.list("x")) == sorted(k for k in LIST_KEYS if k.startswith("x"))
    auto = S3Backend(bucket, prefix)
    assert list(auto.list("x")) == sorted(k for k in LIST_KEYS if k.startswith("x"))
    # SeaweedFS 4.48 answers ListObjectsV2 in directory-walk order ("x/a/z" before "x-c").
    assert auto.list_mode == ("walk" if kind == "seaweed" else "flat")
    with pytest.raises(UsageError):
        S3Backend(bucket, prefix, list_mode="sorted")  # type: ignore[arg-type]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_s3_unreachable_endpoint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_aws_env(monkeypatch, tmp_path, {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"})
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    store = S3Backend("bucket", "p", endpoint_url=endpoint, max_attempts=2, connect_timeout=1)
    ops: list[Callable[[], object]] = [
        lambda: store.get("k"),
        lambda: store.head("k"),
        lambda: store.put("k", b"x", if_none_match=True),
        lambda: list(store.list()),
        lambda: store.delete("k"),
    ]
    for op in ops:
        t0 = time.monotonic()
        with pytest.raises(StoreUnavailable) as info:
            op()
        assert time.monotonic() - t0 < 10
        msg = str(info.value)
        assert "\n" not in msg
        assert msg.startswith(f"cannot reach S3 endpoint {endpoint}")


@pytest.mark.s3
def test_s3_outage_and_recovery(seaweed: SeaweedServer, s3_bucket_url: str) -> None:
    bucket, prefix = s3_bucket_url[len("s3://") :].split("/", 1)
    store = S3Backend(bucket, prefix, max_attempts=2, connect_timeout=1, read_timeout=5)
    store.put("k", b"before")
    seaweed.stop()
    try:
        t0 = time.monotonic()
        with pytest.raises(StoreUnavailable):
            store.get("k")
        assert time.monotonic() - t0 < 10
    finally:
        seaweed.start()
    assert store.get("k") == b"before"  # same client, same endpoint, after the restart


@pytest.mark.s3
@pytest.mark.parametrize("wrong", ["AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID"])
def test_s3_bad_credentials(
    seaweed: SeaweedServer, s3_bucket_url: str, monkeypatch: pytest.MonkeyPatch, wrong: str
) -> None:
    open_backend(s3_bucket_url).put("k", b"x")
    bad_value = "wrong-credential-value-9f8e7d"
    monkeypatch.setenv(wrong, bad_value)
    store = open_backend(s3_bucket_url)
    ops: list[Callable[[], object]] = [
        lambda: store.get("k"),
        lambda: store.head("k"),
        lambda: store.put("k2", b"x"),
        lambda: list(store.list()),
    ]
    for op in ops:
        with pytest.raises(AccessDenied) as info:
            op()
        msg = str(info.value)
        assert "access denied" in msg and "check credentials" in msg and "\n" not in msg
        for secret in (bad_value, seaweed.secret_key):
            assert secret not in msg and secret not in repr(info.value)


def test_s3_no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_aws_env(monkeypatch, tmp_path, {})
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    store = S3Backend("bucket", "", endpoint_url=f"http://127.0.0.1:{_closed_port()}")
    with pytest.raises(AccessDenied, match="no AWS credentials found"):
        store.get("k")


@pytest.mark.parametrize("kind", ["moto", pytest.param("seaweed", marks=pytest.mark.s3)])
def test_s3_missing_bucket_and_create(kind: str, request: pytest.FixtureRequest) -> None:
    request.getfixturevalue("moto_s3_url" if kind == "moto" else "s3_bucket_url")
    bucket = f"s3fsv-missing-{os.getpid()}-{random.randrange(10**9)}"
    store = S3Backend(bucket, "p")
    for op in (lambda: store.get("k"), lambda: store.put("k", b"x"), lambda: list(store.list())):
        with pytest.raises(NotFound, match=f"bucket {bucket} does not exist"):
            op()
    # Opening a store there says so, rather than "not an s3fsv store".
    with pytest.raises(NotFound, match=r"does not exist \(s3fsv init creates it\)"):
        Store.open(f"s3://{bucket}/p")
    assert store.create_bucket_if_missing() is True
    try:
        assert store.create_bucket_if_missing() is False or kind == "moto"  # moto: no error
        store.put("k", b"x")
        assert store.get("k") == b"x"
    finally:
        store.delete("k")
        store.client.delete_bucket(Bucket=bucket)


def _client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": f"msg {code}"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "PutObject",
    )


def test_s3_error_translation() -> None:
    store = S3Backend("bkt", "pre", endpoint_url="http://127.0.0.1:1")
    cases: list[tuple[BaseException, bool, type[Exception], str]] = [
        (_client_error("NoSuchKey", 404), False, NotFound, "no such key: s3://bkt/pre/k"),
        (_client_error("NoSuchKey", 404), True, PreconditionFailed, "conditional write lost"),
        (_client_error("404", 404), False, NotFound, "no such key"),
        (_client_error("NoSuchBucket", 404), False, BucketMissing, "bucket bkt does not exist"),
        (_client_error("PreconditionFailed", 412), False, PreconditionFailed, "lost"),
        (_client_error("ConditionalRequestConflict", 409), True, PreconditionFailed, "lost"),
        (_client_error("AccessDenied", 403), False, AccessDenied, "access denied to s3://bkt"),
        (_client_error("403", 403), False, AccessDenied, "check credentials"),
        (_client_error("SignatureDoesNotMatch", 403), False, AccessDenied, "access denied"),
        (_client_error("InvalidAccessKeyId", 403), False, AccessDenied, "access denied"),
        (_client_error("SlowDown", 503), False, StoreUnavailable, "SlowDown: msg SlowDown"),
        (NoCredentialsError(), False, AccessDenied, "no AWS credentials found"),
        (EndpointConnectionError(endpoint_url="http://x"), False, StoreUnavailable, "cannot reach"),
    ]
    for exc, cas, cls, text in cases:
        err = store._translate(exc, "k", cas=cas)
        assert type(err) is cls, (exc, err)
        assert text in str(err) and "\n" not in str(err)
