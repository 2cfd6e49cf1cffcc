"""What metrics cost on the daemon's read path, measured in one process without the kernel.

    flock -w 1500 /tmp/s3fsv-bench.lock .venv/bin/python bench/metrics_inprocess.py
    .venv/bin/python bench/metrics_cost.py --mode inprocess    # the same, from metrics_cost

It builds the mount's filesystem exactly as the daemon does (``daemon.make_filesystem``, the
FUSE adapter's ``Operations``), once with a ``MountMetrics`` and once without, over a
``file://`` store and warm caches (every workload runs once on each before the timing), and
calls the operations the way libfuse's callbacks do (mfusepy's ``_wrapper`` around the
``_FUSE`` methods, with ctypes buffers): only the kernel round trip is missing. Workloads:

- ``big``: a pinned mount, one big file read in ``--request-kib`` requests (a sequential read
  with the kernel's read-ahead);
- ``small``: a pinned mount, every small file looked up (getattr) and read whole; the kernel
  never opens a pinned file when passthrough is off (``S3FSV_PASSTHROUGH=off`` here);
- ``small.read``: the same reads without the lookups (the read operation's own cost);
- ``small.handles``: a branch mount, every small file looked up, opened, read, released;
- ``tree``: a pinned mount, every directory listed (readdirplus) and every file looked up.

``--rounds`` times, each workload runs once with metrics and once without, the order
alternating, and the CPU time of the process (``time.process_time``, which other processes'
load does not inflate) is taken over each run. Reported per workload: the median CPU per
operation on and off; over blocks of two rounds (on first, then off first), the median of the
ratios on/off, their interquartile range and a 95% confidence interval of that median
(distribution-free, from order statistics), and the same for the difference on - off. A workload
passes when the interval's upper end is under 1.02.

It also times (``timeit``) the exact calls metrics add to each operation: two
``time.perf_counter()``, the operation's histogram timer and, for a read, the cache hit
counter; ``metrics_cost.py`` divides that by the daemon's CPU per FUSE operation in the real
mount benchmark, an upper bound on the share of the daemon's CPU that metrics take.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
import timeit
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from common import say  # noqa: E402
from read_workloads import SMALL_SIZE, Dataset, MiB, make_dataset  # noqa: E402

WORKLOADS = ("big", "small", "small.read", "small.handles", "tree")
# The FUSE operations of one unit of each workload (per request of the big file, per small
# file, per directory entry): what the metrics calls alone are timed for.
OP_MIX: dict[str, dict[str, float]] = {
    "big": {"read": 1},
    "small": {"getattr": 1, "read": 1},
    "small.read": {"read": 1},
    "small.handles": {"getattr": 1, "open": 1, "read": 1, "release": 1},
    "tree": {"getattr": 1},  # plus one readdir per directory, counted in `ops` below
}
TARGET = 1.02


class Driver:
    """One mount's filesystem and adapter, called as libfuse's callbacks call it."""

    def __init__(self, source_text: str, cache: Path, metrics: bool, request: int) -> None:
        import mfusepy

        from s3fsv.mount.daemon import make_filesystem
        from s3fsv.mount.fuse import _FUSE, Operations
        from s3fsv.mount.metrics import MountMetrics
        from s3fsv.mount.options import parse_source

        store, source = parse_source(source_text, None)
        self.metrics = MountMetrics() if metrics else None
        args = SimpleNamespace(cache_dir=str(cache), cache_size="20G", ref_ttl=5.0)
        self.fs = make_filesystem(args, store, source, self.metrics)
        self.store = store
        self.ops = Operations(
            self.fs,
            ref_ttl=5.0,
            timer=self.metrics.fuse_timer if self.metrics is not None else None,
        )
        fuse = object.__new__(_FUSE)  # the callbacks' half of mfusepy's FUSE, never mounted
        fuse.operations, fuse.raw_fi, fuse.use_ns = self.ops, True, True
        fuse.encoding, fuse.errors = "utf-8", "surrogateescape"
        self.fuse = fuse
        self.call = fuse._wrapper
        self.request = request
        self.buf = ctypes.create_string_buffer(max(request, SMALL_SIZE))
        self.fip = ctypes.pointer(mfusepy.fuse_file_info())
        self.stat = ctypes.pointer(mfusepy.c_stat())
        self.entries = 0
        self.timers = self.ops.timers

        def filler(buf: Any, name: bytes, st: Any, off: int, flags: int) -> int:
            self.entries += 1
            return 0

        self.filler = filler

    def switch(self, on: bool) -> None:
        """Metrics recorded (``on``) or not by this same filesystem from now on: the adapter's
        timers and every reader's meter, as a mount without metrics has them (None)."""
        self.ops.timers = self.timers if on else None
        for state in list(self.fs._repos.values()):
            state.reader.meter = self.metrics if on else None

    def store_requests(self) -> float:
        """Requests to the store recorded so far (none are expected over warm caches)."""
        if self.metrics is None:
            return 0.0
        return sum(
            sample.value
            for family in self.metrics.collect()
            for sample in family.samples
            if sample.name == "s3fsv_store_requests_total"
        )

    def close(self) -> None:
        self.fs.close()
        self.store.close()

    def big(self, path: bytes, size: int) -> int:
        call, read, buf, fip, n = self.call, self.fuse.read, self.buf, self.fip, self.request
        ops = 0
        for offset in range(0, size, n):
            if call(read, path, buf, n, offset, fip) <= 0:
                raise RuntimeError(f"short read at {offset}")
            ops += 1
        return ops

    def small(self, paths: list[bytes], lookup: bool = True) -> int:
        call, f, buf, fip, st = self.call, self.fuse, self.buf, self.fip, self.stat
        getattr_, read = f.getattr_fuse_3, f.read
        for path in paths:
            if lookup and call(getattr_, path, st, None) != 0:
                raise RuntimeError(f"getattr {path!r} failed")
            if call(read, path, buf, len(buf), 0, fip) != SMALL_SIZE:
                raise RuntimeError(f"short read of {path!r}")
        return (2 if lookup else 1) * len(paths)

    def small_handles(self, paths: list[bytes]) -> int:
        call, f, buf, fip, st = self.call, self.fuse, self.buf, self.fip, self.stat
        getattr_, open_, read, release = f.getattr_fuse_3, f.open, f.read, f.release
        for path in paths:
            if call(getattr_, path, st, None) != 0 or call(open_, path, fip) != 0:
                raise RuntimeError(f"getattr or open {path!r} failed")
            if call(read, path, buf, len(buf), 0, fip) != SMALL_SIZE:
                raise RuntimeError(f"short read of {path!r}")
            call(release, path, fip)
        return 4 * len(paths)

    def tree(self, dirs: list[bytes], paths: list[bytes]) -> int:
        call, f, st = self.call, self.fuse, self.stat
        for d in dirs:
            if call(f._readdir, d, None, self.filler, 0, None) != 0:
                raise RuntimeError(f"readdir {d!r} failed")
        for path in paths:
            if call(f.getattr_fuse_3, path, st, None) != 0:
                raise RuntimeError(f"getattr {path!r} failed")
        return len(dirs) + len(paths)


