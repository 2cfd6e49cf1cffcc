"""fsspec's own abstract test suite (``fsspec.tests.abstract``), run against ``s3fsv://``.

Claimed: copy, get, put and open (exclusive create), plus pipe (``mode="create"``). The
filesystem under test writes to a ``file://`` store in a temporary directory; every test
gets a fresh store and cache. s3fsv trees store empty directories, so the suite runs with
``supports_empty_directories`` true (its default), the strictest variant.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fsspec.tests.abstract import AbstractFixtures
from fsspec.tests.abstract.copy import AbstractCopyTests
from fsspec.tests.abstract.get import AbstractGetTests
from fsspec.tests.abstract.open import AbstractOpenTests
from fsspec.tests.abstract.pipe import AbstractPipeTests
from fsspec.tests.abstract.put import AbstractPutTests

from s3fsv.fsspec import S3fsvFileSystem
from s3fsv.store.store import Store

REPO = "data"


class S3fsvFixtures(AbstractFixtures):
    @pytest.fixture
    def fs(self, tmp_path: Path) -> Iterator[S3fsvFileSystem]:
        url = (tmp_path / "store").as_uri()
        Store.init(url).create_repo(REPO)
        fs = S3fsvFileSystem(url, cache_dir=tmp_path / "cache", skip_instance_cache=True)
        try:
            yield fs
        finally:
            fs.store.close()

    @pytest.fixture
    def fs_join(self):  # type: ignore[no-untyped-def]
        return lambda *parts: "/".join(parts)

    @pytest.fixture
    def fs_path(self) -> str:
        return REPO


class TestS3fsvCopy(AbstractCopyTests, S3fsvFixtures):
    pass


class TestS3fsvGet(AbstractGetTests, S3fsvFixtures):
    pass


class TestS3fsvPut(AbstractPutTests, S3fsvFixtures):
    pass


class TestS3fsvOpen(AbstractOpenTests, S3fsvFixtures):
    pass


class TestS3fsvPipe(AbstractPipeTests, S3fsvFixtures):
    pass
