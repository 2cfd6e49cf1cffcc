"""Fixtures for the Python API's tests: a file:// store opened through ``s3fsv.open_store``,
with a cache directory of its own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from api_support import new_store

import s3fsv


@pytest.fixture
def store(tmp_path: Path) -> Iterator[s3fsv.Store]:
    with new_store(tmp_path) as opened:
        yield opened


@pytest.fixture
def repo(store: s3fsv.Store) -> s3fsv.Repo:
    return store.repo("r")
