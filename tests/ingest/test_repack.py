"""gc rewrites a pack whose live members fill less than half of it: deleting most of a pack
frees most of its bytes, the files that stay read the same (through the moved record), and
the record goes once nothing names the old pack."""

from __future__ import annotations

import os
from pathlib import Path

from s3fsv.ingest.gc import Collector
from s3fsv.ingest.retention import set_rule
from s3fsv.store.records import Records
from s3fsv.store.store import Store
from s3fsv.store.upload import Uploader


def _bytes_below(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def test_gc_rewrites_mostly_dead_packs(tmp_path: Path) -> None:
    store = Store.init(f"file://{tmp_path}/store")
    repo = store.create_repo("r")
    files = {f"f{i}.bin": os.urandom(10_000) for i in range(10)}
    with Uploader(repo.objects, repo.chunk_size) as up:  # one pack of ten files
        contents = {name: up.add_bytes(data) for name, data in files.items()}
        up.finish()
    entries = {n: c.entry(n, 0o644, 0) for n, c in contents.items()}
    assert len({e.pack for e in entries.values()}) == 1
    repo.commit("main", entries, "ten")
    keep = ["f3.bin", "f7.bin"]
    repo.commit("main", {n: None for n in files if n not in keep}, "keep two")
    # History keeps the first commit's files, so its pack is all live: nothing to rewrite.
    first = Collector(store, grace_s=0).run().repos["r"]
    assert first.repacked == 0
    objects = tmp_path / "store" / "r" / "objects"
    before = _bytes_below(objects)
    # Now only the head counts: history past 0 days is not kept.
    set_rule(Records(store.backend, "retention"), "r", "main", 0, "t@h")
    report = Collector(store, grace_s=0).run().repos["r"]
    assert report.repacked == 1 and report.written == 20_000
    assert before - _bytes_below(objects) >= 75_000  # most of the pack's bytes are freed

    fresh = Store.open(f"file://{tmp_path}/store").repo("r")  # nothing cached
    head = fresh.resolve("main")
    for name in keep:
        entry = fresh.stat(head, name)
        assert b"".join(fresh.read_file(entry)) == files[name]
    moved = tmp_path / "store" / "r" / "moved"
    assert len(list(moved.iterdir())) == 1
    assert Collector(store, grace_s=0).run().repos["r"].repacked == 0  # record still needed

    # Another writer (this one remembers objects gc has since deleted: the grace period of
    # 0 used here is only for a store nothing else writes to).
    repo = Store.open(f"file://{tmp_path}/store").repo("r")
    repo.commit("main", {n: None for n in keep}, "none")
    Collector(store, grace_s=0).run()
    assert not list(moved.iterdir())  # nothing names the old pack: the record goes
    assert not [p for p in objects.rglob("*") if p.is_file() and p.stat().st_size >= 10_000]
