"""Helpers for the run tests: the ``s3fsv`` command in a given directory (``s3fsv run`` runs
its command in the caller's directory), and a private SeaweedFS bucket for a whole module."""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

from tests.mounting import S3FSV

_AWS_HIDDEN = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
)


def cli(
    cwd: Path, *args: str, env: dict[str, str], check: bool = True, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``s3fsv ARGS`` run in ``cwd``; with ``check``, a failure raises with its output."""
    done = subprocess.run(
        [*S3FSV, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    if check and done.returncode != 0:
        raise AssertionError(
            f"s3fsv {' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}"
        )
    return done


def xdg(tmp: Path, **more: str) -> dict[str, str]:
    """This process's environment with private XDG directories below ``tmp``."""
    return {
        **os.environ,
        "XDG_STATE_HOME": str(tmp / "state"),
        "XDG_CACHE_HOME": str(tmp / "cache"),
        "XDG_CONFIG_HOME": str(tmp / "config"),
        **more,
    }


@contextlib.contextmanager
def module_bucket(seaweed, tmp: Path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """``s3://<fresh bucket>/store`` on ``seaweed``, with this process's AWS variables
    pointing at it (and nothing else) until the block ends; the bucket is then deleted."""
    import pytest

    seaweed.start()
    bucket = f"s3fsv-runs-{uuid.uuid4().hex[:12]}"
    seaweed.client().create_bucket(Bucket=bucket)
    try:
        with pytest.MonkeyPatch.context() as mp:
            for name in _AWS_HIDDEN:
                mp.delenv(name, raising=False)
            mp.setenv("AWS_CONFIG_FILE", str(tmp / "no-aws-config"))
            mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp / "no-aws-credentials"))
            mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
            for name, value in seaweed.env().items():
                mp.setenv(name, value)
            yield f"s3://{bucket}/store"
    finally:
        seaweed.start()
        client = seaweed.client()
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", ())]
            if keys:
                client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
        client.delete_bucket(Bucket=bucket)
