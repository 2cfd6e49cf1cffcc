"""A walk lists a directory's siblings one after another: listing one loads the next ones'
listings ahead (``Filesystem`` without FUSE, a file store)."""

from __future__ import annotations

from pathlib import Path

from s3fsv.mount.vfs import DIR_LOOKAHEAD, Filesystem, MountSpec
from s3fsv.store.cache import DiskCache
from s3fsv.store.store import Store
from s3fsv.store.transfer import put


def test_listing_a_directory_loads_its_next_siblings_ahead(tmp_path: Path) -> None:
    src = tmp_path / "src"
    names = [f"d{i:02d}" for i in range(DIR_LOOKAHEAD + 4)]
    for name in names:
        (src / name).mkdir(parents=True)
        (src / name / "f.txt").write_text(name)
    (src / "zfile").write_text("not a directory")
    url = f"file://{tmp_path}/store"
    repo = Store.init(url).create_repo("r")
    cid, _ = put(repo, "main", src, "", "dirs")
    trees = {e.name: e.tree for e in repo.listdir(cid)}
    fs = Filesystem(Store.open(url), MountSpec("r", cid, 5.0), DiskCache(tmp_path / "cache"))
    try:
        reader = fs._state("r").reader
        asked: list[str] = []
        reader.warm_trees = lambda ids, limit=64: asked.extend(ids)  # type: ignore[method-assign]
        assert [n for n, _ in fs.readdir("/d03")] == ["f.txt"]
        # The DIR_LOOKAHEAD entries after d03, all directories here (the file comes later).
        assert asked == [trees[n] for n in names[4 : 4 + DIR_LOOKAHEAD]]
    finally:
        fs.close()
