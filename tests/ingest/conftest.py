"""Fixtures for ingest tests: a SeaweedFS bucket holding a store (``store/``) and a plain
prefix cameras write to (``incoming/``), and the environment that points s3fsv at both."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import s3fsv
from tests.mounting import run_cli


@dataclass
class Bucket:
    """One test bucket: its name, a boto3 client, the store URL and the CLI environment."""

    name: str
    client: Any
    store_url: str
    env: dict[str, str]

    def put(self, key: str, body: bytes, **meta: str) -> str:
        """Put ``incoming/<key>`` with ``x-amz-meta-*`` ``meta``; return its ETag."""
        resp = self.client.put_object(
            Bucket=self.name, Key=f"incoming/{key}", Body=body, Metadata=meta
        )
        return str(resp["ETag"])

    def cli(self, *args: str, check: bool = True) -> Any:
        return run_cli(*args, env=self.env, check=check)

    def open(self) -> s3fsv.Store:
        return s3fsv.open_store(self.store_url, cache_dir=Path(self.env["XDG_CACHE_HOME"]) / "c")

    def objects(self) -> dict[str, bytes]:
        """Every object of the bucket, read whole: key -> bytes."""
        out = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name):
            for obj in page.get("Contents", ()):
                body = self.client.get_object(Bucket=self.name, Key=obj["Key"])["Body"].read()
                out[obj["Key"]] = body
        return out


@pytest.fixture
def bucket(s3_bucket_url: str, seaweed: Any, tmp_path: Path) -> Iterator[Bucket]:
    """A store at ``s3://B/store`` with repo ``cams``; cameras write to ``s3://B/incoming/``."""
    env = {
        **os.environ,
        "S3FSV_STORE": s3_bucket_url,
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }
    name = s3_bucket_url.split("/")[2]
    found = Bucket(name, seaweed.client(), s3_bucket_url, env)
    found.cli("init")
    found.cli("repo", "create", "cams")
    yield found
