"""A ``REPO@NAME`` mount reads its branch's ref from the store at most once per ``ref_ttl``
(not once per lookup), and a tag or commit it names once per mount."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from s3fsv.mount.vfs import Filesystem, MountSpec
from s3fsv.store.cache import DiskCache
from s3fsv.store.store import Store
from s3fsv.store.transfer import put

FILES = 20


class KeyLog:
    """A backend that notes the key of every HEAD and GET it passes on."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.keys: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def head(self, key: str) -> Any:
        self.keys.append(key)
        return self.inner.head(key)

    def get(self, key: str, *args: Any, **kwargs: Any) -> Any:
        self.keys.append(key)
        return self.inner.get(key, *args, **kwargs)


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"file://{tmp_path}/store"
    repo = Store.init(url).create_repo("cams")
    src = tmp_path / "src"
    src.mkdir()
    for i in range(FILES):
        (src / f"f{i:02d}.txt").write_text(f"file {i}\n")
    cid, _ = put(repo, "main", src, "", "files")
    repo.refs.create_tag("v1", cid)
    return url


@pytest.fixture
def mount(tmp_path: Path, url: str) -> Iterator[Any]:
    made: list[Filesystem] = []

    def make(ref: str) -> tuple[Filesystem, KeyLog]:
        store = Store.open(url)
        log = store.backend = KeyLog(store.backend)
        spec = MountSpec(repo="cams", ref=ref, ref_ttl=60.0, read_only=True)
        fs = Filesystem(store, spec, DiskCache(tmp_path / f"cache-{ref}"))
        made.append(fs)
        return fs, log

    yield make
    for fs in made:
        fs.close()


def read_all(fs: Filesystem) -> None:
    for i in range(FILES):
        path = f"/f{i:02d}.txt"
        fs.getattr(path)
        fh = fs.open(path, os.O_RDONLY)
        assert bytes(fs.read(fh, 100, 0)) == f"file {i}\n".encode()
        fs.release(fh)


@pytest.mark.parametrize(("ref", "ref_key"), [("main", "branches/main"), ("v1", "branches/v1")])
def test_a_named_ref_is_read_once_not_per_lookup(mount: Any, ref: str, ref_key: str) -> None:
    fs, log = mount(ref)
    read_all(fs)
    read_all(fs)
    reads = [k for k in log.keys if k.endswith(f"refs/{ref_key}")]
    assert 1 <= len(reads) <= 2  # a HEAD and a GET of the branch (or a miss), once
