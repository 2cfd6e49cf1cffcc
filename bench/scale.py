"""Scale: what a repo of 10k, 100k and 1M files costs. The cost must grow with the work done,
not with the size of the repo.

    .venv/bin/python bench/scale.py                    # 10k, 100k and 1M files
    .venv/bin/python bench/scale.py --sizes 10000      # one size

For each size, on a fresh ``file://`` store in a work directory (``--workdir``, default
/var/tmp): directories of 1,000 files of 64 bytes each (distinct contents), then, every step
through the real CLI:

- ``put``: ``s3fsv put DIR REPO@main -m ...``: wall time and the process's peak RSS
  (target: at most 500 MB at 1M files);
- one-file commit: ``s3fsv put`` of one changed file into one directory: objects and bytes
  it added to the store;
- ``find`` over a pinned mount (``s3fsv mount STORE/REPO@<commit> MP``): cold (fresh mount,
  empty cache, page cache dropped) and warm (fresh mount on the filled cache; target: at most
  15 s at 1M files), and the daemon's RSS after each walk (target: at most 300 MB);
- ``ls -l`` of one 1,000-entry directory right after the warm walk.

Prints a table and one JSON line; exits 1 when a target fails. Mounts are always unmounted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from common import cpu_seconds, drop_caches, s3fsv_command, say  # noqa: E402
from mounts import Mounts  # noqa: E402

PER_DIR = 1000
REPO = "big"
TARGETS = {"put_rss_mb": 500.0, "daemon_rss_mb": 300.0, "find_warm_s": 15.0}
TARGET_AT = 1_000_000  # the targets are stated for this size


def make_files(root: Path, count: int) -> None:
    """``count`` files of 64 distinct bytes, ``PER_DIR`` per directory."""
    for d in range((count + PER_DIR - 1) // PER_DIR):
        sub = root / f"d{d:04d}"
        sub.mkdir(parents=True)
        for i in range(d * PER_DIR, min(count, (d + 1) * PER_DIR)):
            (sub / f"f{i:07d}.txt").write_bytes(b"%063d\n" % i)


def run_measured(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Run ``cmd``; return (seconds, its peak RSS in MB, stdout). Raises on failure."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:3])} failed: {err.read().decode()[-500:]}")
        return seconds, usage.ru_maxrss / 1024, out.read().decode()


def rss_mb(pid: int | None) -> float | None:
    if pid is None:
        return None
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return None


def store_usage(store: Path) -> tuple[int, int]:
    """(objects, bytes) below the store directory."""
    n = size = 0
    for base, _, files in os.walk(store):
        for name in files:
            n += 1
            size += os.path.getsize(os.path.join(base, name))
    return n, size


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def one_size(count: int, work: Path, env: dict[str, str]) -> dict[str, Any]:
    s3fsv = s3fsv_command()
    here = work / f"n{count}"
    data, store = here / "data", here / "store"
    say(f"{count:,} files: writing them")
    make_files(data, count)
    url = f"file://{store}"
    env = {**env, "S3FSV_STORE": url}
    subprocess.run([*s3fsv, "init"], env=env, check=True, capture_output=True)
    subprocess.run([*s3fsv, "repo", "create", REPO], env=env, check=True, capture_output=True)
    say(f"{count:,} files: s3fsv put")
    put_s, put_rss, out = run_measured(
        [*s3fsv, "put", str(data), f"{REPO}@main", "-m", "all", "-q", "--json"], env
    )
    cid = json.loads(out)["commit"]
    row: dict[str, Any] = {"files": count, "put_s": put_s, "put_rss_mb": put_rss}
    say(f"  {put_s:.1f} s, peak RSS {put_rss:.0f} MB")

    one = here / "one.txt"
    one.write_bytes(b"changed\n")
    before = store_usage(store)
    subprocess.run(
        [*s3fsv, "put", str(one), f"{REPO}@main:d0000/f0000000.txt", "-m", "one", "-q"],
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    after = store_usage(store)
    row["commit1_objects"] = after[0] - before[0]
    row["commit1_kb"] = (after[1] - before[1]) / 1024
    say(f"  one-file commit: {row['commit1_objects']} objects, {row['commit1_kb']:.0f} KB")

    state = here / "state"
    state.mkdir()
    mounts = Mounts({**env, "XDG_STATE_HOME": str(state)}, state, here)
    mp, cache = here / "mnt", here / "cache"
    expect = 1 + (count + PER_DIR - 1) // PER_DIR + count
    try:
        for kind in ("cold", "warm"):
            with mounts.mount(f"{url}/{REPO}@{cid}", mp, cache):
                pid = mounts.daemon_pid(mp)
                drop_caches()
                cpu, start = cpu_seconds(pid), time.perf_counter()
                res = subprocess.run(["find", str(mp)], capture_output=True, check=True)
                row[f"find_{kind}_s"] = time.perf_counter() - start
                row[f"find_{kind}_cpu_s"] = (cpu_seconds(pid) or 0.0) - (cpu or 0.0)
                lines = res.stdout.count(b"\n")
                if lines != expect:
                    raise RuntimeError(f"find listed {lines} entries, expected {expect}")
                row[f"daemon_rss_{kind}_mb"] = rss_mb(pid)
                if kind == "warm":
                    row["ls_l_s"] = timed(["ls", "-l", str(mp / "d0000")])
            say(f"  find {kind}: {row[f'find_{kind}_s']:.2f} s (daemon CPU "
                f"{row[f'find_{kind}_cpu_s']:.2f} s), daemon RSS "
                f"{row[f'daemon_rss_{kind}_mb']:.0f} MB")  # fmt: skip
        row["daemon_rss_mb"] = max(row["daemon_rss_cold_mb"], row["daemon_rss_warm_mb"])
    finally:
        mounts.close()
        shutil.rmtree(here, ignore_errors=True)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10000,100000,1000000", help="file counts")
    parser.add_argument("--workdir", help="parent of the temporary work directory (/var/tmp)")
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="s3fsv-scale-", dir=args.workdir or "/var/tmp"))
    env = {**os.environ, "XDG_CONFIG_HOME": str(work / "config")}
    load = [round(x, 2) for x in os.getloadavg()]
    rows = []
    try:
        for count in sizes:
            rows.append(one_size(count, work, env))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    cols = [
        ("files", "{:,}"), ("put_s", "{:.1f}"), ("put_rss_mb", "{:.0f}"),
        ("commit1_objects", "{}"), ("commit1_kb", "{:.0f}"), ("find_cold_s", "{:.2f}"),
        ("find_warm_s", "{:.2f}"), ("daemon_rss_mb", "{:.0f}"), ("ls_l_s", "{:.3f}"),
    ]  # fmt: skip
    print("| " + " | ".join(c for c, _ in cols) + " |")
    print("|" + "---:|" * len(cols))
    ok = True
    for row in rows:
        print("| " + " | ".join(f.format(row[c]) for c, f in cols) + " |")
        if row["files"] >= TARGET_AT:
            ok &= all(row[k] <= v for k, v in TARGETS.items())
    end = [round(x, 2) for x in os.getloadavg()]
    print(f"\nload average {load} at the start, {end} at the end")
    print(json.dumps({"bench": "scale", "rows": rows, "targets": TARGETS, "pass": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
