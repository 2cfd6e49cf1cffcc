from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import s3fsv
from tests.pipelines.support import cli


@pytest.fixture
def pipeline_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A file:// store with repos ``cams`` (8 files under images/) and ``out``, and the
    environment (also set in this process) that points every s3fsv at it."""
    env = {
        "S3FSV_STORE": f"file://{tmp_path}/store",
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    full = {**os.environ, **env}
    cli(full, "init")
    cli(full, "repo", "create", "cams")
    cli(full, "repo", "create", "out")
    with s3fsv.open_store() as store, store.repo("cams").transaction("main", message="eight") as tx:
        for i in range(8):
            tx.write(f"images/f{i}.txt", f"file {i}\n".encode())
    return full


@pytest.fixture
def store(pipeline_env: dict[str, str]) -> Iterator[s3fsv.Store]:
    with s3fsv.open_store() as handle:
        yield handle
