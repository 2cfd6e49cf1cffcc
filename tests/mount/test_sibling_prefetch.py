"""Opening files in name order prefetches the packed files after them in spans, one ranged
read for many files, however small they are (``Filesystem`` without FUSE, a file store)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from s3fsv.mount.vfs import Filesystem, MountSpec
from s3fsv.mount.vfs_read import SIBLING_LOOKAHEAD
from s3fsv.store.backend.file import FileBackend
from s3fsv.store.cache import DiskCache
from s3fsv.store.reader import SPAN_MIN
from s3fsv.store.store import Store
from s3fsv.store.transfer import put

SIZE = 4096


def test_tiny_packed_files_read_in_order_cost_a_request_per_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A whole look-ahead window of these files is shorter than a span worth a request alone.
    assert SIBLING_LOOKAHEAD * SIZE < SPAN_MIN
    count = 4 * SIBLING_LOOKAHEAD
    src = tmp_path / "src" / "small"
    src.mkdir(parents=True)
    contents = {f"f{i:04d}": os.urandom(SIZE) for i in range(count)}
    for name, data in contents.items():
        (src / name).write_bytes(data)
    url = f"file://{tmp_path}/store"
    repo = Store.init(url).create_repo("r")
    cid, _ = put(repo, "main", tmp_path / "src", "", "tiny files")
    ranged = 0
    lock = threading.Lock()
    real_get = FileBackend.get

    def counting_get(
        self: FileBackend, key: str, start: int | None = None, end: int | None = None
    ) -> bytes:
        nonlocal ranged
        if start is not None:
            with lock:
                ranged += 1
        return real_get(self, key, start, end)

    monkeypatch.setattr(FileBackend, "get", counting_get)
    fs = Filesystem(Store.open(url), MountSpec("r", cid, 5.0), DiskCache(tmp_path / "cache"))
    try:
        for name, data in contents.items():
            fh = fs.open(f"/small/{name}", os.O_RDONLY)
            try:
                assert bytes(fs.read(fh, SIZE + 1, 0)) == data
            finally:
                fs.release(fh)
    finally:
        fs.close()
    # One read for the first file, then spans: about one per window, not one per file.
    assert ranged <= 2 * count // SIBLING_LOOKAHEAD + 2
