"""Lean GETs (``s3get``) for imports: on SeaweedFS, ``open_object`` through them reads and
describes an object exactly as through the boto3 client, and fails the same way."""

from __future__ import annotations

import pytest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from s3server import SeaweedServer

from s3fsv.errors import AccessDenied, BucketMissing, NotFound, StoreUnavailable
from s3fsv.store.backend.base import SourceObject
from s3fsv.store.backend.s3 import S3Backend
from s3fsv.store.backend.s3get import DirectGets

pytestmark = pytest.mark.s3

KEYS = ["in/plain.jpg", "in/a b+c~é/%41 x?.jpg", "in/empty"]


def _read(backend: S3Backend, key: str, part: int = 7) -> tuple[SourceObject, bytes]:
    info, pieces = backend.open_object(key, part)
    got = list(pieces)
    assert all(0 < len(p) <= part for p in got)
    return info, b"".join(got)


def _bucket(s3_bucket_url: str) -> str:
    return s3_bucket_url.split("/")[2]


def test_direct_gets_read_what_the_client_reads(seaweed: SeaweedServer, s3_bucket_url: str) -> None:
    bucket = _bucket(s3_bucket_url)
    client = seaweed.client()
    for n, key in enumerate(KEYS):
        body = b"" if key.endswith("empty") else f"{key} {n}".encode() * 9
        meta = {"House": "h1", "device": "cam 1"}
        client.put_object(Bucket=bucket, Key=key, Body=body, Metadata=meta, Tagging="customer=c9")
    direct = S3Backend(bucket, "", seaweed.endpoint_url, direct_gets=True)
    plain = S3Backend(bucket, "", seaweed.endpoint_url)
    for key in KEYS:
        got = _read(direct, key)
        assert isinstance(direct._direct, DirectGets) and plain._direct is False
        assert got == _read(plain, key)
        info, data = got
        assert info.metadata == {"house": "h1", "device": "cam 1"} and info.tag_count == 1
        assert info.size == len(data) and info.etag.startswith('"') and info.modified_ns > 0
    # A reader that stops early leaves a pool that still answers.
    _, pieces = direct.open_object(KEYS[0], 3)
    next(pieces)
    pieces.close()
    assert _read(direct, KEYS[0]) == _read(plain, KEYS[0])


def test_direct_gets_fail_like_the_client(seaweed: SeaweedServer, s3_bucket_url: str) -> None:
    bucket = _bucket(s3_bucket_url)
    direct = S3Backend(bucket, "", seaweed.endpoint_url, direct_gets=True)
    with pytest.raises(NotFound, match="no such key"):
        direct.open_object("in/missing", 10)
    with pytest.raises(BucketMissing):
        S3Backend("s3fsv-no-such-bucket", "", seaweed.endpoint_url, direct_gets=True).open_object(
            "k", 10
        )
    seaweed.client().put_object(Bucket=bucket, Key="in/k", Body=b"x")
    wrong = Credentials(seaweed.access_key, "wrong-secret-value-31415")
    denied = S3Backend(bucket, "", seaweed.endpoint_url, direct_gets=True, credentials=wrong)
    with pytest.raises(AccessDenied) as info:
        denied.open_object("in/k", 10)
    assert "wrong-secret-value" not in str(info.value) and "\n" not in str(info.value)
    gone = S3Backend(
        bucket, "", "http://127.0.0.1:9", direct_gets=True, max_attempts=1, connect_timeout=1
    )
    with pytest.raises(StoreUnavailable, match="cannot reach"):
        gone.open_object("in/k", 10)


def test_a_redirect_hands_reads_back_to_the_client(
    seaweed: SeaweedServer, s3_bucket_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bucket in another region answers 301 to a request signed for this one: the boto3
    client follows that, so reads go back to it."""
    bucket = _bucket(s3_bucket_url)
    seaweed.client().put_object(Bucket=bucket, Key="in/k", Body=b"bytes")
    backend = S3Backend(bucket, "", seaweed.endpoint_url, direct_gets=True)

    def moved(self: DirectGets, key: str, part: int) -> None:
        meta = {"HTTPStatusCode": 301}
        raise ClientError({"Error": {"Code": "PermanentRedirect"}, "ResponseMetadata": meta}, "Get")

    monkeypatch.setattr(DirectGets, "open", moved)
    assert _read(backend, "in/k")[1] == b"bytes"
    assert backend._direct is False
