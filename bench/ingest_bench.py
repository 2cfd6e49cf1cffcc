"""Ingest benchmark: ``import`` of objects already in a bucket, and ``gc`` of a large store.

    .venv/bin/python bench/ingest_bench.py            # the issue's sizes
    .venv/bin/python bench/ingest_bench.py --quick    # a tenth of them, for checking a change

It starts its own SeaweedFS on 127.0.0.1. Rows and their targets:

- import: a zero-copy import of N small objects (one commit; every object is fetched once and
  hashed), against listing the same prefix with boto3 (target: at most 3x the listing), and,
  for scale, against boto3 GETs of every object (32 threads): what any import that reads each
  object pays at least;
- gc: a store of M objects (half of them reachable, half garbage), ``gc --dry-run`` (mark and
  list everything) and ``gc`` (which also deletes the garbage); objects per second, no target.

Prints a table and a final JSON line; exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from common import S3_THREADS, s3_client, say  # noqa: E402
from s3server import SeaweedServer  # noqa: E402

import s3fsv  # noqa: E402
from s3fsv.ingest.gc import Collector  # noqa: E402
from s3fsv.ingest.importer import Importer  # noqa: E402
from s3fsv.ingest.source import parse_origin  # noqa: E402
from s3fsv.store.objects import Commit, TreeEntry, sha256_hex  # noqa: E402
from s3fsv.store.store import Store  # noqa: E402
from s3fsv.store.tree import apply_changes  # noqa: E402

BUCKET = "ingest"
CHUNK = 4096  # the smallest chunk size: many objects for few bytes in the gc store
IMPORT_TARGET = 3.0


def put_all(client: object, keys: list[str], body: callable) -> None:  # type: ignore[valid-type]
    def one(key: str) -> None:
        client.put_object(Bucket=BUCKET, Key=key, Body=body(key))  # type: ignore[attr-defined]

    with ThreadPoolExecutor(max_workers=2 * S3_THREADS) as pool:
        list(pool.map(one, keys))


def list_prefix(client: object, prefix: str) -> int:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)  # type: ignore[attr-defined]
    return sum(len(p.get("Contents", ())) for p in pages)


def get_all(client: object, keys: list[str]) -> None:
    def one(key: str) -> None:
        client.get_object(Bucket=BUCKET, Key=key)["Body"].read()  # type: ignore[attr-defined]

    with ThreadPoolExecutor(max_workers=2 * S3_THREADS) as pool:
        list(pool.map(one, keys))


def bench_import(server: SeaweedServer, count: int, repeat: int) -> dict[str, float]:
    client = s3_client(server)
    keys = [f"incoming/cam{i % 20:02d}/{i:06d}.jpg" for i in range(count)]
    say(f"putting {count} objects")
    put_all(client, keys, lambda key: (key * 40).encode()[:2048])
    listing, getting, importing = [], [], []
    for rep in range(repeat):
        started = time.perf_counter()
        assert list_prefix(client, "incoming/") == count
        listing.append(time.perf_counter() - started)
        started = time.perf_counter()
        get_all(client, keys)
        getting.append(time.perf_counter() - started)
        with s3fsv.open_store(f"s3://{BUCKET}/store") as store:
            name = f"imp{rep}"
            store.create_repo(name)
            importer = Importer(store, parse_origin(f"s3://{BUCKET}/incoming/"), name, "main")
            started = time.perf_counter()
            report = importer.run_once()
            importing.append(time.perf_counter() - started)
            assert report.imported == count, report
        say(
            f"rep {rep + 1}: list {listing[-1]:.2f} s, get all {getting[-1]:.2f} s, "
            f"import {importing[-1]:.2f} s"
        )
    return {
        "list_s": statistics.median(listing),
        "get_s": statistics.median(getting),
        "import_s": statistics.median(importing),
    }


def build_gc_store(server: SeaweedServer, objects: int) -> None:
    """A store of ``objects`` chunk objects (plus a few trees and commits): half reachable
    from ``main`` as files of 10 chunks, half garbage (uploaded, never committed)."""
    store = Store.open(f"s3://{BUCKET}/gcstore")
    repo = store.create_repo("big", chunk_size=CHUNK)
    chunks = [os.urandom(CHUNK) for _ in range(objects)]
    ids = [sha256_hex(c) for c in chunks]
    say(f"putting {objects} objects")
    with ThreadPoolExecutor(max_workers=2 * S3_THREADS) as pool:
        list(pool.map(lambda c: repo.objects.put_bytes(c, check_exists=False), chunks))
    live = ids[: objects // 2]
    changes: dict[str, TreeEntry | None] = {}
    for f in range(len(live) // 10):
        part = tuple(live[f * 10 : f * 10 + 10])
        data_sha = sha256_hex(b"".join(chunks[f * 10 : f * 10 + 10]))
        name = f"f{f:06d}.bin"
        changes[f"d{f % 100:03d}/{name}"] = TreeEntry(
            name, "file", 0o644, 0, CHUNK * len(part), data_sha, part
        )
    tree = apply_changes(repo.objects, repo.commit_object(repo.resolve("main")).tree, changes)
    head = repo.refs.branch("main")

    cid = repo.objects.put(
        Commit(tree, (head.commit,), "bench", "2024-01-01T00:00:00.000000Z", "big")
    )
    repo.refs.move_branch("main", cid, head)


def bench_gc(server: SeaweedServer, objects: int) -> dict[str, float]:
    build_gc_store(server, objects)
    store = Store.open(f"s3://{BUCKET}/gcstore")
    started = time.perf_counter()
    dry = Collector(store, grace_s=0, dry_run=True).run()
    dry_s = time.perf_counter() - started
    started = time.perf_counter()
    done = Collector(store, grace_s=0).run()
    gc_s = time.perf_counter() - started
    listed = dry.repos["big"].objects
    say(f"gc: {listed} objects, dry run {dry_s:.1f} s; gc {gc_s:.1f} s, {done.deleted} deleted")
    assert done.deleted >= objects // 2, done
    return {"objects": listed, "dry_run_s": dry_s, "gc_s": gc_s, "deleted": done.deleted}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a tenth of the sizes, one rep")
    parser.add_argument("--import-objects", type=int, help="objects to import (10000)")
    parser.add_argument("--gc-objects", type=int, help="objects in the gc store (100000)")
    args = parser.parse_args()
    count = args.import_objects or (1000 if args.quick else 10_000)
    objects = args.gc_objects or (10_000 if args.quick else 100_000)
    repeat = 1 if args.quick else 3
    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as tmp:
        server = SeaweedServer(Path(tmp) / "weed", grace=3.0).start()
        try:
            env = server.env()
            os.environ.update(env)
            os.environ["XDG_CACHE_HOME"] = str(Path(tmp) / "cache")
            s3_client(server).create_bucket(Bucket=BUCKET)
            Store.init(f"s3://{BUCKET}/store")
            Store.init(f"s3://{BUCKET}/gcstore")
            imp = bench_import(server, count, repeat)
            gc = bench_gc(server, objects)
        finally:
            server.stop()
    ratio = imp["import_s"] / imp["list_s"]
    missed = ratio > IMPORT_TARGET
    print(f"{'row':<34} {'value':>12} {'target':>10}")
    print(f"{f'list {count} objects (boto3)':<34} {imp['list_s']:>10.2f} s {'':>10}")
    print(f"{f'boto3 GET of all {count} objects':<34} {imp['get_s']:>10.2f} s {'':>10}")
    print(f"{f'import {count} objects':<34} {imp['import_s']:>10.2f} s {'':>10}")
    print(f"{'import / list':<34} {ratio:>11.1f}x {f'<= {IMPORT_TARGET:.0f}x':>10}")
    print(f"{'import rate':<34} {count / imp['import_s']:>8.0f} obj/s {'':>10}")
    dry_row, gc_row = f"gc --dry-run, {gc['objects']} objects", f"gc, {gc['deleted']} deleted"
    print(f"{dry_row:<34} {gc['dry_run_s']:>10.1f} s")
    print(f"{gc_row:<34} {gc['gc_s']:>10.1f} s")
    print(f"{'gc rate':<34} {gc['objects'] / gc['gc_s']:>8.0f} obj/s")
    print(json.dumps({"import": imp, "import_ratio": ratio, "gc": gc, "missed": missed}))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
