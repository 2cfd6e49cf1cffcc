"""``make bench``: s3fsv against s3fs-fuse, rclone and boto3 on the same SeaweedFS, in one run,
with local disk and the minimal Python FUSE passthrough as ceilings.

    .venv/bin/python bench/compare.py            # full sizes, 3 repetitions (median, min-max)
    .venv/bin/python bench/compare.py --quick    # small sizes, 1 repetition (under 3 minutes)

It starts its own SeaweedFS on 127.0.0.1 (tests/s3server.py), writes the data on local disk
(one big file of random bytes, 2,000 files of 100 KB in 20 directories, 100,000 tiny files in
100 directories, the example's images), uploads it once as plain objects (read by s3fs-fuse,
rclone and boto3) and once as one s3fsv commit (read through a pinned mount,
``s3fsv mount s3://bench/store/data@<commit>``). Systems: ``s3fsv``; ``s3fs`` (s3fs-fuse,
no cache); ``s3fs-cache`` (``-o use_cache``); ``rclone`` (``--vfs-cache-mode full``); ``boto3``
(a streamed GET; 16 threads for small objects; ListObjectsV2 for listings); ``local`` (the
local copy); ``passthrough`` (``bench/passthrough.py`` over the local copy: what a Python FUSE
daemon can at best do). Workloads, each repeated ``--repeat`` times:

- ``big-cold``: fresh mount, empty cache, page cache dropped, ``cat``-like read of the file;
- ``big-pagecache``: the same read again on the same mount;
- ``big-filled``: a fresh mount on the cache the cold read filled (page cache left as it is);
- ``fio-cold`` / ``fio-warm``: fio random 4 KiB reads (psync, one job) of the big file, on a
  fresh mount with an empty cache and page cache dropped / right after ``big-filled``;
- ``ttfb``: open the big file on a fresh mount with an empty cache and read 4 KiB;
- ``small-cold`` / ``small-warm``: every small file read whole in sorted order, on a fresh
  mount with an empty cache (page cache dropped) / on a fresh mount on the filled cache;
- ``find-2k``, ``lsr-2k``, ``find-100k``, ``lsr-100k``: ``find`` and ``ls -lR`` of the small
  and the tiny files' trees, each on a fresh mount with an empty cache, page cache dropped;
- ``write-small`` / ``write-big``: the small files / the big file written through the mount
  into a new place (s3fsv: a new repo's branch, ``s3fsv commit`` included; rclone: until the
  objects are in the bucket; local: ``sync`` included);
- ``detect``: ``examples/detect.py`` over the images on a fresh mount with an empty cache,
  writing to local disk.

A figure that took more than ``--slow`` seconds is not repeated. A system that fails a
workload is recorded with its error and the run goes on. Results go to
``bench/results/<date>-<sha>[-quick].json``, rendered by ``bench/report.py`` as a Markdown table
of each system's ratio to the best and a PNG chart. Every mount, peer process and the server
are stopped at the end, also on errors and Ctrl-C.

``--profile DIR`` samples the s3fsv daemon with py-spy during each of its workloads (see
``bench/profiling.py``; ``python bench/profiling.py DIR/*.txt`` prints where the time went).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import compare_workloads as w  # noqa: E402
import profiling  # noqa: E402
from common import (  # noqa: E402
    drop_caches,
    drop_caches_worked,
    run_repetitions,
    s3_client,
    s3fsv_command,
    say,
    wait_until_idle,
)
from mounts import Mounts  # noqa: E402
from peers import PeerMounts  # noqa: E402
from read_workloads import make_dataset, read_sequential, read_small_files  # noqa: E402
from report import WORKLOADS, render  # noqa: E402
from s3server import SeaweedServer  # noqa: E402
from write_bench import run_detect  # noqa: E402
from write_workloads import code_version, make_images  # noqa: E402

from s3fsv.store import transfer  # noqa: E402
from s3fsv.store.store import Store  # noqa: E402

BUCKET = "bench"
PLAIN = "plain"
WRITES = "w"
REPO = "data"
SYSTEMS = ("s3fsv", "s3fs", "s3fs-cache", "rclone", "boto3", "local", "passthrough")
RESULTS = HERE / "results"


@dataclass(frozen=True)
class Sizes:
    big_mib: int
    dirs: int
    per_dir: int
    many_dirs: int
    many_per_dir: int
    images: int  # about this many detect.py inputs
    fio_mib: int  # bytes fio reads in all


FULL = Sizes(1024, 20, 100, 100, 1000, 70, 32)
QUICK = Sizes(64, 4, 100, 10, 200, 7, 4)


class Compare:
    def __init__(self, args: argparse.Namespace, work: Path, sizes: Sizes) -> None:
        self.args = args
        self.work = work
        self.sizes = sizes
        self.systems = [s for s in SYSTEMS if s in args.systems]
        self.samples: dict[str, dict[str, list[float]]] = {}
        self.errors: dict[str, dict[str, str]] = {}
        self.loads: list[list[float]] = []
        self.server: SeaweedServer | None = None
        self.mounts: Mounts | None = None
        self.peers: PeerMounts | None = None
        self.serial = 0
        self.restarts = 0  # of SeaweedFS, see _server_up
        self.rep_no = 0

    # -- set-up ---------------------------------------------------------------------------------
    def setup(self) -> None:
        sz, work = self.sizes, self.work
        say(f"work directory {work}")
        say(f"local data: {sz.big_mib} MiB file, {sz.dirs}x{sz.per_dir} small files, "
            f"{sz.many_dirs}x{sz.many_per_dir} tiny files, ~{sz.images} images")  # fmt: skip
        self.local = work / "local"
        data = make_dataset(self.local, sz.big_mib * w.MiB, sz.dirs, sz.per_dir)
        self.big, self.big_size, self.small = data.big, data.big_size, data.small
        self.many_files = w.make_many(self.local, sz.many_dirs, sz.many_per_dir)
        make_images(self.local / "images", max(1, sz.images // 7))
        os.sync()
        self.expect = {
            "small": (w.count_entries(self.local / "small"), len(self.small)),
            "many": (w.count_entries(self.local / "many"), self.many_files),
        }
        names = sorted(
            p.relative_to(self.local).as_posix() for p in self.local.rglob("*") if p.is_file()
        )
        say("starting SeaweedFS on 127.0.0.1")
        self.server = SeaweedServer(work / "weed", grace=3.0).start()
        env = {**os.environ, **self.server.env()}
        for var in ("state", "config"):
            (work / var).mkdir()
        env["XDG_STATE_HOME"] = str(work / "state")
        env["XDG_CONFIG_HOME"] = str(work / "config")  # never a user's s3fsv config
        env.pop("S3FSV_STORE", None)
        os.environ.update(self.server.env())
        self.env = env
        self.mounts = Mounts(env, work / "state", work)
        s = self.server
        self.peers = PeerMounts(s.endpoint_url, s.access_key, s.secret_key, s.region, work / "peer")
        self.client = s3_client(self.server)
        self.client.create_bucket(Bucket=BUCKET)
        self.client.put_object(Bucket=BUCKET, Key=f"{WRITES}/", Body=b"")
        say(f"uploading {len(names)} files as plain objects (boto3, 16 threads)")
        start = time.perf_counter()
        big = [n for n in names if n == self.big]
        w.s3_put_big(self.client, BUCKET, self.local / self.big, f"{PLAIN}/{self.big}")
        w.s3_put_tree(self.client, BUCKET, self.local, [n for n in names if n not in big], PLAIN)
        say(f"  done in {time.perf_counter() - start:.1f} s")
        say("uploading the same files as one s3fsv commit")
        self.store_url = f"s3://{BUCKET}/store"
        store = Store.init(self.store_url, endpoint_url=s.endpoint_url)
        try:
            start = time.perf_counter()
            repo = store.create_repo(REPO)
            self.cid, files = transfer.put(repo, "main", self.local, "", "bench data")
            say(f"  commit {self.cid[:12]}: {files} files in {time.perf_counter() - start:.1f} s")
        finally:
            store.close()
        self.pinned = f"{self.store_url}/{REPO}@{self.cid}"
        say("detect.py on the local copy (the reference output)")
        self.detect_ref = self._detect(self.local / "images", "reference")
        self._quiet()

    # -- plumbing -------------------------------------------------------------------------------
    def _quiet(self) -> None:
        """Let the server finish what earlier steps left it (after uploads)."""
        os.sync()
        wait_until_idle(self.server._proc.pid if self.server and self.server._proc else None)

    def _server_up(self) -> None:
        """Start SeaweedFS again (same directory and ports: same data) if it stopped: on a
        machine shared with other test runs, something may have killed it."""
        if self.server is not None and not self.server.running:
            say("SeaweedFS stopped (killed from outside?): starting it again")
            self.restarts += 1
            self.server.start()

    def _new_cache(self, system: str) -> Path:
        self.serial += 1
        return self.work / "caches" / f"{system}-{self.serial}"

    @contextlib.contextmanager
    def view(self, system: str, cache: Path, source: str | None = None) -> Iterator[Path]:
        """``system``'s view of the data (``source``: another s3fsv source, or peer prefix)."""
        assert self.mounts is not None and self.peers is not None
        if system == "local":
            yield self.local
            return
        mp = self.work / f"mnt-{system}"
        if system == "passthrough":
            with self.mounts.passthrough(self.local, mp) as root:
                yield root
        elif system == "s3fsv":
            with self.mounts.mount(source or self.pinned, mp, cache) as root:
                yield root
        else:
            with self.peers.mount(system, BUCKET, source or PLAIN, mp, cache) as root:
                yield root

    def wanted(self, workload: str, system: str) -> bool:
        if self.args.only and workload not in self.args.only:
            return False
        got = self.samples.get(workload, {}).get(system, [])
        if workload in self.errors and system in self.errors[workload]:
            return False
        return not any(t > self.args.slow for t in got)

    def sample(self, workload: str, system: str, fn: Callable[[], object]) -> None:
        """Time ``fn`` unless not wanted; a float it returns is its own, more precise, figure
        (fio's job runtime)."""
        if not self.wanted(workload, system):
            return
        pid = self._profiled_pid(system)
        out = Path(self.args.profile or ".") / f"{workload}-{self.rep_no}.txt"
        with profiling.recorded(pid, out) if pid is not None else contextlib.nullcontext():
            start = time.perf_counter()
            own = fn()
        seconds = own if isinstance(own, float) else time.perf_counter() - start
        self.samples.setdefault(workload, {}).setdefault(system, []).append(seconds)
        say(f"  {workload:<14} {system:<12} {seconds:9.3f} s")

    def _profiled_pid(self, system: str) -> int | None:
        """The s3fsv daemon to sample during a workload, with ``--profile``."""
        if not self.args.profile or system != "s3fsv" or self.mounts is None:
            return None
        return self.mounts.daemon_pid(self.work / "mnt-s3fsv")

    def attempt(self, workloads: tuple[str, ...], system: str, fn: Callable[[], None]) -> None:
        """Run one block of workloads for ``system``; a failure is recorded, not raised."""
        if not any(self.wanted(wl, system) for wl in workloads):
            return
        self._server_up()
        try:
            fn()
        except KeyboardInterrupt:
            raise
        except Exception as err:
            msg = f"{type(err).__name__}: {err}"[:300]
            say(f"  {system} failed {'/'.join(workloads)}: {msg}")
            for wl in workloads:
                if self.wanted(wl, system):
                    self.errors.setdefault(wl, {})[system] = msg

    # -- one repetition -------------------------------------------------------------------------
    def rep(self, n: int) -> None:
        self.rep_no = n
        self.loads.append([round(x, 2) for x in os.getloadavg()])
        say(f"repetition {n} (load average {self.loads[-1]})")
        for system in self.systems:
            self.attempt(("big-cold", "big-pagecache", "big-filled", "fio-warm"), system,
                         lambda s=system: self.big_reads(s))  # fmt: skip
            self.attempt(("ttfb", "fio-cold"), system, lambda s=system: self.first_bytes(s, n))
            self.attempt(("small-cold", "small-warm"), system, lambda s=system: self.smalls(s))
            for wl in ("find-2k", "lsr-2k", "find-100k", "lsr-100k"):
                self.attempt((wl,), system, lambda s=system, x=wl: self.listing(x, s))
            if system != "boto3":
                self.attempt(("detect",), system, lambda s=system: self.detect(s))
        for system in self.systems:
            if system != "passthrough":
                self.attempt(("write-small",), system, lambda s=system: self.write(s, "small", n))
                self.attempt(("write-big",), system, lambda s=system: self.write(s, "big", n))

    def big_reads(self, system: str) -> None:
        path, size = self.big, self.big_size
        if system == "boto3":
            drop_caches()
            key = f"{PLAIN}/{path}"
            self.sample("big-cold", system, lambda: _stream(self.client, key, size))
            return
        cache = self._new_cache(system)
        try:
            with self.view(system, cache) as root:
                drop_caches()
                self.sample("big-cold", system, lambda: read_sequential(root / path, size))
                self.sample("big-pagecache", system, lambda: read_sequential(root / path, size))
            with self.view(system, cache) as root:
                self.sample("big-filled", system, lambda: read_sequential(root / path, size))
                io = self.sizes.fio_mib * w.MiB
                self.sample("fio-warm", system, lambda: w.fio_randread(root / path, io, 2))
        finally:
            shutil.rmtree(cache, ignore_errors=True)

    def first_bytes(self, system: str, n: int) -> None:
        io = self.sizes.fio_mib * w.MiB
        if system == "boto3":
            key = f"{PLAIN}/{self.big}"
            self.sample("ttfb", system, lambda: w.s3_first_bytes(self.client, BUCKET, key))
            self.sample("fio-cold", system, lambda: w.s3_random_reads(
                self.client, BUCKET, key, self.big_size, io, n))  # fmt: skip
            return
        cache = self._new_cache(system)
        try:
            with self.view(system, cache) as root:
                drop_caches()
                self.sample("ttfb", system, lambda: w.first_bytes(root / self.big))
                self.sample("fio-cold", system, lambda: w.fio_randread(root / self.big, io, n))
        finally:
            shutil.rmtree(cache, ignore_errors=True)

    def smalls(self, system: str) -> None:
        if system == "boto3":
            drop_caches()
            keys = [f"{PLAIN}/{name}" for name in self.small]
            self.sample("small-cold", system, lambda: _get_all(self.client, keys))
            return
        cache = self._new_cache(system)
        try:
            with self.view(system, cache) as root:
                drop_caches()
                self.sample("small-cold", system, lambda: read_small_files(root, self.small))
            with self.view(system, cache) as root:
                self.sample("small-warm", system, lambda: read_small_files(root, self.small))
        finally:
            shutil.rmtree(cache, ignore_errors=True)

    def listing(self, workload: str, system: str) -> None:
        kind, tree = workload.split("-")
        sub = "small" if tree == "2k" else "many"
        entries, files = self.expect[sub]
        if system == "boto3":
            prefix = f"{PLAIN}/{sub}/"
            self.sample(workload, system, lambda: w.s3_list(self.client, BUCKET, prefix, files))
            return
        cache = self._new_cache(system)
        try:
            with self.view(system, cache) as root:
                drop_caches()
                if kind == "find":
                    self.sample(workload, system, lambda: w.run_find(root / sub, entries))
                else:
                    self.sample(workload, system, lambda: w.run_ls_lr(root / sub, files))
        finally:
            shutil.rmtree(cache, ignore_errors=True)

    def detect(self, system: str) -> None:
        cache = self._new_cache(system)
        try:
            with self.view(system, cache) as root:
                drop_caches()
                out: list[bytes] = []
                images = root / "images"
                self.sample("detect", system, lambda: out.append(self._detect(images, system)))
                if out and out[0] != self.detect_ref:
                    raise RuntimeError("detect.py results differ from the local run's")
        finally:
            shutil.rmtree(cache, ignore_errors=True)

    def _detect(self, images: Path, label: str) -> bytes:
        out = self.work / f"detect-{label}"
        logs = self.work / "detect-logs"
        logs.mkdir(exist_ok=True)
        try:
            run_detect(images, out, logs / label)
            return (out / "summary.json").read_bytes()
        finally:
            shutil.rmtree(out, ignore_errors=True)

    def write(self, system: str, kind: str, n: int) -> None:
        workload = f"write-{kind}"
        names = self.small if kind == "small" else [self.big]
        where = f"{system}-{n}-{kind}"
        self._quiet()
        if system == "boto3":
            prefix = f"{WRITES}/{where}"
            if kind == "small":
                self.sample(workload, system, lambda: w.s3_put_tree(
                    self.client, BUCKET, self.local, names, prefix))  # fmt: skip
            else:
                key = f"{prefix}/{self.big}"
                self.sample(workload, system, lambda: w.s3_put_big(
                    self.client, BUCKET, self.local / self.big, key))  # fmt: skip
            return
        if system == "local":
            dest = self.work / f"written-{where}"
            try:
                self.sample(
                    workload, system, lambda: (w.copy_tree(self.local, names, dest), os.sync())
                )
            finally:
                shutil.rmtree(dest, ignore_errors=True)
            return
        cache = self._new_cache(system)
        try:
            if system == "s3fsv":
                self._cli("--store", self.store_url, "repo", "create", where)
                with self.view(system, cache, f"{self.store_url}/{where}") as root:
                    branch = root / "branch" / "main"
                    self.sample(workload, system, lambda: self._write_commit(names, branch, kind))
                return
            with self.view(system, cache, WRITES) as root:
                prefix = f"{WRITES}/{where}/"
                self.sample(workload, system, lambda: self._write_peer(names, root / where, prefix))
        finally:
            shutil.rmtree(cache, ignore_errors=True)

    def _write_commit(self, names: list[str], branch: Path, kind: str) -> None:
        w.copy_tree(self.local, names, branch) if kind == "small" else w.copy_file(
            self.local / names[0], branch / names[0]
        )
        out = json.loads(self._cli("commit", str(branch), "-m", "bench", "--json"))
        if not out.get("commit"):
            raise RuntimeError(f"s3fsv commit of {branch} committed nothing")

    def _write_peer(self, names: list[str], dest: Path, prefix: str) -> None:
        if len(names) == 1:
            dest.mkdir()
            w.copy_file(self.local / names[0], dest / names[0])
        else:
            w.copy_tree(self.local, names, dest)
        # rclone uploads after the files are closed: the write is done once they are stored.
        deadline = time.monotonic() + 900
        while w.s3_count(self.client, BUCKET, prefix) < len(names):
            if time.monotonic() > deadline:
                raise RuntimeError(f"files below {prefix} never all reached the bucket")
            time.sleep(0.05)

    def _cli(self, *args: str) -> str:
        res = subprocess.run(
            [*s3fsv_command(), *args], env=self.env, capture_output=True, text=True, timeout=900
        )
        if res.returncode != 0:
            raise RuntimeError(f"s3fsv {' '.join(args[:3])} exited {res.returncode}: "
                               f"{res.stderr.strip()}")  # fmt: skip
        return res.stdout

    def close(self) -> None:
        if self.peers is not None:
            self.peers.close()
        if self.mounts is not None:
            self.mounts.close()
        if self.server is not None:
            say("stopping SeaweedFS")
            self.server.stop()


