"""fsspec benchmark: the ``s3fsv://`` filesystem against s3fs's own fsspec filesystem (the
``s3fs`` package), on the same SeaweedFS, in the same run.

    .venv/bin/python bench/fsspec_bench.py            # 3 repetitions per figure (median)
    .venv/bin/python bench/fsspec_bench.py --quick    # 1 repetition

It starts its own SeaweedFS on 127.0.0.1 (tests/s3server.py) and stores the same data twice:
as an s3fsv commit (through the Python API, one transaction) and as plain S3 objects for s3fs.
The data: one 1 GiB file of random bytes, and one directory of 2,000 files of 100 KiB.
Workloads, each done the way an fsspec user writes it, through both filesystems:

- ``big``: ``fs.open(path, "rb")`` and 8 MiB reads to the end (each filesystem's default
  block size and cache);
- ``cat``: ``fs.cat(DIR + "/*")``, the directory's files as a dict of bytes (s3fs cannot
  ``cat(DIR, recursive=True)``: it tries to read the directory itself as a key).

s3fsv reads start cold every repetition: a new filesystem instance with a fresh cache
directory (and the kernel page cache dropped before every timed step, both filesystems, when
run as root). s3fs gets a new instance too (no listing cache carried over). Prints a table
(s3fsv, s3fs, ratio, target, PASS/FAIL) and a final JSON line; exits 1 when a target fails.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from common import (  # noqa: E402
    drop_caches,
    drop_caches_worked,
    elapsed,
    repetitions,
    run_repetitions,
    say,
    standard_arguments,
    wait_until_idle,
)
from read_workloads import BUCKET, PLAIN, SMALL_SIZE, MiB, make_dataset, upload_plain  # noqa: E402
from s3server import SeaweedServer  # noqa: E402

import s3fsv  # noqa: E402
from s3fsv.fsspec import S3fsvFileSystem  # noqa: E402
from s3fsv.store.store import Store  # noqa: E402

STORE_PREFIX = "store"
REPO = "data"
READ_BLOCK = 8 * MiB
TARGETS = {"big": 1.2, "cat": 0.5}


def read_all(fs: Any, path: str, expect: int) -> None:
    total = 0
    with fs.open(path, "rb") as f:
        while data := f.read(READ_BLOCK):
            total += len(data)
    if total != expect:
        raise RuntimeError(f"read {total} bytes of {path}, expected {expect}")


def cat_dir(fs: Any, path: str, files: int) -> dict[str, bytes]:
    got = fs.cat(f"{path}/*")
    sizes = [len(v) for v in got.values()]
    if len(sizes) != files or any(n != SMALL_SIZE for n in sizes):
        raise RuntimeError(f"cat of {path} gave {len(sizes)} files, expected {files}")
    return got


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.times: dict[str, list[float]] = {}
        self.server: SeaweedServer | None = None
        self.serial = 0

    def setup(self) -> None:
        args, work = self.args, self.work
        say(f"work directory {work}")
        say(f"writing local data: {args.big_mib} MiB file + {args.files} files of 100 KiB")
        self.data = make_dataset(work / "local", args.big_mib * MiB, 1, args.files)
        self.small_dir = self.data.small[0].rsplit("/", 1)[0]
        say("starting SeaweedFS on 127.0.0.1")
        self.server = SeaweedServer(work / "weed", grace=3.0).start()
        os.environ.update(self.server.env())
        os.environ["XDG_CONFIG_HOME"] = str(work / "config")  # never a user's s3fsv config
        os.environ.pop("S3FSV_STORE", None)
        self.client = self.server.client()
        self.client.create_bucket(Bucket=BUCKET)
        self.store_url = f"s3://{BUCKET}/{STORE_PREFIX}"
        Store.init(self.store_url, endpoint_url=self.server.endpoint_url).create_repo(REPO)
        say("uploading through the s3fsv API (one transaction)")
        start = time.perf_counter()
        with s3fsv.open_store(self.store_url, cache_dir=work / "cache-upload") as store:
            with store.repo(REPO).transaction("main", message="fsspec bench data") as tx:
                tx.upload(self.data.local / self.data.big, self.data.big)
                tx.upload(self.data.local / self.small_dir, self.small_dir)
            self.commit = tx.commit_id
        say(f"  commit {str(self.commit)[:12]} in {time.perf_counter() - start:.1f} s")
        say("uploading the same files as plain S3 objects (for s3fs)")
        upload_plain(self.client, self.data)
        self.check_contents()

    # -- the two filesystems ---------------------------------------------------------------
    def s3fsv(self) -> tuple[S3fsvFileSystem, str, Path]:
        """A new s3fsv filesystem with an empty cache directory, and its root path."""
        self.serial += 1
        cache = self.work / f"cache-cold-{self.serial}"
        fs = S3fsvFileSystem(self.store_url, cache_dir=cache, skip_instance_cache=True)
        return fs, f"{REPO}@{self.commit}", cache

    def s3fs(self) -> tuple[Any, str]:
        import s3fs

        assert self.server is not None
        fs = s3fs.S3FileSystem(
            key=self.server.access_key,
            secret=self.server.secret_key,
            endpoint_url=self.server.endpoint_url,
            client_kwargs={"region_name": self.server.region},
            config_kwargs={"s3": {"addressing_style": "path"}},
            skip_instance_cache=True,
            use_listings_cache=False,
        )
        return fs, f"{BUCKET}/{PLAIN}"

    def check_contents(self) -> None:
        """Untimed: both filesystems give exactly the local bytes."""
        say("checking contents through both filesystems")
        local = self.data.local
        want = hashlib.sha256((local / self.data.big).read_bytes()).hexdigest()
        s3fs_fs, s3fs_root = self.s3fs()
        ours, root, cache = self.s3fsv()
        try:
            for fs, base in ((s3fs_fs, s3fs_root), (ours, root)):
                digest = hashlib.sha256()
                with fs.open(f"{base}/{self.data.big}", "rb") as f:
                    while data := f.read(READ_BLOCK):
                        digest.update(data)
                if digest.hexdigest() != want:
                    raise RuntimeError(f"{base}/{self.data.big} differs from the local file")
                got = cat_dir(fs, f"{base}/{self.small_dir}", len(self.data.small))
                for name, data in got.items():
                    rel = name.split("/", 2 if fs is s3fs_fs else 1)[-1]
                    if data != (local / rel).read_bytes():
                        raise RuntimeError(f"{name} differs from the local file")
        finally:
            self.done_with(ours, cache)

    def done_with(self, fs: S3fsvFileSystem, cache: Path) -> None:
        """Close ``fs``, wait for its fetch threads (the chunks just read may still be on
        their way to the cache: readers do not wait for the disk), remove its cache."""
        fs.store.close()
        for thread in threading.enumerate():
            if thread.name.startswith("s3fsv-"):
                thread.join(timeout=60)
        shutil.rmtree(cache, ignore_errors=True)

    # -- measuring ---------------------------------------------------------------------------
    def timed(self, key: str, fn: Callable[[], object]) -> None:
        assert self.server is not None and self.server._proc is not None
        wait_until_idle(self.server._proc.pid)  # leftover server work is not this step's
        drop_caches()
        start = time.perf_counter()
        fn()
        seconds = time.perf_counter() - start
        self.times.setdefault(key, []).append(seconds)
        say(f"  {key:<12} {seconds:8.3f} s")

    def rep(self, n: int) -> None:
        data = self.data
        big, files = data.big, len(data.small)
        say(f"repetition {n}")
        s3fs_fs, s3fs_root = self.s3fs()
        self.timed("big.s3fs", lambda: read_all(s3fs_fs, f"{s3fs_root}/{big}", data.big_size))
        ours, root, cache = self.s3fsv()
        try:
            self.timed("big.s3fsv", lambda: read_all(ours, f"{root}/{big}", data.big_size))
        finally:
            self.done_with(ours, cache)
        s3fs_fs, s3fs_root = self.s3fs()
        small = self.small_dir
        self.timed("cat.s3fs", lambda: cat_dir(s3fs_fs, f"{s3fs_root}/{small}", files))
        ours, root, cache = self.s3fsv()
        try:
            self.timed("cat.s3fsv", lambda: cat_dir(ours, f"{root}/{small}", files))
        finally:
            self.done_with(ours, cache)

    def close(self) -> None:
        if self.server is not None:
            say("stopping SeaweedFS")
            self.server.stop()


def report(times: dict[str, list[float]], meta: dict[str, Any]) -> bool:
    """Print the table and the JSON line; True when every target passes."""
    titles = {
        "big": f"{meta['big_bytes'] / MiB:g} MiB read (open + 8 MiB reads)",
        "cat": f"cat of {meta['small_files']:,} x 100 KiB files",
    }
    ok = True
    rows = []
    head = f"{'workload':<34} {'s3fsv s':>8} {'s3fs s':>8} {'ratio':>6} {'target':>7}  result"
    print(head)
    print("-" * len(head))
    for key, target in TARGETS.items():
        ours, theirs = times.get(f"{key}.s3fsv"), times.get(f"{key}.s3fs")
        if not ours or not theirs:
            continue
        got, base = statistics.median(ours), statistics.median(theirs)
        ratio = got / base
        passed = ratio <= target
        ok &= passed
        verdict = "PASS" if passed else "FAIL"
        print(
            f"{titles[key]:<34} {got:8.3f} {base:8.3f} {ratio:5.2f}x"
            f" {'<=' + format(target, '.1f') + 'x':>7}  {verdict}"
        )
        rows.append(
            {
                "name": titles[key],
                "s3fsv_s": round(got, 4),
                "s3fs_s": round(base, 4),
                "ratio": round(ratio, 3),
                "target": target,
                "pass": passed,
            }
        )
    meta = {**meta, "load_avg_end": [round(x, 2) for x in os.getloadavg()]}
    print(
        f"\nmedian of {meta['repeat']} runs, s3fsv cold (fresh cache) every run; load average "
        f"at start {meta['load_avg_start']}, at end {meta['load_avg_end']} ({os.cpu_count()} CPUs)"
    )
    samples = {k: [round(x, 4) for x in v] for k, v in times.items()}
    print(json.dumps({"bench": "fsspec", "pass": ok, **meta, "rows": rows, "samples": samples}))
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    standard_arguments(parser)
    parser.add_argument("--files", type=int, default=2000, help="small files in the directory")
    args = parser.parse_args()
    repeat = repetitions(parser, args)
    meta: dict[str, Any] = {
        "repeat": repeat,
        "load_avg_start": [round(x, 2) for x in os.getloadavg()],
        "big_bytes": args.big_mib * MiB,
        "small_files": args.files,
        "small_bytes_each": SMALL_SIZE,
    }
    work = Path(tempfile.mkdtemp(prefix="s3fsv-fsspecbench-", dir=args.workdir or "/var/tmp"))
    bench = Bench(args, work)
    if not run_repetitions(bench, work, repeat, args.keep):
        return 130
    meta["drop_caches"] = drop_caches_worked()
    meta["elapsed_s"] = elapsed()
    say("done")
    return 0 if report(bench.times, meta) else 1


if __name__ == "__main__":
    sys.exit(main())
