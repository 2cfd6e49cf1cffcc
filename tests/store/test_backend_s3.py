"""S3 backend behaviour beyond the shared contract (``test_backend_contract.py``): bodies read
straight into caller memory, pagination, prefixes, error translation, outages and credentials.
Runs on moto, and on SeaweedFS where marked ``s3``."""

from __future__ import annotations

import os
import random
import socket
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
from s3server import SeaweedServer
from test_backend_contract import LIST_KEYS

from s3fsv.errors import (
    AccessDenied,
    BucketMissing,
    InvalidName,
    NotFound,
    PreconditionFailed,
    StoreUnavailable,
    UsageError,
)
from s3fsv.mount.options import parse_source
from s3fsv.store.backend import Backend, open_backend
from s3fsv.store.backend.base import ReadsInto
from s3fsv.store.backend.s3 import S3Backend
from s3fsv.store.backend.s3 import _fill as s3_fill
from s3fsv.store.store import Store
from tests.conftest import isolate_aws_env


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


@pytest.mark.s3
def test_mount_source_with_wrong_credentials_names_the_store(
    s3_bucket_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``STORE/REPO`` is first tried as a store, and ``STORE`` as ``STORE/REPO``: refused at
    both, the error names what was asked for, not a marker object of one of the guesses."""
    Store.init(s3_bucket_url).create_repo("cams")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-credential-value-9f8e7d")
    for source in (f"{s3_bucket_url}/cams", s3_bucket_url):
        with pytest.raises(AccessDenied) as info:
            parse_source(source, None)
        assert str(info.value).startswith(f"access denied to {source}: check the credentials")


@pytest.mark.parametrize("prefix", ["..", "a/../b", "store/.", "x\0y", "a//b"])
def test_s3_prefix_with_dot_parts_is_refused(prefix: str) -> None:
    with pytest.raises(UsageError, match="invalid S3 prefix"):
        S3Backend("bucket", prefix)


@pytest.mark.parametrize("name", ["..", "."])
def test_mount_source_dot_repo_is_an_invalid_name(name: str) -> None:
    with pytest.raises(InvalidName, match="invalid repo name"):
        parse_source(f"s3://bucket/store/{name}", "http://127.0.0.1:9")  # never asked


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
        (_client_error("InvalidBucketName", 400), False, UsageError, "invalid S3 bucket name"),
        (NoCredentialsError(), False, AccessDenied, "no AWS credentials found"),
        (EndpointConnectionError(endpoint_url="http://x"), False, StoreUnavailable, "cannot reach"),
    ]
    for exc, cas, cls, text in cases:
        err = store._translate(exc, "k", cas=cas)
        assert type(err) is cls, (exc, err)
        assert text in str(err) and "\n" not in str(err)
