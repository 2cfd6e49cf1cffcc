"""Scale check: committing one changed file must cost the same in a 100,000-file repo as in a
100-file one.

    .venv/bin/python bench/commit_scale.py                      # fresh file:// store in a temp dir
    .venv/bin/python bench/commit_scale.py --store file:///tmp/st
    .venv/bin/python bench/commit_scale.py --store s3://bucket/prefix --endpoint-url http://...

It builds two repos of the same shape (camera frames in ``cameras/<cam>/<day>/<hour>/`` plus one
flat directory ``archive/unsorted/`` that holds 20,000 files in the large repo), then, from a fresh
``Store``/``Repository`` (cold in-memory caches, as a new process would be), commits ONE changed
small file inside that flat directory, ``--repeat`` times. Every backend operation of the measured
commit is counted by a wrapper around the backend, so "written" means everything the commit put
on the store: the new content chunk, the rewritten trees and pages, the commit object and the ref.

Checks (medians over the repetitions, large repo): puts (objects + ref) <= 10, bytes put (objects
+ ref) <= 256 KiB, and the commit's wall time at most 3.0x the time in the small repo. Prints a
table and one JSON line; exits 1 if a check fails. ``--store memory://NAME`` also works; it
measures pure CPU (no I/O at all), where decoding and re-encoding the 20,000-entry directory's
page index and page weigh more than on any real store.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from s3fsv.store.backend import Backend, ObjectInfo, open_backend
from s3fsv.store.objects import TreeEntry, sha256_hex
from s3fsv.store.store import Store
from s3fsv.store.upload import Uploader

MAX_OBJECTS = 10
MAX_BYTES = 256 * 1024
MAX_RATIO = 3.0
BIG_DIR = "archive/unsorted"
FILE_MODE = 0o644
BASE_MTIME_NS = 1_717_200_000 * 10**9  # 2024-06-01T00:00:00Z


# -- repo shape -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """``cameras`` x ``days`` x ``hours`` directories of ``frames`` files each, plus ``big``
    files in ``BIG_DIR``."""

    cameras: int
    days: int
    hours: int
    frames: int
    big: int

    @property
    def total(self) -> int:
        return self.cameras * self.days * self.hours * self.frames + self.big

    def paths(self) -> Iterator[str]:
        for cam in range(self.cameras):
            for day in range(self.days):
                date = f"2024-06-{day + 1:02d}"
                for hour in range(self.hours):
                    hh = f"{6 + hour:02d}" if self.hours <= 18 else f"{hour:02d}"
                    for frame in range(self.frames):
                        n = (day * self.hours + hour) * self.frames + frame
                        yield f"cameras/cam-{cam:02d}/{date}/{hh}/frame-{n:05d}.jpg"
        for n in range(self.big):
            yield f"{BIG_DIR}/frame-{n:05d}.jpg"

    def target(self) -> str:
        """The file the measured commit changes: in the middle of the big directory."""
        return f"{BIG_DIR}/frame-{self.big // 2:05d}.jpg"


LARGE = Shape(cameras=10, days=10, hours=16, frames=50, big=20_000)  # 100,000 files
SMALL = Shape(cameras=2, days=2, hours=2, frames=10, big=20)  # 100 files


def content(rng: random.Random) -> bytes:
    return rng.randbytes(rng.randint(200, 2000))


# -- a backend that counts everything ---------------------------------------------------------


@dataclass
class Counts:
    object_puts: int = 0
    object_put_bytes: int = 0
    ref_puts: int = 0
    ref_put_bytes: int = 0
    other_puts: int = 0
    other_put_bytes: int = 0
    gets: int = 0
    get_bytes: int = 0
    heads: int = 0
    lists: int = 0
    put_keys: list[str] = field(default_factory=list)

    @property
    def puts(self) -> int:
        return self.object_puts + self.ref_puts + self.other_puts

    @property
    def put_bytes(self) -> int:
        return self.object_put_bytes + self.ref_put_bytes + self.other_put_bytes


class CountingBackend:
    """Delegates to a real backend and counts every call (successful puts with their bytes)."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.url = inner.url
        self.counts = Counts()
        self._lock = threading.Lock()

    def reset(self) -> Counts:
        with self._lock:
            old, self.counts = self.counts, Counts()
        return old

    def get(self, key: str, start: int | None = None, end: int | None = None) -> bytes:
        data = self.inner.get(key, start, end)
        with self._lock:
            self.counts.gets += 1
            self.counts.get_bytes += len(data)
        return data

    def head(self, key: str) -> ObjectInfo:
        with self._lock:
            self.counts.heads += 1
        return self.inner.head(key)

    def put(
        self,
        key: str,
        data: bytes,
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
        content_sha256: str | None = None,
    ) -> str:
        etag = self.inner.put(
            key,
            data,
            if_none_match=if_none_match,
            if_match=if_match,
            content_sha256=content_sha256,
        )
        with self._lock:
            c = self.counts
            c.put_keys.append(key)
            if "/objects/" in key:
                c.object_puts += 1
                c.object_put_bytes += len(data)
            elif "/refs/" in key:
                c.ref_puts += 1
                c.ref_put_bytes += len(data)
            else:
                c.other_puts += 1
                c.other_put_bytes += len(data)
        return etag

    def list(self, prefix: str = "") -> Iterator[str]:
        with self._lock:
            self.counts.lists += 1
        return self.inner.list(prefix)

    def list_prefixes(self, prefix: str = "") -> Iterator[str]:
        with self._lock:
            self.counts.lists += 1
        return self.inner.list_prefixes(prefix)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def close(self) -> None:
        self.inner.close()


