"""Ingest benchmark: ``import`` of objects already in a bucket, and ``gc`` of a large store.

    .venv/bin/python bench/ingest_bench.py            # the issue's sizes
    .venv/bin/python bench/ingest_bench.py --quick    # a tenth of them, for checking a change

It starts its own SeaweedFS on 127.0.0.1. Rows and their targets:

- import: a zero-copy import of N small objects (one commit; every object is fetched once and
  hashed), against listing the same prefix with boto3 (target: at most 3x the listing), and
  against the best plain boto3 can do to GET every object (a shared client, its connection
  pool as large as its threads, 16 and 32 threads, the faster counted): what any import that
  reads each object through boto3 pays at least. Each step also reports the CPU seconds of
  this process and of SeaweedFS (which load does not inflate): on a small machine the server's
  CPU per GET, not the client, bounds how fast any reader can fetch every object;
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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from common import S3_THREADS, cpu_seconds, s3_client, say, wait_until_idle  # noqa: E402
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
GET_THREADS = (16, 32)  # plain boto3's best: both tried, the faster counted


def put_all(client: Any, keys: list[str], body: Callable[[str], bytes]) -> None:
    def one(key: str) -> None:
        client.put_object(Bucket=BUCKET, Key=key, Body=body(key))

    with ThreadPoolExecutor(max_workers=2 * S3_THREADS) as pool:
        list(pool.map(one, keys))


def list_prefix(client: Any, prefix: str) -> int:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return sum(len(p.get("Contents", ())) for p in pages)


def get_all(client: Any, keys: list[str], threads: int) -> None:
    def one(key: str) -> None:
        client.get_object(Bucket=BUCKET, Key=key)["Body"].read()

    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(one, keys))


class Step:
    """Wall time, this process's CPU time and the server's CPU time of one measured step."""

    def __init__(self, server_pid: int | None) -> None:
        self.pid = server_pid

    def __enter__(self) -> Step:
        wait_until_idle(self.pid)  # the server's leftover work is not this step's
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        self.server = cpu_seconds(self.pid) or 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu
        self.server = (cpu_seconds(self.pid) or 0.0) - self.server

    def row(self) -> tuple[float, float, float]:
        return (self.wall, self.cpu, self.server)


def bench_import(server: SeaweedServer, count: int, repeat: int) -> dict[str, list[float]]:
    """Median (wall, client CPU, server CPU) seconds of each step, over ``repeat`` runs."""
    pid = server._proc.pid if server._proc else None
    client = s3_client(server)
    keys = [f"incoming/cam{i % 20:02d}/{i:06d}.jpg" for i in range(count)]
    say(f"putting {count} objects")
    put_all(client, keys, lambda key: (key * 40).encode()[:2048])
    clients = {n: s3_client(server, pool=n) for n in GET_THREADS}
    runs: dict[str, list[tuple[float, float, float]]] = {}
    for rep in range(repeat):
        with Step(pid) as step:
            assert list_prefix(client, "incoming/") == count
        runs.setdefault("list", []).append(step.row())
        for n in GET_THREADS:
            with Step(pid) as step:
                get_all(clients[n], keys, n)
            runs.setdefault(f"get{n}", []).append(step.row())
        with s3fsv.open_store(f"s3://{BUCKET}/store") as store:
            name = f"imp{rep}"
            store.create_repo(name)
            importer = Importer(store, parse_origin(f"s3://{BUCKET}/incoming/"), name, "main")
            with Step(pid) as step:
                report = importer.run_once()
            runs.setdefault("import", []).append(step.row())
            assert report.imported == count, report
        shown = ", ".join(f"{k} {v[-1][0]:.2f} s" for k, v in runs.items())
        say(f"rep {rep + 1}: {shown}")
    out = {k: [statistics.median(r[i] for r in v) for i in range(3)] for k, v in runs.items()}
    out["get"] = min((out[f"get{n}"] for n in GET_THREADS), key=lambda r: r[0])
    return out


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
    ratio = imp["import"][0] / imp["list"][0]
    missed = ratio > IMPORT_TARGET
    print(f"{'row':<36} {'wall':>9} {'cpu':>8} {'server cpu':>11} {'target':>9}")

    def row(label: str, key: str) -> None:
        wall, cpu, srv = imp[key]
        print(f"{label:<36} {wall:>7.2f} s {cpu:>6.2f} s {srv:>9.2f} s")

    row(f"list {count} objects (boto3)", "list")
    for n in GET_THREADS:
        row(f"boto3 GET of all, {n} threads", f"get{n}")
    row(f"import {count} objects", "import")
    print(f"{'import / list':<36} {ratio:>8.1f}x {'':>20} {f'<= {IMPORT_TARGET:.0f}x':>9}")
    best = imp["import"][0] / imp["get"][0]
    print(f"{'import / best boto3 GET of all':<36} {best:>8.2f}x")
    per_get = imp["get"][2] / count * 1e6
    per_list = imp["list"][2] / count * 1e6
    print(f"{'server cpu per object: GET, list':<36} {per_get:>6.0f} us {per_list:>5.0f} us")
    floor = imp["get"][2] / (os.cpu_count() or 1)  # if the server had every core to itself
    times = floor / imp["list"][0]
    print(f"{'server cpu of GET all / cores':<36} {floor:>7.2f} s = {times:.1f}x list")
    print(f"{'import rate':<36} {count / imp['import'][0]:>6.0f}/s")
    dry_row, gc_row = f"gc --dry-run, {gc['objects']} objects", f"gc, {gc['deleted']} deleted"
    print(f"{dry_row:<36} {gc['dry_run_s']:>7.1f} s")
    print(f"{gc_row:<36} {gc['gc_s']:>7.1f} s")
    print(f"{'gc rate':<36} {gc['objects'] / gc['gc_s']:>6.0f}/s")
    print(json.dumps({"import": imp, "import_ratio": ratio, "gc": gc, "missed": missed}))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
