"""Store outages without FUSE or an S3 server: the mount's circuit breaker (``s3fsv.mount.outage``)
over a file store that can be switched off, alone and under the chunk reader."""

from __future__ import annotations

import argparse
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from s3fsv.errors import StoreUnavailable
from s3fsv.mount import outage as outage_module
from s3fsv.mount.daemon import make_filesystem
from s3fsv.mount.options import Source
from s3fsv.mount.outage import GuardedBackend, Outage
from s3fsv.store import backend as backend_module
from s3fsv.store.backend.base import ObjectInfo
from s3fsv.store.backend.file import FileBackend
from s3fsv.store.cache import DiskCache
from s3fsv.store.objects import TreeEntry, sha256_hex
from s3fsv.store.objectstore import ObjectStore
from s3fsv.store.reader import ChunkReader
from s3fsv.store.store import Store


class SwitchedBackend(FileBackend):
    """A file store that can be switched off. ``tried`` counts the reads and listings that
    reached it while it was off; probes (``head``) can be held at ``gate``."""

    down = False
    tried = 0

    def __init__(self, root: str) -> None:
        super().__init__(root)
        self.gate = threading.Event()
        self.gate.set()

    def _check(self) -> None:
        if self.down:
            self.tried += 1
            raise StoreUnavailable("cannot reach the store (switched off)")

    def get(self, key: str, start: int | None = None, end: int | None = None) -> bytes:
        self._check()
        return super().get(key, start, end)

    def read_into(self, key: str, alloc: Callable[[int], Any]) -> Any:
        self._check()
        return super().read_into(key, alloc)

    def list(self, prefix: str = "") -> Iterator[str]:
        self._check()
        return super().list(prefix)

    def head(self, key: str) -> ObjectInfo:
        self.gate.wait()
        if self.down:
            raise StoreUnavailable("cannot reach the store (switched off)")
        return super().head(key)


@pytest.fixture
def switched(tmp_path: Path) -> Iterator[tuple[SwitchedBackend, GuardedBackend]]:
    inner = SwitchedBackend(str(tmp_path / "store"))
    guarded = GuardedBackend(inner, Outage(lambda: inner.head("s3fsv.json")))
    yield inner, guarded
    inner.gate.set()
    guarded.outage.settle(10)


def test_requests_fail_at_once_while_the_store_is_down(
    switched: tuple[SwitchedBackend, GuardedBackend],
) -> None:
    """Only the first request waits for the store; later ones fail without reaching it,
    listings too, until a probe finds it back. Then requests go through again."""
    inner, guarded = switched
    inner.put("k", b"value")
    inner.down = True
    for _ in range(4):
        with pytest.raises(StoreUnavailable):
            guarded.get("k")
    with pytest.raises(StoreUnavailable):
        list(guarded.list(""))
    assert inner.tried == 1
    inner.down = False
    assert guarded.outage.settle(10)
    assert guarded.get("k") == b"value"  # starts a probe, which finds the store back
    assert list(guarded.list("")) == ["k"]


def _fail_once(inner: SwitchedBackend, guarded: GuardedBackend) -> None:
    """Store ``k``, switch the store off, and let one request find it down."""
    inner.put("k", b"value")
    inner.down = True
    with pytest.raises(StoreUnavailable):
        guarded.get("k")


def test_a_hung_probe_is_not_waited_for(
    switched: tuple[SwitchedBackend, GuardedBackend], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store that accepts requests and never answers: a request waits for the probe it
    starts only ``PROBE_WAIT``, and not at all for one already running."""
    monkeypatch.setattr(outage_module, "PROBE_WAIT", 0.01)
    inner, guarded = switched
    _fail_once(inner, guarded)
    inner.gate.clear()  # probes now hang
    for _ in range(3):
        with pytest.raises(StoreUnavailable):
            guarded.get("k")
    assert not guarded.outage.settle(0)  # the probe is still hanging
    assert inner.tried == 1
    inner.down = False
    inner.gate.set()
    assert guarded.outage.settle(10)
    assert guarded.get("k") == b"value"


def test_every_request_of_the_moment_the_store_returns_goes_through(
    switched: tuple[SwitchedBackend, GuardedBackend], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Requests that arrive while a young probe runs wait for it with the one that started
    it (the kernel sends a read and its read-ahead together): none fails with an outage that
    just ended."""
    monkeypatch.setattr(outage_module, "PROBE_WAIT", 30.0)
    inner, guarded = switched
    _fail_once(inner, guarded)
    assert guarded.outage.settle(10)
    inner.down = False
    inner.gate.clear()  # the next probe waits here
    results: list[object] = []

    def request() -> None:
        try:
            results.append(guarded.get("k"))
        except StoreUnavailable as err:
            results.append(err)

    threads = [threading.Thread(target=request) for _ in range(3)]
    for t in threads:
        t.start()
    assert not guarded.outage.settle(0.2)  # the probe is held
    inner.gate.set()
    for t in threads:
        t.join(10)
    assert results == [b"value"] * 3


def test_reader_retries_do_not_wait_for_the_store_again(tmp_path: Path) -> None:
    """The kernel turns a failed read-ahead into a plain read of the same range at once; that
    read must fail from the outage, not wait out the store's timeouts a second time. A chunk
    in the cache stays readable throughout."""
    inner = SwitchedBackend(str(tmp_path / "store"))
    guarded = GuardedBackend(inner, Outage(lambda: inner.head("s3fsv.json")))
    cached, missing = os.urandom(100_000), os.urandom(100_000)
    cached_id = ObjectStore(inner, "r").put_bytes(cached)
    missing_id = ObjectStore(inner, "r").put_bytes(missing)
    cache = DiskCache(tmp_path / "cache")
    reader = ChunkReader(ObjectStore(guarded, "r", cache), cache, 1 << 20, threads=2)

    def entry(data: bytes, oid: str) -> TreeEntry:
        return TreeEntry("f", "file", 0o644, 0, len(data), sha256_hex(data), (oid,))

    try:
        assert reader.read(entry(cached, cached_id), 0, len(cached)) == cached
        inner.down = True
        for _ in range(3):
            with pytest.raises(StoreUnavailable):
                reader.read(entry(missing, missing_id), 0, 4096)
        assert inner.tried == 1
        assert reader.read(entry(cached, cached_id), 0, len(cached)) == cached
        inner.down = False
        assert guarded.outage.settle(10)
        assert reader.read(entry(missing, missing_id), 0, len(missing)) == missing
    finally:
        reader.close(wait=True)
        guarded.outage.settle(10)


def test_closing_a_mounts_store_closes_the_probes_backend_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed: list[str] = []

    class Closing(FileBackend):
        def close(self) -> None:
            closed.append(str(self.root))

    url = f"file://{tmp_path}/store"
    Store.init(url).close()
    store = Store.open(url)
    store.backend = Closing(str(tmp_path / "store"))
    probe = Closing(str(tmp_path / "store"))
    monkeypatch.setattr(backend_module, "open_backend", lambda *a, **kw: probe)
    args = argparse.Namespace(cache_dir=str(tmp_path / "cache"), cache_size="1G")
    fs = make_filesystem(args, store, Source(url, None, None))
    fs.close()
    store.close()
    assert len(closed) == 2  # the store's own backend and the probe's
