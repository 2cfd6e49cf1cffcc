"""Shared pytest fixtures, grouped in sections. Append new sections at the end.

- S3 servers: ``seaweed`` (one real SeaweedFS S3 server per session, on 127.0.0.1),
  ``s3_bucket_url`` (a fresh bucket on it) and ``moto_s3_url`` (a fresh bucket in moto's in-process
  fake). Both URL fixtures point the AWS environment variables at their server.
- Backends: ``backend``, parametrized over memory, file, moto and seaweed, so a test written once
  runs against every store; ``backend_kind`` names the current one.

Nothing here skips: if SeaweedFS is missing, the tests that need it fail and say why.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from s3server import SeaweedServer  # noqa: E402

from s3fsv.store.backend import Backend, open_backend  # noqa: E402

# ---------------------------------------------------------------------------------------------
# AWS environment
# ---------------------------------------------------------------------------------------------

# Variables that could point boto3 at a real account or change its behaviour behind a test's back.
_AWS_VARS_TO_CLEAR = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
)


def isolate_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: dict[str, str]) -> None:
    """Set ``env`` and hide every other source of AWS settings (profiles, files, IMDS)."""
    for name in _AWS_VARS_TO_CLEAR:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def unique_bucket_name() -> str:
    return f"s3fsv-test-{uuid.uuid4().hex[:16]}"


def empty_and_delete_bucket(client: Any, bucket: str) -> None:
    """Delete every object, then the bucket (SeaweedFS frees the bucket's volumes only then)."""
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket):
        objects = [{"Key": obj["Key"]} for obj in page.get("Contents", ())]
        if objects:
            client.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
    client.delete_bucket(Bucket=bucket)


# ---------------------------------------------------------------------------------------------
# S3 servers
# ---------------------------------------------------------------------------------------------

# SeaweedFS 4.48 never finishes a SIGTERM shutdown (its filer's graceful gRPC stop hangs), so a
# long grace only slows every session end; acknowledged writes survive SIGKILL (verified).
SEAWEED_STOP_GRACE = 3.0


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    """One SeaweedFS server (master, volume, filer, S3) for the whole session, always stopped."""
    server = SeaweedServer(tmp_path_factory.mktemp("seaweed"), grace=SEAWEED_STOP_GRACE)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_bucket_url(
    seaweed: SeaweedServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[str]:
    """``s3://<fresh bucket>/store`` on SeaweedFS, with the AWS env vars pointing at it.

    The bucket is emptied and deleted afterwards. If an earlier test left the server stopped
    (an outage test that failed half-way), it is started again first.
    """
    seaweed.start()
    isolate_aws_env(monkeypatch, tmp_path, seaweed.env())
    client = seaweed.client()
    bucket = unique_bucket_name()
    client.create_bucket(Bucket=bucket)
    try:
        yield f"s3://{bucket}/store"
    finally:
        seaweed.start()
        empty_and_delete_bucket(seaweed.client(), bucket)


@pytest.fixture
def moto_s3_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """``s3://<fresh bucket>/store`` in moto's in-process fake S3 (``moto.mock_aws``)."""
    isolate_aws_env(
        monkeypatch,
        tmp_path,
        {
            "AWS_ACCESS_KEY_ID": "moto-testing",
            "AWS_SECRET_ACCESS_KEY": "moto-testing-secret",
            "AWS_DEFAULT_REGION": "us-east-1",
        },
    )
    import boto3  # imported here: keeps conftest cheap for spawned worker processes
    import moto

    with moto.mock_aws():
        bucket = unique_bucket_name()
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=bucket)
        yield f"s3://{bucket}/store"


# ---------------------------------------------------------------------------------------------
# Backends
# ---------------------------------------------------------------------------------------------

BACKEND_KINDS = ["memory", "file", "moto", pytest.param("seaweed", marks=pytest.mark.s3)]


@pytest.fixture(params=BACKEND_KINDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """A fresh, empty Backend of each kind, opened through ``open_backend`` like the CLI does."""
    kind = request.param
    if kind == "memory":
        url = "memory://"  # no name: a private, empty store
    elif kind == "file":
        url = (tmp_path / "store").as_uri()
    elif kind == "moto":
        url = request.getfixturevalue("moto_s3_url")
    elif kind == "seaweed":
        url = request.getfixturevalue("s3_bucket_url")
    else:
        raise AssertionError(f"unknown backend kind {kind!r}")
    store = open_backend(url)
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def backend_kind(request: pytest.FixtureRequest, backend: Backend) -> str:
    """The name ("memory", "file", "moto", "seaweed") of the current ``backend`` param."""
    return str(request.node.callspec.params["backend"])


# ---------------------------------------------------------------------------------------------
# Mount tests
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def xdg_env(tmp_path: Path) -> dict[str, str]:
    """The environment for an ``s3fsv`` subprocess with private state, cache and config dirs."""
    return {
        **os.environ,
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }


@pytest.fixture
def env(xdg_env: dict[str, str]) -> dict[str, str]:
    return xdg_env


@pytest.fixture(params=["file", "seaweed"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty store location: a local directory, or a fresh bucket on SeaweedFS."""
    if request.param == "file":
        return f"file://{tmp_path}/store"
    return str(request.getfixturevalue("s3_bucket_url"))