def _stream(client: Any, key: str, size: int) -> None:
    body = client.get_object(Bucket=BUCKET, Key=key)["Body"]
    total = 0
    while chunk := body.read(w.MiB):
        total += len(chunk)
    if total != size:
        raise RuntimeError(f"GET {key}: {total} bytes, expected {size}")


def _get_all(client: Any, keys: list[str]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(16) as pool:
        sizes = list(pool.map(lambda k: len(client.get_object(Bucket=BUCKET, Key=k)["Body"].read()),
                              keys))  # fmt: skip
    if any(s <= 0 for s in sizes):
        raise RuntimeError("an object came back empty")


def _versions() -> dict[str, str]:
    out = {"kernel": platform.release(), "python": platform.python_version()}
    for name, cmd in (("s3fs", ["s3fs", "--version"]), ("rclone", ["rclone", "version"]),
                      ("fio", ["fio", "--version"])):  # fmt: skip
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
            out[name] = (res.stdout or res.stderr).strip().splitlines()[0]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, one repetition")
    parser.add_argument("--repeat", type=int, help="repetitions (default 3, quick 1)")
    parser.add_argument(
        "--slow", type=float, default=60.0, help="a figure slower than this is not repeated (60 s)"
    )
    parser.add_argument("--systems", default=",".join(SYSTEMS),
                        help="comma-separated subset of: " + ", ".join(SYSTEMS))  # fmt: skip
    parser.add_argument("--only", default="", help="comma-separated workloads to run (all)")
    parser.add_argument("--workdir", help="parent of the temporary work directory (/var/tmp)")
    parser.add_argument("--out", help="results file (default bench/results/<date>-<sha>.json)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="sample the s3fsv daemon with py-spy during each workload into "
        "DIR/<workload>-<repetition>.txt (bench/profiling.py summarises them)",
    )
    args = parser.parse_args()
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    args.only = [x.strip() for x in args.only.split(",") if x.strip()]
    if bad := [x for x in args.only if x not in WORKLOADS]:
        parser.error(f"unknown workloads: {', '.join(bad)} (known: {', '.join(WORKLOADS)})")
    if bad := [s for s in args.systems if s not in SYSTEMS]:
        parser.error(f"unknown systems: {', '.join(bad)}")
    repeat = args.repeat or (1 if args.quick else 3)
    sizes = QUICK if args.quick else FULL
    if missing := PeerMounts.missing() + [p for p in ("fio",) if shutil.which(p) is None]:
        parser.error(f"not installed: {', '.join(missing)} (make bench installs them)")
    version = code_version()
    meta: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "code": version,
        "quick": args.quick,
        "repeat": repeat,
        "sizes": asdict(sizes),
        "cpus": os.cpu_count(),
        "versions": _versions(),
        "load_avg_start": [round(x, 2) for x in os.getloadavg()],
    }
    work = Path(tempfile.mkdtemp(prefix="s3fsv-compare-", dir=args.workdir or "/var/tmp"))
    bench = Compare(args, work, sizes)
    finished = run_repetitions(bench, work, repeat, args.keep)
    meta.update(
        load_avg_end=[round(x, 2) for x in os.getloadavg()],
        load_avg_per_rep=bench.loads,
        drop_caches=drop_caches_worked(),
        server_restarts=bench.restarts,
        finished=finished,
    )
    if not bench.samples:
        say("no results")
        return 130 if not finished else 1
    stamp = datetime.date.today().isoformat()
    name = f"{stamp}-{version['commit'] or 'unknown'}{'-quick' if args.quick else ''}.json"
    out = Path(args.out) if args.out else RESULTS / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "samples": bench.samples, "errors": bench.errors},
                              indent=1, sort_keys=True) + "\n")  # fmt: skip
    md = render(out, latest=not args.quick and finished)
    print(md)
    say(f"results: {out}")
    return 0 if finished else 130


if __name__ == "__main__":
    sys.exit(main())
