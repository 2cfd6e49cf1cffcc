"""Fixtures of the access tests: one SeaweedFS with IAM and STS for the session, and a
"world" for the session: a store in a bucket with Object Lock, three repos, grants for a matrix of
principals, tokens, and a gateway serving them."""

from __future__ import annotations

import os
import socket
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from iamserver import IamSeaweedServer  # noqa: E402

import s3fsv  # noqa: E402
from s3fsv.access.audit import NAMESPACE, AuditTrail  # noqa: E402
from s3fsv.access.gateway import Gateway  # noqa: E402
from s3fsv.access.grants import AccessLog  # noqa: E402
from s3fsv.access.issuer import IssuerConfig  # noqa: E402
from s3fsv.store.store import Store as StoreLayerStore  # noqa: E402
from tests.access.support import GatewayThread  # noqa: E402

PRINCIPALS = {  # name -> grants (level, repo, options)
    "reader": [("read", "repoA", {})],
    "uploader": [("upload", "repoA", {"prefix": "incoming/uploader/", "kind": "device"})],
    "writer": [("write", "repoA", {})],
    "admin": [("admin", "repoA", {})],
    "pipeline": [("write", "repoA", {})],
}


@pytest.fixture(scope="session")
def engine_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """``s3fsv audit receive`` in a thread: (its port, the JSON lines file it appends to)."""
    from s3fsv.access.ingest import receive

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path_factory.mktemp("engine-log") / "requests.jsonl"
    stop = threading.Event()
    thread = threading.Thread(target=receive, args=("127.0.0.1", port, out, stop), daemon=True)
    thread.start()
    try:
        yield port, out
    finally:
        stop.set()
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def iam_seaweed(
    tmp_path_factory: pytest.TempPathFactory, engine_log: tuple[int, Path]
) -> Iterator[IamSeaweedServer]:
    """SeaweedFS with IAM and STS (sessions capped at 15 s) for the whole session, sending
    its request log to ``engine_log``."""
    server = IamSeaweedServer(
        tmp_path_factory.mktemp("iamweed"),
        grace=3.0,  # as tests/conftest.py's seaweed: SeaweedFS 4.48 never ends on SIGTERM
        session_seconds=15,
        audit_port=engine_log[0],
    )
    try:
        server.start()
        yield server
    finally:
        server.stop()


@dataclass
class World:
    server: IamSeaweedServer
    url: str
    bucket: str
    env: dict[str, str]  # for `s3fsv` subprocesses, as the store's admin
    store: s3fsv.Store
    access: AccessLog
    trail: AuditTrail
    gateway: Gateway
    gateway_url: str
    tokens: dict[str, str] = field(default_factory=dict)
    heads: dict[str, str] = field(default_factory=dict)

    def key(self, rest: str) -> str:
        return f"st/{rest}"


def make_store(server: IamSeaweedServer, tmp: Path, *, lock: bool = True) -> tuple[str, str]:
    """A fresh bucket (with Object Lock) holding an initialised store ``s3://B/st``."""
    bucket = f"acc-{uuid.uuid4().hex[:12]}"
    server.client().create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=lock)
    url = f"s3://{bucket}/st"
    StoreLayerStore.init(url, endpoint_url=server.endpoint_url).close()
    return bucket, url


@pytest.fixture(scope="session")
def world(
    iam_seaweed: IamSeaweedServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    server = iam_seaweed
    tmp = tmp_path_factory.mktemp("world")
    own = {**server.env(), "S3FSV_PRINCIPAL": "root-admin"}
    saved = {k: os.environ.get(k) for k in own}
    os.environ.update(own)  # the admin's own credentials, for this process
    bucket, url = make_store(server, tmp)
    env = {
        **os.environ,
        **server.env(),
        "S3FSV_STORE": url,
        "XDG_STATE_HOME": str(tmp / "state"),
        "XDG_CACHE_HOME": str(tmp / "cache"),
        "XDG_CONFIG_HOME": str(tmp / "config"),
        "S3FSV_PRINCIPAL": "root-admin",
    }
    store = s3fsv.open_store(url, endpoint_url=server.endpoint_url, cache_dir=tmp / "cache")
    trail = AuditTrail(store.records(NAMESPACE))
    trail.init(retain_days=1)
    heads = {}
    for repo in ("repoA", "repoAB", "detections"):
        handle = store.create_repo(repo)
        with handle.transaction("main", message="seed") as tx:
            tx.write("images/a.jpg", b"pixels of a" * 100)
            tx.write("big.bin", os.urandom(3 * 1024 * 1024))
        heads[repo] = handle.resolve("main")
    access = AccessLog(store)
    for name, grants in PRINCIPALS.items():
        for level, repo, opts in grants:
            access.grant(name, level, repo, **opts)
    access.protect("repoA", "main", ["pipeline"])
    config = IssuerConfig(
        url,
        server.role_arn,
        endpoint_url=server.endpoint_url,
        region=server.region,
        access_key=server.gateway_keys[0],  # type: ignore[index]
        secret_key=server.gateway_keys[1],  # type: ignore[index]
    )
    gateway = Gateway(config)
    thread = GatewayThread(gateway)
    tokens = {name: access.create_token(name, None)[1] for name in PRINCIPALS}
    try:
        yield World(
            server, url, bucket, env, store, access, trail, gateway, thread.url, tokens, heads
        )
    finally:
        thread.stop()
        gateway.store.close()
        store.close()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def gateway_env(world: World, tmp: Path) -> dict[str, Any]:
    """An environment with no cloud credentials at all (for clients of the gateway)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("AWS_") and k not in ("S3FSV_STORE",)
    }
    env.update(
        XDG_STATE_HOME=str(tmp / "state"),
        XDG_CACHE_HOME=str(tmp / "cache"),
        XDG_CONFIG_HOME=str(tmp / "config"),
        AWS_CONFIG_FILE=str(tmp / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp / "no-aws-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    return env