class Setup:
    """The dataset in a ``file://`` store, one commit, and a driver per (workload, kind)."""

    def __init__(self, args: argparse.Namespace, work: Path, stack: ExitStack) -> None:
        from s3fsv.mount.fuse import collect_less_often, keep_freed_memory
        from s3fsv.store import transfer
        from s3fsv.store.store import Store

        keep_freed_memory()  # the daemon's own memory and collector settings (fuse.mount)
        collect_less_often()

        say(f"in-process: {args.big_mib} MiB file + {args.dirs}x{args.per_dir} files in {work}")
        self.data: Dataset = make_dataset(
            work / "local", args.big_mib * MiB, args.dirs, args.per_dir
        )
        url = f"file://{work}/store"
        store = Store.init(url)
        cid, _ = transfer.put(store.create_repo("data"), "main", self.data.local, "", "metrics")
        store.close()
        self.big = b"/" + self.data.big.encode()
        self.small = [b"/" + name.encode() for name in self.data.small]
        self.dirs = [b"/", b"/small", *sorted({p.rsplit(b"/", 1)[0] for p in self.small})]
        # With --pairing same, one filesystem per mount serves both kinds, its metrics
        # switched on and off between passes: no difference of caches or memory between the
        # two sides, and its store requests show that the metered backend stays unused.
        self.control = args.control
        self.drivers: dict[tuple[str, str], Driver] = {}
        for kind in ("on", "off") if args.pairing == "separate" else ("on",):
            for mount, ref in (("pinned", cid), ("branch", "main")):
                metered = args.pairing == "same" or (kind == "on" and not args.control)
                driver = Driver(
                    f"{url}/data@{ref}", work / f"cache-{mount}-{kind}", metered, args.request
                )
                stack.callback(driver.close)
                for workload in WORKLOADS:
                    if (workload == "small.handles") == (mount == "branch"):
                        self.drivers[workload, kind] = driver
                        self.drivers.setdefault((workload, "off"), driver)

    def store_requests(self) -> float:
        return sum(d.store_requests() for d in set(self.drivers.values()))

    def run(self, workload: str, kind: str) -> int:
        """One pass of ``workload``; the number of FUSE operations it made."""
        d = self.drivers[workload, kind]
        d.switch(kind == "on" and not self.control)
        if workload == "big":
            return d.big(self.big, self.data.big_size)
        if workload in ("small", "small.read"):
            return d.small(self.small, lookup=workload == "small")
        if workload == "small.handles":
            return d.small_handles(self.small)
        return d.tree(self.dirs, self.small)


