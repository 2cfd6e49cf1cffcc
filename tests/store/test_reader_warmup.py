"""What a chunk reader does ahead of the first requests: start its threads, and load the
directories of the snapshots a mount is likely to walk (no FUSE, a file store)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from s3fsv.store.cache import DiskCache
from s3fsv.store.objects import Tree
from s3fsv.store.reader import ChunkReader
from s3fsv.store.store import Store
from s3fsv.store.transfer import put


def _eventually(check: Callable[[], bool]) -> bool:
    for _ in range(500):  # up to about 5 s
        if check():
            return True
        threading.Event().wait(0.01)
    return check()


def test_fetch_threads_start_before_they_are_needed(tmp_path: Path) -> None:
    """A new reader starts all its fetch threads in the background: started inside the first
    requests (as the pool would), they cost those requests milliseconds each."""
    repo = Store.init(f"file://{tmp_path}/store").create_repo("r")
    cache = DiskCache(tmp_path / "cache")
    reader = ChunkReader(repo.objects, cache, repo.chunk_size, threads=6)
    try:
        assert _eventually(lambda: len(reader._pool._threads) == 6)
    finally:
        reader.close(wait=True)


def test_warm_snapshot_loads_directories_breadth_first_up_to_a_limit(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for d in range(3):
        for sub in range(2):
            (src / f"d{d}" / f"s{sub}").mkdir(parents=True)
            (src / f"d{d}" / f"s{sub}" / "f.txt").write_text("x")
    store = Store.init(f"file://{tmp_path}/store")
    cid, _ = put(store.create_repo("r"), "main", src, "", "tree")
    repo = Store.open(f"file://{tmp_path}/store").repo("r")  # nothing decoded yet
    root = repo.commit_object(cid).tree
    other = Store.open(f"file://{tmp_path}/store").repo("r")  # its own decoded objects
    level1 = [e.tree for e in other.listdir(cid)]
    level2 = [e.tree for name in ("d0", "d1", "d2") for e in other.listdir(cid, name)]
    cache = DiskCache(tmp_path / "cache")
    reader = ChunkReader(repo.objects, cache, repo.chunk_size, threads=2)

    def decoded(tree_id: str) -> bool:
        return isinstance(repo.objects._decoded.get(tree_id), Tree)

    try:
        reader.warm_snapshot(root, limit=4)  # the root and the three directories below it
        assert _eventually(lambda: all(decoded(t) for t in [root, *level1]))
        reader.close(wait=True)
        assert not any(decoded(t) for t in level2)
    finally:
        reader.close(wait=True)


def test_a_repo_mount_warms_mains_head_and_each_commit_it_lists_once(tmp_path: Path) -> None:
    """A repo mount starts loading the directories of main's head at once; the first listing
    of another commit/<id> starts loading that snapshot's; listing it again, or a lookup of
    it, starts nothing more."""
    from s3fsv.mount.vfs import Filesystem, MountSpec

    (tmp_path / "src/d").mkdir(parents=True)
    (tmp_path / "src/d/f.txt").write_text("x")
    url = f"file://{tmp_path}/store"
    repo = Store.init(url).create_repo("r")
    old, _ = put(repo, "main", tmp_path / "src", "", "first")
    (tmp_path / "src/d/g.txt").write_text("y")
    head, _ = put(repo, "main", tmp_path / "src", "", "second")
    fs = Filesystem(Store.open(url), MountSpec("r", None, 5.0), DiskCache(tmp_path / "cache"))
    try:
        reader = fs._state("r").reader
        head_root = repo.commit_object(head).tree
        old_root = repo.commit_object(old).tree
        assert _eventually(lambda: list(reader._warmed) == [head_root])
        fs.getattr(f"/commit/{old}")
        assert old_root not in reader._warmed
        for _ in range(2):
            assert [name for name, _ in fs.readdir(f"/commit/{old}")] == ["d"]
        assert list(reader._warmed) == [head_root, old_root]
    finally:
        fs.close()


def test_a_page_a_look_ahead_is_loading_is_fetched_once(tmp_path: Path) -> None:
    """A listing that needs the pages a look-ahead is still fetching waits for those fetches
    instead of starting its own."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(600):  # more than one page
        (src / f"f{i:04d}").write_text(str(i))
    store = Store.init(f"file://{tmp_path}/store")
    cid, _ = put(store.create_repo("r"), "main", src, "", "many")
    repo = Store.open(f"file://{tmp_path}/store").repo("r")
    tree_id = repo.commit_object(cid).tree
    pages = {p.id for p in repo.objects.get(tree_id, Tree).pages}
    assert len(pages) > 1
    backend, gate, fetched = repo.objects.backend, threading.Event(), []
    real_get = backend.get

    def slow_get(key: str, *args: object) -> bytes:
        if any(key.endswith(p[2:]) for p in pages):
            fetched.append(key)
            gate.wait(5)
        return real_get(key, *args)

    backend.get = slow_get  # type: ignore[method-assign]
    reader = ChunkReader(repo.objects, DiskCache(tmp_path / "cache"), repo.chunk_size, threads=8)
    try:
        reader.load_pages(tree_id, wait=False)  # the look-ahead
        assert _eventually(lambda: len(fetched) == len(pages))
        listing = threading.Thread(target=reader.load_pages, args=(tree_id,))
        listing.start()
        threading.Event().wait(0.2)
        gate.set()
        listing.join(10)
        assert not listing.is_alive()
        assert sorted(fetched) == sorted(set(fetched)) and len(fetched) == len(pages)
    finally:
        gate.set()
        reader.close(wait=True)


def test_close_waits_for_running_fetches_and_drops_queued_ones(tmp_path: Path) -> None:
    """``close(wait=True)``, as a store handle's close uses it: the fetch already running
    finishes, and prefetches still queued never start (none may use a closed connection)."""
    repo = Store.init(f"file://{tmp_path}/store").create_repo("r")
    reader = ChunkReader(repo.objects, DiskCache(tmp_path / "cache"), repo.chunk_size, threads=1)
    started, release = threading.Event(), threading.Event()
    fetched: list[str] = []

    def slow_fetch(oid: str) -> bytes:
        fetched.append(oid)
        started.set()
        release.wait(5)
        return b""

    reader.objects.fetch_chunk = slow_fetch  # type: ignore[method-assign]
    assert reader.prefetch([f"{n:064x}" for n in range(5)])
    assert started.wait(5)
    closing = threading.Thread(target=reader.close, kwargs={"wait": True})
    closing.start()
    release.set()
    closing.join(5)
    assert not closing.is_alive()
    assert fetched == [f"{0:064x}"]