# -- building ---------------------------------------------------------------------------------


def build(
    url: str, endpoint_url: str | None, repo_name: str, shape: Shape, threads: int, show: bool
) -> float:
    """Create ``repo_name`` with every file of ``shape`` in one commit; return the seconds taken."""
    start = time.perf_counter()
    store = Store.open(url, endpoint_url=endpoint_url)
    repo = store.create_repo(repo_name)
    objects = repo.objects
    rng = random.Random(f"s3fsv-bench-{shape.total}")
    changes: dict[str, TreeEntry] = {}
    pending: deque[Future[str]] = deque()
    bar = tqdm(total=shape.total, unit="file", desc=f"upload {repo_name}", disable=not show)
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="bench-upload") as pool:
        for i, path in enumerate(shape.paths()):
            data = content(rng)
            oid = sha256_hex(data)  # one chunk: the chunk id is the content's hash
            if len(data) > repo.chunk_size:
                raise SystemExit("bench files must be smaller than the repo's chunk size")
            # Every content is new: skip the existence HEAD and put with If-None-Match directly.
            pending.append(pool.submit(objects.put_bytes, data, check_exists=False))
            changes[path] = TreeEntry(
                path.rsplit("/", 1)[1], "file", FILE_MODE, BASE_MTIME_NS + i * 10**6,
                len(data), oid, (oid,),
            )  # fmt: skip
            while len(pending) > threads * 8:
                pending.popleft().result()
                bar.update()
        while pending:
            pending.popleft().result()
            bar.update()
    bar.close()
    t_commit = time.perf_counter()
    repo.commit("main", changes, f"bench: {shape.total} files", author="bench@s3fsv")
    if show:
        print(
            f"  committed {shape.total:,} entries in {time.perf_counter() - t_commit:.1f} s",
            file=sys.stderr,
        )
    store.close()
    return time.perf_counter() - start


# -- the measured commit ----------------------------------------------------------------------


@dataclass
class Sample:
    seconds: float
    writes: int  # ObjectStore.writes
    bytes_written: int  # ObjectStore.bytes_written
    counts: Counts


def one_commit(
    url: str, endpoint_url: str | None, repo_name: str, shape: Shape, rep: int
) -> Sample:
    """Open the store afresh (cold caches) and commit one changed file in the big directory."""
    backend = CountingBackend(open_backend(url, endpoint_url=endpoint_url))
    store = Store(backend)
    store.check_initialised()
    repo = store.repo(repo_name)
    path = shape.target()
    data = content(random.Random(f"s3fsv-bench-change-{rep}"))
    backend.reset()
    start = time.perf_counter()
    with Uploader(repo.objects, repo.chunk_size) as uploader:
        new = uploader.add_bytes(data)
        uploader.finish()
    entry = new.entry(path.rsplit("/", 1)[1], FILE_MODE, BASE_MTIME_NS + 10**15 + rep)
    repo.commit("main", {path: entry}, f"bench: change {path} ({rep})", author="bench@s3fsv")
    seconds = time.perf_counter() - start
    counts = backend.reset()
    sample = Sample(seconds, repo.objects.writes, repo.objects.bytes_written, counts)
    store.close()
    return sample


@dataclass
class Result:
    shape: Shape
    repo: str
    build_s: float
    samples: list[Sample] = field(default_factory=list)

    def median(self, attr: str) -> float:
        return statistics.median(_get(s, attr) for s in self.samples)

    def summary(self) -> dict[str, Any]:
        keys = [
            "writes",
            "bytes_written",
            "counts.object_puts",
            "counts.object_put_bytes",
            "counts.ref_puts",
            "counts.ref_put_bytes",
            "counts.puts",
            "counts.put_bytes",
            "counts.gets",
            "counts.get_bytes",
            "counts.heads",
            "counts.lists",
        ]
        out: dict[str, Any] = {
            "repo": self.repo,
            "files": self.shape.total,
            "big_dir_files": self.shape.big,
            "build_s": round(self.build_s, 3),
            "commit_s_median": round(self.median("seconds"), 6),
            "commit_s_all": [round(s.seconds, 6) for s in self.samples],
        }
        for key in keys:
            out[key.removeprefix("counts.")] = int(self.median(key))
        return out


