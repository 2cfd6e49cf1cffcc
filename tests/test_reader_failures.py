"""How the chunk reader behaves when the store cannot be reached (no FUSE, no S3 server)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from s3fsv.backend.file import FileBackend
from s3fsv.cache import DiskCache
from s3fsv.errors import StoreUnavailable
from s3fsv.objects import TreeEntry, sha256_hex
from s3fsv.objectstore import ObjectStore
from s3fsv.reader import ChunkReader


class FlakyBackend(FileBackend):
    """A file store that can be switched off, counting the reads tried while it was."""

    down = False
    refused = 0

    def _check(self) -> None:
        if self.down:
            self.refused += 1
            raise StoreUnavailable("cannot reach the store (switched off)")

    def get(self, key: str, start: int | None = None, end: int | None = None) -> bytes:
        self._check()
        return super().get(key, start, end)

    def read_into(self, key: str, alloc: Callable[[int], Any]) -> Any:
        self._check()
        return super().read_into(key, alloc)


def test_a_failed_fetch_answers_an_immediate_retry_without_waiting_again(tmp_path: Path) -> None:
    """The kernel turns a failed read-ahead into a plain read of the same range at once; that
    second read must fail from the first one's outcome, not wait out the store's timeouts a
    second time. After the hold, a read tries the store again and succeeds once it is back."""
    backend = FlakyBackend(str(tmp_path / "store"))
    data = os.urandom(100_000)
    oid = ObjectStore(backend, "r").put_bytes(data)
    cache = DiskCache(tmp_path / "cache")
    reader = ChunkReader(ObjectStore(backend, "r", cache), cache, 1 << 20, threads=2)
    entry = TreeEntry("f", "file", 0o644, 0, len(data), sha256_hex(data), (oid,))
    try:
        backend.down = True
        for _ in range(3):
            with pytest.raises(StoreUnavailable):
                reader.read(entry, 0, 4096)
        assert backend.refused == 1
        reader._failed.clear()  # as if the hold had run out
        backend.down = False
        assert reader.read(entry, 0, len(data)) == data
    finally:
        reader.close(wait=True)
