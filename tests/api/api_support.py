"""Helpers for the Python API's tests."""

from __future__ import annotations

from pathlib import Path

import s3fsv
from s3fsv.store.store import Store as LowStore

CHUNK = 4096  # small chunks, so that a few KiB make files of several chunks


def init_store(url: str, repo: str = "r", chunk_size: int = CHUNK) -> None:
    """Initialise the store at ``url`` and create an empty repo ``repo`` in it."""
    low = LowStore.init(url)
    try:
        low.create_repo(repo, chunk_size=chunk_size)
    finally:
        low.close()


def new_store(where: Path, repo: str = "r", chunk_size: int = CHUNK) -> s3fsv.Store:
    """An initialised file:// store at ``where/store`` holding an empty repo ``repo``, opened
    with ``open_store`` and the cache directory ``where/cache``."""
    url = (where / "store").as_uri()
    init_store(url, repo, chunk_size)
    return s3fsv.open_store(url, cache_dir=where / "cache")