def _get(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


# -- report -----------------------------------------------------------------------------------


def _span(seconds: list[float]) -> str:
    return f"{min(seconds) * 1e3:.2f}-{max(seconds) * 1e3:.2f}"


def report(small: Result, large: Result, store_url: str) -> bool:
    s, lg = small.summary(), large.summary()
    ratio = lg["commit_s_median"] / s["commit_s_median"]
    rows = [
        ("files in repo", f"{s['files']:,}", f"{lg['files']:,}"),
        (f"files in {BIG_DIR}/", f"{s['big_dir_files']:,}", f"{lg['big_dir_files']:,}"),
        ("build time (s)", f"{s['build_s']:.2f}", f"{lg['build_s']:.2f}"),
        ("objects written (ObjectStore.writes)", s["writes"], lg["writes"]),
        ("bytes written (ObjectStore.bytes_written)", f"{s['bytes_written']:,}",
         f"{lg['bytes_written']:,}"),
        ("ref puts", s["ref_puts"], lg["ref_puts"]),
        ("ref bytes", s["ref_put_bytes"], lg["ref_put_bytes"]),
        ("all puts (backend)", s["puts"], lg["puts"]),
        ("all bytes put (backend)", f"{s['put_bytes']:,}", f"{lg['put_bytes']:,}"),
        ("gets / bytes read", f"{s['gets']} / {s['get_bytes']:,}",
         f"{lg['gets']} / {lg['get_bytes']:,}"),
        ("heads / lists", f"{s['heads']} / {s['lists']}", f"{lg['heads']} / {lg['lists']}"),
        ("commit time, median (ms)", f"{s['commit_s_median'] * 1e3:.2f}",
         f"{lg['commit_s_median'] * 1e3:.2f}"),
        ("commit time, min-max (ms)", _span(s["commit_s_all"]), _span(lg["commit_s_all"])),
    ]  # fmt: skip
    width = max(len(r[0]) for r in rows)
    col = max(12, *(len(str(r[1])) for r in rows), *(len(str(r[2])) for r in rows))
    print(f"\ncommit of one changed file, store {store_url}, medians of {len(small.samples)}")
    print(f"{'':<{width}}  {'small':>{col}}  {'large':>{col}}")
    for name, a, b in rows:
        print(f"{name:<{width}}  {a!s:>{col}}  {b!s:>{col}}")
    print(f"{'time ratio large/small':<{width}}  {ratio:>{col * 2 + 2}.2f}")

    checks = {
        f"puts (objects + ref) <= {MAX_OBJECTS}": lg["puts"] <= MAX_OBJECTS,
        f"bytes put (objects + ref) <= {MAX_BYTES // 1024} KiB": lg["put_bytes"] <= MAX_BYTES,
        f"time ratio <= {MAX_RATIO}": ratio <= MAX_RATIO,
    }
    print()
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    passed = all(checks.values())
    line = {
        "bench": "commit_scale",
        "store": store_url,
        "small": s,
        "large": lg,
        "ratio": round(ratio, 3),
        "checks": checks,
        "pass": passed,
    }
    print(json.dumps(line, sort_keys=True))
    return passed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", help="store URL (default: a fresh file:// store in a temp dir)")
    parser.add_argument("--endpoint-url", help="S3 endpoint URL (for s3:// stores)")
    parser.add_argument("--repeat", type=int, default=5, help="timed commits per repo (default 5)")
    parser.add_argument("--threads", type=int, default=16, help="upload threads while building")
    parser.add_argument("--keep", action="store_true", help="keep the temporary store")
    parser.add_argument(
        "--verbose", action="store_true", help="list the keys each measured commit put"
    )
    args = parser.parse_args(argv)

    tmp: str | None = None
    url = args.store
    if url is None:
        tmp = tempfile.mkdtemp(prefix="s3fsv-bench-")
        url = Path(tmp, "store").as_uri()
    try:
        Store.init(url, endpoint_url=args.endpoint_url)
        run = uuid.uuid4().hex[:8]
        small = Result(SMALL, f"bench-small-{run}", 0.0)
        large = Result(LARGE, f"bench-large-{run}", 0.0)
        print(f"store {url}: building {LARGE.total:,}-file repo {large.repo}", file=sys.stderr)
        large.build_s = build(url, args.endpoint_url, large.repo, LARGE, args.threads, True)
        small.build_s = build(url, args.endpoint_url, small.repo, SMALL, args.threads, False)
        print(f"building done; timing {args.repeat} cold single-file commits each", file=sys.stderr)
        for rep in range(args.repeat):  # interleaved, so drift affects both alike
            for result in (small, large):
                result.samples.append(
                    one_commit(url, args.endpoint_url, result.repo, result.shape, rep)
                )
        if args.verbose:
            for result in (small, large):
                print(f"\nkeys put by the last commit in {result.repo}:")
                for key in result.samples[-1].counts.put_keys:
                    print(f"  {key}")
        passed = report(small, large, url)
    finally:
        if tmp is not None:
            if args.keep:
                print(f"kept {tmp}", file=sys.stderr)
            else:
                print(f"removing the temporary store {tmp}", file=sys.stderr)
                shutil.rmtree(tmp, ignore_errors=True)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
