"""``s3fsv purge`` on SeaweedFS: every branch and (when allowed) tag rewritten without the
matching files, originals deleted, a tombstone of patterns and counts, and after ``gc`` no
object of the bucket holds a purged byte (every object scanned, not an index trusted)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

import s3fsv
from s3fsv.store import wholefile
from s3fsv.store.cache import DiskCache
from s3fsv.store.objects import TreeEntry
from s3fsv.store.store import Store
from s3fsv.store.tree import resolve
from s3fsv.store.wholefile import WHOLE_MIN, WholeFiles
from tests.ingest.conftest import Bucket
from tests.mounting import mounted

pytestmark = pytest.mark.s3


def secret(house: str, i: int) -> bytes:
    return f"<{house} private image {i}>".encode() * 40


def _setup(bucket: Bucket, tmp_path: Path) -> None:
    """Imported images of two houses, and uploaded files of both sharing one pack."""
    for house in ("h1", "h2"):
        for i in range(3):
            bucket.put(f"{house}/{house}-{i}.jpg", secret(house, i), house=house)
    bucket.cli("import", f"s3://{bucket.name}/incoming/", "cams@main:houses", "--quiet")
    local = tmp_path / "uploads"
    for house in ("h1", "h2"):
        (local / house).mkdir(parents=True)
        for i in range(3):
            (local / house / f"{house}-note-{i}.txt").write_bytes(secret(house, 10 + i))
    bucket.cli("put", str(local), "cams@main:uploads", "-m", "notes")


def _paths(bucket: Bucket, ref: str) -> list[str]:
    with bucket.open() as store:
        return [e.path for e in store.repo("cams").walk(ref) if e.kind == "file"]


def test_purge_and_gc_leave_no_purged_byte_in_the_bucket(bucket: Bucket, tmp_path: Path) -> None:
    _setup(bucket, tmp_path)
    bucket.cli("branch", "create", "cams", "side")
    (tmp_path / "more.txt").write_bytes(secret("h1", 99))
    bucket.cli("put", str(tmp_path / "more.txt"), "cams@side:uploads/h1/late.txt", "-m", "late")
    bucket.cli("tag", "create", "cams", "v1", "--from", "main")
    head = bucket.cli("log", "cams", "--json").stdout
    args = ["purge", "cams", "--match", "houses/h1/**", "--match", "uploads/h1"]
    args += ["--reason", "customer h1 left"]

    refused = bucket.cli(*args, check=False)
    assert refused.returncode == 2 and "--include-tags" in refused.stderr
    dry = bucket.cli(*args, "--include-tags", "--dry-run").stdout
    assert "houses/h1/h1-0.jpg" in dry and f"s3://{bucket.name}/incoming/h1/h1-2.jpg" in dry
    assert bucket.cli("log", "cams", "--json").stdout == head  # nothing changed yet

    done = bucket.cli(*args, "--include-tags").stdout
    assert "purged cams: tombstone" in done
    for ref in ("main", "side", "v1"):
        paths = _paths(bucket, ref)
        assert paths and not [p for p in paths if "h1" in p], (ref, paths)
    with bucket.open() as store:  # what stays is intact, including files moved out of packs
        repo = store.repo("cams")
        assert repo.read_bytes("main", "uploads/h2/h2-note-1.txt") == secret("h2", 11)
        assert repo.read_bytes("v1", "houses/h2/h2-2.jpg") == secret("h2", 2)
    originals = [k for k in bucket.objects() if k.startswith("incoming/")]
    assert sorted(originals) == [f"incoming/h2/h2-{i}.jpg" for i in range(3)]

    stones = json.loads(bucket.cli("tombstones", "--json").stdout)
    assert len(stones) == 1
    stone = stones[0]
    assert stone["reason"] == "customer h1 left" and stone["state"] == "done"
    assert stone["match"] == ["houses/h1/**", "uploads/h1"] and stone["by"]
    assert stone["counts"]["files"] == 7 and stone["counts"]["originals"] == 3
    assert "h1-0.jpg" not in json.dumps(stone)  # patterns and counts, never paths or content

    gc = bucket.cli("gc").stdout  # the default grace: condemned objects go at once anyway
    assert "condemned by purges" in gc
    leaks = {
        key
        for key, data in bucket.objects().items()
        if b"<h1 private image" in data  # any purged file's bytes, whole or in part
    }
    assert not leaks, f"purged bytes remain in {sorted(leaks)}"


def test_pinned_mounts_lose_purged_files_and_their_cache(bucket: Bucket, tmp_path: Path) -> None:
    _setup(bucket, tmp_path)
    with bucket.open() as store:
        pinned = store.repo("cams").resolve("main")
        h1 = store.repo("cams").stat(pinned, "houses/h1/h1-1.jpg").sha256
    cache = tmp_path / "mount-cache"
    options = ("--cache-dir", str(cache), "--ref-ttl", "1")
    with (
        mounted(f"{bucket.store_url}/cams@{pinned}", tmp_path / "pin", bucket.env, *options) as pin,
        mounted(bucket.store_url, tmp_path / "all", bucket.env, *options) as whole,
    ):
        view = whole / "cams" / "commit" / pinned / "houses"
        assert (pin / "houses/h1/h1-1.jpg").read_bytes() == secret("h1", 1)
        assert (view / "h1/h1-1.jpg").read_bytes() == secret("h1", 1)
        assert list(cache.rglob(h1[2:]))  # cached on this machine

        bucket.cli("purge", "cams", "--match", "houses/h1", "--reason", "erasure request")

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            gone = not (pin / "houses/h1/h1-1.jpg").exists()
            gone = gone and not (view / "h1" / "h1-1.jpg").exists()
            if gone and not list(cache.rglob(h1[2:])):
                break
            time.sleep(0.5)
        assert not (pin / "houses/h1/h1-1.jpg").exists()
        assert not (view / "h1/h1-1.jpg").exists()
        assert not list(cache.rglob(h1[2:])), "the purged content is still cached"
        assert (pin / "houses/h2/h2-1.jpg").read_bytes() == secret("h2", 1)


DETECT = (
    "import os, sys\n"
    "src, out = sys.argv[1], sys.argv[2]\n"
    "for root, _, files in os.walk(src):\n"
    "    for name in files:\n"
    "        data = open(os.path.join(root, name), 'rb').read()\n"
    "        open(os.path.join(out, name + '.json'), 'w').write(str(len(data)))\n"
)


def test_cascade_purges_the_outputs_pipelines_made_from_purged_files(
    bucket: Bucket, tmp_path: Path
) -> None:
    _setup(bucket, tmp_path)
    bucket.cli("repo", "create", "det")
    bucket.cli(
        "pipeline", "create", "--name", "sizes", "--input", "cams@main:houses/*/*",
        "--output", "det@main", "--batch", "4", "--", sys.executable, "-c", DETECT, "{in}", "{out}",
    )  # fmt: skip
    bucket.cli("pipeline", "run", "--quiet")
    assert "h1-0.jpg.json" in bucket.cli("ls", "det@main").stdout

    listed = bucket.cli("purge", "cams", "--match", "houses/h1/**", "--reason", "r", "--dry-run")
    assert "downstream: pipeline sizes -> det@main: 3 output(s)" in listed.stdout
    done = bucket.cli("purge", "cams", "--match", "houses/h1/**", "--reason", "r", "--cascade")
    assert "purged det: tombstone" in done.stdout
    left = bucket.cli("ls", "det@main").stdout
    assert "h1-" not in left and "h2-0.jpg.json" in left
    stones = json.loads(bucket.cli("tombstones", "--json").stdout)
    parent = next(s for s in stones if s["repo"] == "cams")
    child = next(s for s in stones if s["repo"] == "det")
    assert child["parent"] == parent["id"] and parent["cascade"] == [child["id"]]
    assert child["counts"]["files"] == 3


def test_purge_drops_whole_file_cache_entries_of_purged_content(
    bucket: Bucket, tmp_path: Path
) -> None:
    """Passthrough serves whole-file cache entries without asking the daemon: the purge's own
    eviction on this machine deletes those of purged content (and keeps the others)."""

    def big(house: str) -> bytes:  # big enough to be served whole
        return secret(house, 0) * (WHOLE_MIN // 500)

    for house in ("h1", "h2"):
        bucket.put(f"{house}/big.jpg", big(house), house=house)
    bucket.cli("import", f"s3://{bucket.name}/incoming/", "cams@main:houses", "--quiet")
    cache = DiskCache(Path(bucket.env["XDG_CACHE_HOME"]) / "s3fsv")  # the CLI's cache
    whole = WholeFiles(cache)
    entries = {}
    with s3fsv.open_store(bucket.store_url, cache_dir=cache.root) as store:
        repo = store.repo("cams")
        for house in ("h1", "h2"):
            path = f"houses/{house}/big.jpg"
            assert repo.read_bytes("main", path) == big(house)
            entries[house] = _tree_entry(bucket, path)
            assert whole.materialise(entries[house]) is not None
    h1, h2 = entries["h1"], entries["h2"]
    assert h1.size >= WHOLE_MIN and whole.find(h1) and cache.get(h1.chunks[0]) is not None

    bucket.cli("purge", "cams", "--match", "houses/h1/**", "--reason", "erasure request")

    assert whole.find(h1) is None and not wholefile.entry_path(cache, h1.sha256).exists()
    assert not [oid for oid in h1.chunks if cache.path(oid).exists()]  # and its chunks
    assert whole.find(h2) is not None  # content that stays is still served whole
    whole.close()


def _tree_entry(bucket: Bucket, path: str) -> TreeEntry:
    repo = Store.open(bucket.store_url).repo("cams")
    return resolve(repo.objects, repo.commit_object(repo.resolve("main")).tree, path)
