"""Pinned-run benchmark: ``s3fsv run`` of ``examples/detect.py`` against the same script on a
local copy, and ``s3fsv lineage --downstream`` against scanning every log, in the same run.

    .venv/bin/python bench/run_bench.py            # 3 repetitions per figure (median)
    .venv/bin/python bench/run_bench.py --quick    # 1 repetition

1. detect.py over ``--images`` (105) distinct images (the sample photographs re-encoded,
   ``write_workloads.make_images``) committed to a store on a SeaweedFS it starts on
   127.0.0.1. Timed from the start of the command to its end, as a user waits for it:
   ``s3fsv run --in detect@<commit>:images --out detect@main:out-N -- python detect.py
   {in}/images {out}`` (resolve, mount, run, commit the outputs, unmount), against
   ``python detect.py images out`` on a local copy: cold (page cache dropped before each;
   the run with an empty s3fsv cache directory), s3fsv cache warm (page cache dropped, the
   cache the cold run filled), hot (nothing dropped, as when a run is repeated at once; both
   sides), hot with a mount of the store already there (which the run uses instead of
   starting its own), and ``--no-fuse`` (download, then run) cold. Every run's outputs must
   equal the local run's. Target: a run within 1.15x of the local copy, cold and hot.
   Wall time and CPU time (user + system of the waited-for process tree, which load does
   not inflate) are both reported. ``--before S3FSV`` also times another build's run
   (``/work/main/.venv/bin/s3fsv``, say) cold and hot in the same run; a daemon that build
   starts is not waited for, so its CPU is not counted.
2. ``--commits`` (10,000) commits across ``--repos`` (20) repos of a file:// store, each
   repo's commit i recording the previous repo's commit i as its input (a 20-stage pipeline
   run 500 times), made through the commit path that writes the lineage index. Timed:
   ``s3fsv lineage --downstream --json r00@<commit>`` (the CLI, process start included) and
   the same query from Python, against the baseline the index avoids: reading every commit
   of every repo and following inputs forward. Both must give the same commits. Each query
   starts with an empty cache directory.

Prints a table and a final JSON line; exits 1 when a target fails. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "examples"))

from common import drop_caches, drop_caches_worked, elapsed, s3fsv_command, say  # noqa: E402
from s3server import SeaweedServer  # noqa: E402
from write_workloads import code_version, make_images  # noqa: E402

import s3fsv  # noqa: E402
from s3fsv.runs.lineage import downstream  # noqa: E402
from s3fsv.store.lineage import recorded_inputs  # noqa: E402
from s3fsv.store.store import Store  # noqa: E402

DETECT = ROOT / "examples" / "detect.py"
RUN_TARGET = 1.15
EXE: list[str] = []  # --exe: the s3fsv to time (default: this checkout's)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def children_cpu() -> float:
    """User + system CPU seconds of the waited-for child processes so far (a run's whole
    process tree: ``s3fsv run``, its mount and the command; load does not inflate it)."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def cli(
    env: dict[str, str], *args: str, cwd: Path, log: Path | None = None, exe: str | None = None
) -> str:
    """``s3fsv ARGS`` (``exe ARGS`` when given: another build of s3fsv), its output."""
    out = subprocess.run(
        [*([exe] if exe else EXE or s3fsv_command()), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    if log is not None:
        log.write_text(out.stdout + out.stderr)
    if out.returncode != 0:
        raise RuntimeError(f"s3fsv {' '.join(args[:3])} ... exited {out.returncode}: {out.stderr}")
    return out.stdout


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


# -- 1. s3fsv run of detect.py ---------------------------------------------------------------


def bench_run(
    args: argparse.Namespace, work: Path, samples: dict[str, list[float]], server: SeaweedServer
) -> int:
    env = {**os.environ, **server.env(), "XDG_CONFIG_HOME": str(work / "config")}
    env["XDG_STATE_HOME"] = str(work / "state")
    env["S3FSV_STORE"] = "s3://bench/store"
    server.client().create_bucket(Bucket="bench")
    cli(env, "init", cwd=work)
    cli(env, "repo", "create", "detect", cwd=work)
    images = work / "local" / "images"
    names = make_images(images, max(1, args.images // 7))
    say(f"detect inputs: {len(names)} images")
    put = cli(env, "put", "-q", "--json", str(images), "detect@main:images", "-m", "in", cwd=work)
    commit = json.loads(put)["commit"]
    logs = work / "logs"
    logs.mkdir()
    argv = [sys.executable, str(DETECT)]
    for n in range(1, args.repeat + 1):
        say(f"repetition {n}")
        expected: dict[str, bytes] = {}
        cache = work / f"cache-{n}"
        # cold: page cache dropped (and an empty s3fsv cache for the runs); warm: page cache
        # dropped, s3fsv cache filled; hot: nothing dropped, as a run repeated at once.
        kinds = [
            ("local.cold", None, True),
            ("run.cold", [], True),
            ("run.warm", [], True),
            ("local.hot", None, False),
            ("run.hot", [], False),
            ("run.reuse", [], False),
            ("run.nofuse", ["--no-fuse"], True),
        ]
        if args.before:  # the same figures from another build (main), in the same run
            kinds[2:2] = [("before.cold", [], True)]
            kinds[6:6] = [("before.hot", [], False)]
        own_cache = {"run.nofuse": "nofuse", "before.cold": "before", "before.hot": "before"}
        for kind, extra, drop in kinds:
            if drop:
                drop_caches()
            out_path = f"out-{n}-{kind}"
            cpu = children_cpu()
            if extra is None:  # the baseline: the script on the local copy
                local_out = work / out_path
                took, _ = timed(lambda o=local_out: subprocess.run(
                    [*argv, str(images), str(o)], check=True, capture_output=True))  # fmt: skip
                samples[f"cpu.{kind}"].append(children_cpu() - cpu)
                expected = expected or tree(local_out)
                if tree(local_out) != expected:
                    raise RuntimeError(f"{kind}: outputs differ from the first local run's")
                shutil.rmtree(local_out)
                samples[f"detect.{kind}"].append(took)
                say(f"  {kind}: {took:.2f} s, CPU {samples[f'cpu.{kind}'][-1]:.2f} s")
                continue
            where = work / f"cache-{n}-{own_cache[kind]}" if kind in own_cache else cache
            run_env = {**env, "XDG_CACHE_HOME": str(where)}
            mp = work / "mnt"
            if kind == "run.reuse":  # a mount of the store that is there already is used
                mp.mkdir(exist_ok=True)
                cli(run_env, "mount", "s3://bench/store", str(mp), cwd=work)
            try:
                cpu = children_cpu()
                took, _ = timed(lambda e=run_env, x=extra, p=out_path, k=kind: cli(
                    e, "run", *x, "--in", f"detect@{commit}:images", "--out",
                    f"detect@main:{p}", "--", *argv, "{in}/images", "{out}", cwd=work,
                    log=logs / f"{p}.log", exe=args.before if k.startswith("before") else None,
                    ))  # fmt: skip
                samples[f"cpu.{kind}"].append(children_cpu() - cpu)
            finally:
                if kind == "run.reuse":
                    cli(run_env, "unmount", str(mp), cwd=work)
            samples[f"detect.{kind}"].append(took)
            said = (logs / f"{out_path}.log").read_text().splitlines()
            cpu_s = samples[f"cpu.{kind}"][-1]
            say(f"  {kind}: {took:.2f} s, CPU {cpu_s:.2f} s; {said[-1] if said else ''}")
            got = work / f"got-{n}-{kind}"
            cli(env, "get", "-q", f"detect@main:{out_path}", str(got), cwd=work)
            if tree(got) != expected:
                raise RuntimeError(f"{kind}: outputs differ from the local run's")
            shutil.rmtree(got)
    return len(names)


# -- 2. lineage --downstream -----------------------------------------------------------------


def bench_lineage(
    args: argparse.Namespace,
    work: Path,
    samples: dict[str, list[float]],
    server: SeaweedServer | None,
) -> int:
    if server is not None:
        server.client().create_bucket(Bucket="lineage")
        url = "s3://lineage/store"
    else:
        url = f"file://{work}/lineage-store"
    store = Store.init(url, endpoint_url=server.endpoint_url if server else None)
    per_repo = args.commits // args.repos
    say(f"lineage: {per_repo * args.repos} commits across {args.repos} repos of {url}")
    repos = [store.create_repo(f"r{k:02d}") for k in range(args.repos)]
    # Stage k's commit i records stage k-1's commit i: each stage's thread takes the ids of
    # the stage before from a queue, so the stages are made side by side.
    queues: list[queue.Queue[str]] = [queue.Queue() for _ in repos]
    first: list[str] = []

    def stage(k: int) -> None:
        for i in range(per_repo):
            prov = {}
            if k:
                prov = {"inputs": [{"repo": f"r{k - 1:02d}", "commit": queues[k - 1].get(),
                                    "via": "run"}]}  # fmt: skip
            cid = repos[k].commit("main", {}, f"stage {k} run {i}", provenance=prov)
            if k == 0:
                first.append(cid)
            queues[k].put(cid)

    took, _ = timed(lambda: list(ThreadPoolExecutor(len(repos)).map(stage, range(len(repos)))))
    say(f"  made in {took:.0f} s")
    store.close()
    start = first[per_repo // 2]
    env = {**os.environ, "XDG_STATE_HOME": str(work / "state-l"), "S3FSV_STORE": url}
    env.update(server.env() if server else {})
    for n in range(1, args.repeat + 1):
        cache = work / f"lcache-{n}"
        took, out = timed(lambda c=cache: cli({**env, "XDG_CACHE_HOME": str(c)}, "lineage",
                          "--downstream", "--json", f"r00@{start}", cwd=work))  # fmt: skip
        samples["lineage.cli"].append(took)
        via_cli = {(r["repo"], r["commit"]) for r in json.loads(out)}
        with s3fsv.open_store(url, cache_dir=work / f"lcache-api-{n}") as api:
            took, rows = timed(lambda a=api: downstream(a, "r00", start))
        samples["lineage.api"].append(took)
        with s3fsv.open_store(url, cache_dir=work / f"lcache-scan-{n}") as api:
            took, scanned = timed(lambda a=api: scan_every_log(a, "r00", start))
        samples["lineage.scan"].append(took)
        found = {(r["repo"], r["commit"]) for r in rows}
        if not (found == via_cli == scanned) or len(found) != args.repos - 1:
            raise RuntimeError(f"downstream answers differ: {len(found)}, {len(scanned)}")
    return len(found)


def scan_every_log(store: s3fsv.Store, repo: str, commit: str) -> set[tuple[str, str]]:
    """The baseline: every commit of every repo read, inputs followed forward."""
    made_from: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for name in store.repos():
        for info in store.repo(name).log("main"):
            for item in recorded_inputs(info.provenance):
                made_from.setdefault((item["repo"], item["commit"]), []).append((name, info.id))
    found: set[tuple[str, str]] = set()
    todo = [(repo, commit)]
    while todo:
        for child in made_from.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


# -- report ----------------------------------------------------------------------------------


def report(samples: dict[str, list[float]], meta: dict[str, Any]) -> bool:
    med = {k: statistics.median(v) for k, v in samples.items() if v}
    rows = []
    ok = True
    for key, label, base in (
        ("detect.run.cold", "s3fsv run detect.py, cold (FUSE)", "detect.local.cold"),
        ("detect.run.warm", "s3fsv run detect.py, s3fsv cache warm", "detect.local.cold"),
        ("detect.before.cold", "  the same, before (--before build)", "detect.local.cold"),
        ("detect.run.hot", "s3fsv run detect.py, hot (FUSE)", "detect.local.hot"),
        ("detect.before.hot", "  the same, before (--before build)", "detect.local.hot"),
        ("detect.run.reuse", "s3fsv run detect.py, hot, mount there", "detect.local.hot"),
        ("detect.run.nofuse", "s3fsv run --no-fuse detect.py, cold", "detect.local.cold"),
    ):
        if key in med and base in med:
            ratio = med[key] / med[base]
            target = RUN_TARGET if key in ("detect.run.cold", "detect.run.hot") else None
            passed = target is None or ratio <= target
            ok &= passed
            shown = "local copy, cold" if base.endswith("cold") else "local copy, hot"
            rows.append((label, med[key], shown, med[base], ratio, target, passed))
    scan = med.get("lineage.scan")
    for key, label in (
        ("lineage.api", "lineage --downstream, from Python"),
        ("lineage.cli", "lineage --downstream, the CLI"),
    ):
        if key in med and scan:
            rows.append((label, med[key], "scan every log", scan, med[key] / scan, None, True))
    print(f"{'figure':44} {'s':>7}  {'baseline':16} {'s':>7}  {'ratio':>6}  target")
    for label, value, base, base_value, ratio, target, passed in rows:
        goal = f"<= {target:.2f} {'PASS' if passed else 'FAIL'}" if target else "-"
        print(f"{label:44} {value:7.2f}  {base:16} {base_value:7.2f}  {ratio:6.2f}  {goal}")
    cpu = {k[4:]: v for k, v in med.items() if k.startswith("cpu.")}
    if cpu:
        print("\nCPU seconds (user + system of the whole process tree; median):")
        for kind in ("run.cold", "before.cold", "run.warm", "run.hot", "before.hot", "run.reuse",
                     "run.nofuse"):  # fmt: skip
            base = "local.hot" if kind in ("run.hot", "before.hot", "run.reuse") else "local.cold"
            if kind in cpu and base in cpu:
                print(f"  {kind:11} {cpu[kind]:6.2f}  {base:10} {cpu[base]:6.2f}  "
                      f"ratio {cpu[kind] / cpu[base]:5.2f}")  # fmt: skip
    print(json.dumps({"samples": samples, "median": med, **meta}))
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="one repetition per figure")
    parser.add_argument("--repeat", type=int, help="repetitions per figure (default 3)")
    parser.add_argument("--images", type=int, default=105, help="detect.py input images (~)")
    parser.add_argument("--commits", type=int, default=10_000, help="commits for lineage")
    parser.add_argument("--repos", type=int, default=20, help="repos for lineage")
    parser.add_argument(
        "--lineage-store",
        choices=["file", "s3"],
        default="file",
        help="where the lineage commits are made: file:// (default) or the SeaweedFS",
    )
    parser.add_argument(
        "--only", default="run,lineage", type=lambda v: set(v.split(",")), help="run,lineage"
    )
    parser.add_argument("--workdir", help="parent of the temporary work directory")
    parser.add_argument("--exe", metavar="S3FSV", help="the s3fsv executable to time")
    parser.add_argument(
        "--before",
        metavar="S3FSV",
        help="another s3fsv executable (e.g. main's) whose run is timed cold and hot as well",
    )
    args = parser.parse_args()
    args.repeat = args.repeat or (1 if args.quick else 3)
    EXE[:] = [args.exe] if args.exe else []
    if args.repeat < 1 or args.repos < 2 or args.commits < args.repos:
        parser.error("--repeat >= 1, --repos >= 2 and --commits >= --repos")
    samples: dict[str, list[float]] = {
        k: []
        for k in (
            "detect.local.cold",
            "detect.local.hot",
            "detect.run.cold",
            "detect.run.hot",
            "detect.run.reuse",
            "detect.run.warm",
            "detect.run.nofuse",
            "lineage.api",
            "lineage.cli",
            "lineage.scan",
        )
    }
    kinds = ("local.cold", "local.hot", "run.cold", "run.warm", "run.hot", "run.reuse")
    samples.update({f"detect.{k}": [] for k in ("before.cold", "before.hot")})
    samples.update({f"cpu.{k}": [] for k in (*kinds, "run.nofuse", "before.cold", "before.hot")})
    meta: dict[str, Any] = {
        "code": code_version(),
        "repeat": args.repeat,
        "load_avg_start": [round(x, 2) for x in os.getloadavg()],
    }
    work = Path(tempfile.mkdtemp(prefix="s3fsv-runbench-", dir=args.workdir or "/var/tmp"))
    server = None
    try:
        if "run" in args.only or args.lineage_store == "s3":
            server = SeaweedServer(work / "seaweed")
            server.start()
            os.environ.update(server.env())
        if "run" in args.only:
            assert server is not None
            meta["detect_images"] = bench_run(args, work, samples, server)
        if "lineage" in args.only:
            on_s3 = server if args.lineage_store == "s3" else None
            meta["lineage_found"] = bench_lineage(args, work, samples, on_s3)
            meta["lineage_commits"] = (args.commits // args.repos) * args.repos
            meta["lineage_store"] = args.lineage_store
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    meta["drop_caches"] = drop_caches_worked()
    meta["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    meta["elapsed_s"] = elapsed()
    return 0 if report(samples, meta) else 1


if __name__ == "__main__":
    sys.exit(main())