def median_interval(values: list[float], level: float = 0.95) -> tuple[float, float]:
    """A distribution-free confidence interval of the median: order statistics k and n-k+1,
    k the largest with P(Binomial(n, 1/2) < k) <= (1 - level) / 2."""
    xs, n = sorted(values), len(values)
    k, tail = 0, 0.0
    while k < n // 2:
        tail_next = tail + math.comb(n, k) / 2**n
        if tail_next > (1 - level) / 2:
            break
        tail, k = tail_next, k + 1
    if k == 0:
        return xs[0], xs[-1]
    return xs[k - 1], xs[n - k]


def _blocks(values: list[float]) -> list[float]:
    """Means of rounds 2k and 2k+1: one with "on" first and one with "off" first, so that
    what the first pass of a round leaves to the second (read-ahead state, memory) falls on
    both sides alike. An odd last round is left out."""
    return [(a + b) / 2 for a, b in zip(values[::2], values[1::2], strict=False)]


def measure(
    setup: Setup, rounds: int, workloads: list[str], meta: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """``rounds`` alternating on/off passes of every workload; per workload the CPU seconds
    per operation of each pass (process and calling thread), and the ratios and differences
    on/off over blocks of two rounds (on-off, off-on). Adds
    to ``meta`` the store requests made while timing."""
    per_op: dict[tuple[str, str], list[float]] = {}
    thread_per_op: dict[tuple[str, str], list[float]] = {}
    ops_of: dict[str, int] = {}
    for workload in workloads:  # warm the caches (and the code) of every driver, untimed
        for kind in ("on", "off"):
            ops_of[workload] = setup.run(workload, kind)
    requests = setup.store_requests()
    for r in range(rounds):
        order = ("on", "off") if r % 2 == 0 else ("off", "on")
        for workload in workloads:
            for kind in order:
                gc.collect()
                start, tstart = time.process_time(), time.thread_time()
                ops = setup.run(workload, kind)
                cpu, tcpu = time.process_time() - start, time.thread_time() - tstart
                per_op.setdefault((workload, kind), []).append(cpu / ops)
                thread_per_op.setdefault((workload, kind), []).append(tcpu / ops)
        if (r + 1) % 10 == 0:
            say(f"  round {r + 1}/{rounds}")
    meta["store_requests_timed"] = setup.store_requests() - requests
    out: dict[str, dict[str, Any]] = {}
    for workload in workloads:
        on, off = per_op[workload, "on"], per_op[workload, "off"]
        b_on, b_off = _blocks(on), _blocks(off)
        ratios = [a / b for a, b in zip(b_on, b_off, strict=True)]
        t_on, t_off = (
            _blocks(thread_per_op[workload, "on"]),
            _blocks(thread_per_op[workload, "off"]),
        )
        t_ratios = [a / b for a, b in zip(t_on, t_off, strict=True)]
        q1, _, q3 = statistics.quantiles(ratios, n=4)
        low, high = median_interval(ratios)
        deltas = [(a - b) * 1e6 for a, b in zip(b_on, b_off, strict=True)]
        out[workload] = {
            "ops_per_pass": ops_of[workload],
            "cpu_per_op_on_us": statistics.median(on) * 1e6,
            "cpu_per_op_off_us": statistics.median(off) * 1e6,
            "ratio": statistics.median(ratios),
            "ratio_iqr": [q1, q3],
            "ratio_ci95": [low, high],
            "thread_ratio": statistics.median(t_ratios),
            "delta_us": statistics.median(deltas),
            "delta_ci95_us": list(median_interval(deltas)),
            "pass": high < TARGET,
        }
    return out


def metrics_call_seconds(number: int = 200_000) -> dict[str, float]:
    """Seconds per operation of the calls metrics add to each FUSE operation, by operation
    (best of five ``timeit`` runs): the two clock reads and the operation's timer (as the
    adapter makes them), and for a read the cache hit counter (as ``ChunkReader`` does)."""
    from s3fsv.mount.metrics import MountMetrics

    metrics = MountMetrics()
    out = {}
    for op in ("getattr", "read", "open", "release", "readdir"):
        timers = {op: metrics.fuse_timer(op)}
        g = {"timers": timers, "pc": time.perf_counter, "m": metrics, "op": op}
        stmt = "s = pc(); timers[op](pc() - s)" + ("; m.hit(131072)" if op == "read" else "")
        best = min(timeit.repeat(stmt, globals=g, number=number, repeat=5))
        out[op] = best / number
    return out


def mix_seconds(workload: str, calls: dict[str, float]) -> float:
    """Metrics seconds per FUSE operation of ``workload``'s mix of operations."""
    mix = OP_MIX[workload]
    return sum(calls[op] * n for op, n in mix.items()) / sum(mix.values())


def report(
    results: dict[str, dict[str, Any]], calls: dict[str, float], meta: dict[str, Any]
) -> bool:
    head = (
        f"{'workload':<14} {'ops/pass':>8} {'on us/op':>9} {'off us/op':>9} {'delta us':>8}"
        f" {'95% CI':>15} {'ratio':>7} {'IQR':>15} {'95% CI':>15} {'calls':>6}  result"
    )
    print(head)
    print("-" * len(head))
    ok = True
    for workload, row in results.items():
        row["metrics_calls_us"] = mix_seconds(workload, calls) * 1e6
        ok &= row["pass"]
        d_low, d_high = row["delta_ci95_us"]
        print(
            f"{workload:<14} {row['ops_per_pass']:>8} {row['cpu_per_op_on_us']:9.2f}"
            f" {row['cpu_per_op_off_us']:9.2f} {row['delta_us']:8.3f} {d_low:7.3f}-{d_high:<7.3f}"
            f" {row['ratio']:7.4f} {row['ratio_iqr'][0]:7.4f}-{row['ratio_iqr'][1]:.4f}"
            f" {row['ratio_ci95'][0]:7.4f}-{row['ratio_ci95'][1]:.4f}"
            f" {row['metrics_calls_us']:6.3f}  {'PASS' if row['pass'] else 'FAIL'}"
        )
    print(
        f"\n{meta['rounds']} rounds{' (A/A control: no metrics on either side)' * meta['control']},"
        f" {meta['pairing']} filesystem(s) for on and off;"
        f" {meta['store_requests_timed']:.0f} store requests while timing;"
        " on/off order alternating. Microseconds of process CPU per FUSE operation (medians"
        " over rounds); delta: the median difference on - off over blocks of two rounds (on"
        " first, off first), with a 95% interval; ratio: the median ratio on/off over those"
        " blocks, its interquartile range and 95% interval;"
        " calls: the metrics calls alone per operation (timeit). Kernel-less, so each"
        " operation costs less here than in the daemon: the ratio is an upper bound."
        " Target: the ratio's interval under 1.02."
    )
    print(json.dumps({"bench": "metrics_inprocess", "pass": ok, **meta, "calls_s": calls,
                      "rows": results}, sort_keys=True))  # fmt: skip
    return ok


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rounds", type=int, default=60, help="on/off rounds (in-process)")
    parser.add_argument(
        "--request-kib", type=int, default=128, help="read request size of the big file (KiB)"
    )
    parser.add_argument(
        "--workloads",
        type=lambda text: text.split(","),
        default=list(WORKLOADS),
        help=f"comma-separated, of {', '.join(WORKLOADS)} (default: all)",
    )
    parser.add_argument(
        "--pairing",
        choices=("same", "separate"),
        default="same",
        help="same (default): one filesystem per mount, metrics switched on and off between"
        " passes; separate: a filesystem with metrics and another without (as two mounts)",
    )
    parser.add_argument(
        "--control",
        action="store_true",
        help="an A/A run: 'on' without metrics too, to see the bias and noise of the method",
    )


@contextmanager
def workdir(parent: str | None, keep: bool) -> Iterator[Path]:
    work = Path(tempfile.mkdtemp(prefix="s3fsv-metricsinproc-", dir=parent or "/var/tmp"))
    try:
        yield work
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace) -> tuple[bool, dict[str, dict[str, Any]], dict[str, float]]:
    """The in-process measurement with ``args`` (rounds, request_kib, workloads, control,
    big_mib, dirs, per_dir, workdir, keep); prints its table and JSON line. Returns whether
    every workload passed, the rows by workload and the metrics calls' seconds by operation."""
    args.request = args.request_kib * 1024
    os.environ["S3FSV_PASSTHROUGH"] = "off"  # the daemon serves every read: what metrics touch
    meta = {
        "rounds": args.rounds,
        "request_bytes": args.request,
        "big_bytes": args.big_mib * MiB,
        "small_files": args.dirs * args.per_dir,
        "load_avg_start": [round(x, 2) for x in os.getloadavg()],
        "control": args.control,
        "pairing": args.pairing,
    }
    with workdir(args.workdir, args.keep) as work, ExitStack() as stack:
        setup = Setup(args, work, stack)
        say(f"in-process: {args.rounds} rounds")
        results = measure(setup, args.rounds, args.workloads, meta)
    calls = metrics_call_seconds()
    meta["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    return report(results, calls, meta), results, calls


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(parser)
    parser.add_argument("--big-mib", type=int, default=256, help="big file size (MiB)")
    parser.add_argument("--dirs", type=int, default=10, help="directories of small files")
    parser.add_argument("--per-dir", type=int, default=100, help="small files per directory")
    parser.add_argument("--workdir", help="parent of the temporary work directory")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    if args.rounds < 10:
        parser.error("--rounds must be at least 10")
    return 0 if run(args)[0] else 1


if __name__ == "__main__":
    sys.exit(main())
