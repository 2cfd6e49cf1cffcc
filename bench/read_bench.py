"""Read-path benchmark: s3fsv mounts against what boto3, a local disk and an ideal Python FUSE
passthrough achieve on the same machine, in the same run.

    .venv/bin/python bench/read_bench.py            # 3 repetitions per figure (median)
    .venv/bin/python bench/read_bench.py --quick    # 1 repetition

It starts its own SeaweedFS on 127.0.0.1 (tests/s3server.py), creates a bucket, an s3fsv store and
a repo, and commits one 1 GiB file of random bytes plus 2,000 files of 100 KiB in 20 directories
(``transfer.put``). The same files are kept on local disk (served by ``bench/passthrough.py``, the
ceiling) and uploaded as plain S3 objects (the boto3 baseline). Every s3fsv figure is taken through
the real CLI (``s3fsv mount SRC MP --cache-dir DIR`` / ``s3fsv unmount MP``) in two ways:

- ``pinned``: ``s3://BUCKET/store/REPO@<commit>``, an immutable mount (the main figure);
- ``repo``:   ``s3://BUCKET/store/REPO``, reading below ``commit/<commit>/`` (secondary).

"Cold" means a fresh mount with an empty cache directory and a dropped kernel page cache
(``sync; echo 3 > /proc/sys/vm/drop_caches``, needs root); "warm" means a fresh mount (new daemon)
on a filled cache directory, page cache dropped. Each figure is the median of ``--repeat`` runs.
Prints a table (s3fsv figure, baseline, ratio, target, PASS/FAIL) and a final JSON line; exits 1
when a main (pinned) target fails. Progress goes to stderr. Every mount and the server are
stopped at the end, also on errors and Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))

from common import (  # noqa: E402
    cpu_seconds,
    drop_caches,
    drop_caches_worked,
    elapsed,
    repetitions,
    run_repetitions,
    s3_client,
    say,
    standard_arguments,
    wait_until_idle,
)
from mounts import MountBench  # noqa: E402
from read_workloads import (  # noqa: E402
    BUCKET,
    PLAIN,
    SMALL_SIZE,
    Dataset,
    MiB,
    make_dataset,
    read_sequential,
    read_small_files,
    run_find,
    s3_small,
    s3_stream,
    same_content,
    upload_plain,
)

from s3fsv.store import transfer  # noqa: E402
from s3fsv.store.store import Store  # noqa: E402

STORE_PREFIX = "store"
REPO = "data"


# -- data -----------------------------------------------------------------------------------------


# -- page cache -----------------------------------------------------------------------------------


# -- the workloads (what a user's script does) ----------------------------------------------------


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# -- boto3 baselines ------------------------------------------------------------------------------


# -- mounts ---------------------------------------------------------------------------------------


# -- results --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    title: str
    mount: str  # "pinned" (main figure), "repo" (secondary)
    measured: str  # key into the samples
    baseline: str
    baseline_label: str
    target: float

    @property
    def main(self) -> bool:
        return self.mount == "pinned"


ROWS = [
    Row("Cold 1 GiB sequential read", "pinned", "big.cold.pinned", "big.cold.s3", "boto3 GET", 1.5),
    Row("Cold 1 GiB sequential read", "repo", "big.cold.repo", "big.cold.s3", "boto3 GET", 1.5),
    Row("Warm 1 GiB read", "pinned", "big.warm.pinned", "big.warm.pt", "passthrough", 1.3),
    Row("Warm 1 GiB read", "repo", "big.warm.repo", "big.warm.pt", "passthrough", 1.3),
    Row("Re-read, same mount", "pinned", "big.reread.pinned", "big.reread.local", "local", 3.0),
    Row("Re-read, same mount", "repo", "big.reread.repo", "big.reread.local", "local", 3.0),
    Row("Cold sorted small files", "pinned", "small.cold.pinned", "small.cold.s3", "boto3x16", 1.2),
    Row("Cold sorted small files", "repo", "small.cold.repo", "small.cold.s3", "boto3x16", 1.2),
    Row("Warm sorted small files", "pinned", "small.warm.pinned", "small.warm.pt", "passthru", 1.3),
    Row("Warm sorted small files", "repo", "small.warm.repo", "small.warm.pt", "passthru", 1.3),
    Row("find over the tree", "pinned", "find.pinned", "find.pt", "find passthru", 1.5),
    Row("find over the tree", "repo", "find.repo", "find.pt", "find passthru", 1.5),
]
# With --metrics: the pinned mount again with --metrics-addr, against the same mount without.
METRICS_ROWS = [
    Row("Metrics: cold 1 GiB", "metrics", "big.cold.metrics", "big.cold.pinned", "off", 1.02),
    Row("Metrics: warm 1 GiB", "metrics", "big.warm.metrics", "big.warm.pinned", "off", 1.02),
    Row("Metrics: re-read", "metrics", "big.reread.metrics", "big.reread.pinned", "off", 1.02),
    Row("Metrics: cold small", "metrics", "small.cold.metrics", "small.cold.pinned", "off", 1.02),
    Row("Metrics: warm small", "metrics", "small.warm.metrics", "small.warm.pinned", "off", 1.02),
    Row("Metrics: find", "metrics", "find.metrics", "find.pinned", "off", 1.02),
]

INFO = {
    "big.reread.pt": "1 GiB re-read, same passthrough mount (page cache)",
    "small.reread.pinned": "small files re-read, same pinned mount (page cache)",
    "small.reread.pt": "small files re-read, same passthrough mount (page cache)",
    "small.local.cold": "small files from local disk, page cache dropped",
    "big.local.cold": "1 GiB from local disk, page cache dropped",
    "find.local": "find on local disk, page cache dropped",
}


class Samples:
    def __init__(self) -> None:
        self.times: dict[str, list[float]] = {}
        self.cpu: dict[str, list[float]] = {}  # CPU seconds the FUSE daemon used meanwhile

    def add(self, key: str, seconds: float, cpu: float | None = None) -> None:
        self.times.setdefault(key, []).append(seconds)
        if cpu is not None:
            self.cpu.setdefault(key, []).append(cpu)
        extra = f"  (daemon CPU {cpu:.2f} s)" if cpu is not None else ""
        say(f"  {key:<20} {seconds:8.3f} s{extra}")

    def median(self, key: str) -> float | None:
        values = self.times.get(key)
        return statistics.median(values) if values else None


def report(samples: Samples, data: Dataset, meta: dict[str, Any]) -> bool:
    """Print the table and the JSON line; True when every main target passes."""
    rows_json = []
    ok = True
    head = (
        f"{'measurement':<28} {'mount':<7} {'s3fsv s':>8} {'rate':>11} {'baseline':<14}"
        f" {'base s':>8} {'ratio':>6} {'target':>7}  result"
    )
    print(head)
    print("-" * len(head))
    for row in ROWS + METRICS_ROWS:
        got, base = samples.median(row.measured), samples.median(row.baseline)
        if got is None or base is None:
            continue
        ratio = got / base
        passed = ratio <= row.target
        ok &= passed or not row.main
        rate = _rate(row.measured, got, data)
        verdict = ("PASS" if passed else "FAIL") + ("" if row.main else " (secondary)")
        print(
            f"{row.title:<28} {row.mount:<7} {got:8.3f} {rate:>11} {row.baseline_label:<14}"
            f" {base:8.3f} {ratio:5.2f}x {'<=' + format(row.target, '.1f') + 'x':>7}  {verdict}"
        )
        rows_json.append(
            {
                "name": row.title,
                "mount": row.mount,
                "main": row.main,
                "s3fsv_s": round(got, 4),
                "baseline": row.baseline_label,
                "baseline_s": round(base, 4),
                "ratio": round(ratio, 3),
                "target": row.target,
                "pass": passed,
            }
        )
    info = [(k, v, samples.median(k)) for k, v in INFO.items() if samples.median(k) is not None]
    if info:
        print("\nfor reference:")
        for key, label, value in info:
            print(f"  {label:<58} {value:8.3f} s  {_rate(key, value, data)}")
    meta = {**meta, "load_avg_end": [round(x, 2) for x in os.getloadavg()]}
    print(
        f"\nmedian of {meta['repeat']} runs; load average at start "
        f"{meta['load_avg_start']}, at end {meta['load_avg_end']} ({os.cpu_count()} CPUs)"
    )
    summary = {
        "bench": "read",
        "pass": ok,
        **meta,
        "rows": rows_json,
        "samples": {k: [round(x, 4) for x in v] for k, v in samples.times.items()},
        "daemon_cpu_s": {k: [round(x, 3) for x in v] for k, v in samples.cpu.items()},
    }
    print(json.dumps(summary, sort_keys=True))
    return ok


def _rate(key: str, seconds: float, data: Dataset) -> str:
    if key.startswith("big."):
        return f"{data.big_size / seconds / 1e6:.0f} MB/s"
    if key.startswith("small."):
        return f"{len(data.small) / seconds:.0f} f/s"
    return ""


# -- the run --------------------------------------------------------------------------------------


class Bench(MountBench):
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        super().__init__(args, work)
        self.samples = Samples()
        self.cold_serial = 0

    def setup(self) -> None:
        args, work = self.args, self.work
        say(f"work directory {work}")
        say(f"writing local data: {args.big_mib} MiB file + {args.dirs}x{args.per_dir} files")
        self.data = make_dataset(work / "local", args.big_mib * MiB, args.dirs, args.per_dir)
        self.start_server()
        assert self.server is not None
        self.client = s3_client(self.server)
        self.client.create_bucket(Bucket=BUCKET)
        self.store_url = f"s3://{BUCKET}/{STORE_PREFIX}"
        store = Store.init(self.store_url, endpoint_url=self.server.endpoint_url)
        repo = store.create_repo(REPO)
        say("uploading through s3fsv (transfer.put, one commit)")
        start = time.perf_counter()
        self.cid, files = transfer.put(repo, "main", self.data.local, "", "read bench data")
        say(f"  commit {self.cid[:12]}: {files} files in {time.perf_counter() - start:.1f} s")
        store.close()
        say("uploading the same files as plain S3 objects (baseline)")
        start = time.perf_counter()
        upload_plain(self.client, self.data)
        say(f"  done in {time.perf_counter() - start:.1f} s")
        self.sources = {
            "pinned": (f"{self.store_url}/{REPO}@{self.cid}", ""),
            "repo": (f"{self.store_url}/{REPO}", f"commit/{self.cid}"),
            "metrics": (f"{self.store_url}/{REPO}@{self.cid}", ""),  # with --metrics-addr
        }
        self.kinds = ("pinned", "repo", "metrics") if args.metrics else ("pinned", "repo")
        # entries find prints: the root, big.bin, small/, the directories and the files
        self.find_entries = 3 + self.args.dirs + len(self.data.small)
        self.warm_cache = work / "cache-warm"
        say("filling the warm cache through a pinned mount (untimed), checking contents")
        with self._mount("pinned", self.warm_cache) as root:
            same_content(root / self.data.big, self.data.local / self.data.big)
            for name in self.data.small:
                if (root / name).read_bytes() != (self.data.local / name).read_bytes():
                    raise RuntimeError(f"{name} differs through the mount")
            run_find(root, self.find_entries)
        with self._mount("repo", self.warm_cache) as root:
            same_content(root / self.data.small[-1], self.data.local / self.data.small[-1])

    @contextlib.contextmanager
    def _mount(self, kind: str, cache: Path, *, scrape: bool = False) -> Iterator[Path]:
        """``scrape``: save the endpoint of a metrics mount on leaving (``--scrape FILE``)."""
        source, inner = self.sources[kind]
        assert self.mounts is not None
        options = ["--metrics-addr", "127.0.0.1:0"] if kind == "metrics" else []
        with self.mounts.mount(source, self.work / f"mnt-{kind}", cache, options) as mp:
            yield mp / inner if inner else mp
            if kind == "metrics" and scrape and self.args.scrape:
                self._scrape(mp)

    def _scrape(self, mp: Path) -> None:
        """Save the metrics mount's endpoint as it is after the reads (``--scrape FILE``)."""
        import urllib.request

        assert self.mounts is not None
        address = self.mounts.metrics_address(mp)
        with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as answer:
            Path(self.args.scrape).write_bytes(answer.read())

    @contextlib.contextmanager
    def _cold_cache(self) -> Iterator[Path]:
        self.cold_serial += 1
        path = self.work / f"cache-cold-{self.cold_serial}"
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    @contextlib.contextmanager
    def _passthrough(self) -> Iterator[Path]:
        assert self.mounts is not None
        with self.mounts.passthrough(self.data.local, self.work / "mnt-pt") as mp:
            yield mp

    def _run(self, key: str, fn: Callable[[], object], mount: str | None = None) -> None:
        """Time ``fn`` and the CPU the daemon of mount ``mount`` ("pinned", "repo", "pt") used."""
        pid = None
        if mount is not None and self.mounts is not None:
            pid = self.mounts.daemon_pid(self.work / f"mnt-{mount}")
        # Leftover server work (after an upload, or a previous step) is not this step's cost.
        wait_until_idle(self.server._proc.pid if self.server and self.server._proc else None)
        before = cpu_seconds(pid)
        seconds = timed(fn)
        after = cpu_seconds(pid)
        cpu = after - before if before is not None and after is not None else None
        self.samples.add(key, seconds, cpu)

    def rep(self, n: int) -> None:
        data, run = self.data, self._run
        big, size, small = data.big, data.big_size, data.small
        say(f"repetition {n}: {size // MiB} MiB file")
        drop_caches()
        run("big.cold.s3", lambda: s3_stream(self.client, f"{PLAIN}/{big}", size))
        for kind in self.kinds:
            with self._cold_cache() as cache, self._mount(kind, cache) as root:
                drop_caches()
                run(f"big.cold.{kind}", lambda: read_sequential(root / big, size), kind)
        for kind in self.kinds:
            with self._mount(kind, self.warm_cache) as root:
                drop_caches()
                run(f"big.warm.{kind}", lambda: read_sequential(root / big, size), kind)
                run(f"big.reread.{kind}", lambda: read_sequential(root / big, size), kind)
        with self._passthrough() as root:
            drop_caches()
            run("big.warm.pt", lambda: read_sequential(root / big, size), "pt")
            run("big.reread.pt", lambda: read_sequential(root / big, size), "pt")
        drop_caches()
        run("big.local.cold", lambda: read_sequential(data.local / big, size))
        run("big.reread.local", lambda: read_sequential(data.local / big, size))

        say(f"repetition {n}: {len(small)} small files")
        drop_caches()
        run("small.cold.s3", lambda: s3_small(self.client, small))
        for kind in self.kinds:
            with self._cold_cache() as cache, self._mount(kind, cache) as root:
                drop_caches()
                run(f"small.cold.{kind}", lambda: read_small_files(root, small), kind)
        for kind in self.kinds:
            with self._mount(kind, self.warm_cache, scrape=True) as root:
                drop_caches()
                run(f"small.warm.{kind}", lambda: read_small_files(root, small), kind)
                if kind == "pinned":
                    run("small.reread.pinned", lambda: read_small_files(root, small), kind)
        with self._passthrough() as root:
            drop_caches()
            run("small.warm.pt", lambda: read_small_files(root, small), "pt")
            run("small.reread.pt", lambda: read_small_files(root, small), "pt")
        drop_caches()
        run("small.local.cold", lambda: read_small_files(data.local, small))

        say(f"repetition {n}: find")
        entries = self.find_entries
        for kind in self.kinds:
            with self._mount(kind, self.warm_cache) as root:
                drop_caches()
                run(f"find.{kind}", lambda: run_find(root, entries), kind)
        with self._passthrough() as root:
            drop_caches()
            run("find.pt", lambda: run_find(root, entries), "pt")
        drop_caches()
        run("find.local", lambda: run_find(data.local, entries))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    standard_arguments(parser)
    parser.add_argument("--dirs", type=int, default=20, help="directories of small files")
    parser.add_argument("--per-dir", type=int, default=100, help="small files per directory")
    parser.add_argument(
        "--metrics",
        action="store_true",
        help="also time the pinned mount with --metrics-addr (rows 'Metrics:', target 2%%)",
    )
    parser.add_argument(
        "--scrape", metavar="FILE", help="with --metrics: save a scrape after the small-file reads"
    )
    args = parser.parse_args()
    repeat = repetitions(parser, args)

    meta: dict[str, Any] = {
        "repeat": repeat,
        "load_avg_start": [round(x, 2) for x in os.getloadavg()],
        "big_bytes": args.big_mib * MiB,
        "small_files": args.dirs * args.per_dir,
        "small_bytes_each": SMALL_SIZE,
    }
    # Not /dev/shm: the local copy must sit on a real disk for the "local" baselines.
    work = Path(tempfile.mkdtemp(prefix="s3fsv-readbench-", dir=args.workdir or "/var/tmp"))
    bench = Bench(args, work)
    if not run_repetitions(bench, work, repeat, args.keep):
        return 130
    meta["drop_caches"] = drop_caches_worked()
    meta["elapsed_s"] = elapsed()
    say("done")
    return 0 if report(bench.samples, bench.data, meta) else 1


if __name__ == "__main__":
    sys.exit(main())
