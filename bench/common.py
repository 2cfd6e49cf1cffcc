"""Helpers shared by the benchmarks: logging, page-cache control, CPU accounting, the S3
client for the test server, and process shutdown."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))

from s3server import SeaweedServer  # noqa: E402

S3_THREADS = 16  # the boto3 baselines' parallelism, as the issues specify
_T0 = time.monotonic()
_DROP_OK: bool | None = None


def say(msg: str) -> None:
    print(f"[{time.monotonic() - _T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def drop_caches() -> bool:
    """``sync; echo 3 > /proc/sys/vm/drop_caches``. Returns False (once warned) when not root."""
    global _DROP_OK
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as fh:
            fh.write("3\n")
        _DROP_OK = True
    except OSError as err:
        if _DROP_OK is None:
            say(f"WARNING: cannot drop the page cache ({err}): 'cold' figures are optimistic")
        _DROP_OK = False
    return bool(_DROP_OK)


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time of a process so far (None when unknown)."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_until_idle(pid: int | None, *, busy: float = 0.1, timeout: float = 30.0) -> float:
    """Wait until process ``pid`` uses less than ``busy`` of a CPU over two half-second
    samples in a row (SeaweedFS keeps working after a big upload returns; without this, its
    leftover work lands in whatever is measured next). Returns the seconds waited."""
    start = time.monotonic()
    quiet = 0
    last = cpu_seconds(pid)
    while last is not None and quiet < 2 and time.monotonic() - start < timeout:
        time.sleep(0.5)
        now = cpu_seconds(pid)
        if now is None:
            break
        quiet = quiet + 1 if now - last < busy * 0.5 else 0
        last = now
    return time.monotonic() - start


def s3_client(server: SeaweedServer, pool: int = 2 * S3_THREADS) -> Any:
    """A plain boto3 client of ``server`` with ``pool`` connections."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=server.endpoint_url,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name=server.region,
        config=Config(
            s3={"addressing_style": "path"},
            max_pool_connections=pool,
            retries={"mode": "standard", "max_attempts": 3},
        ),
    )


def s3fsv_command() -> list[str]:
    exe = Path(sys.executable).parent / "s3fsv"
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "s3fsv.cli"]


def wait_or_kill(pid: int, grace: float = 10.0) -> None:
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z"):
                return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def drop_caches_worked() -> bool:
    """Whether the kernel page cache could be dropped between runs (needs root)."""
    return bool(_DROP_OK)


def elapsed() -> float:
    """Seconds since the benchmark started."""
    return round(time.monotonic() - _T0, 1)


def standard_arguments(parser: Any) -> None:
    """The options every benchmark takes: --quick, --repeat, --big-mib, --workdir, --keep."""
    parser.add_argument("--quick", action="store_true", help="one repetition per figure")
    parser.add_argument("--repeat", type=int, help="repetitions per figure (default 3, quick 1)")
    parser.add_argument("--big-mib", type=int, default=1024, help="big file size (MiB)")
    parser.add_argument("--workdir", help="parent of the temporary work directory")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")


def repetitions(parser: Any, args: Any) -> int:
    repeat = args.repeat or (1 if args.quick else 3)
    if repeat < 1:
        parser.error("--repeat must be at least 1")
    return int(repeat)


def run_repetitions(bench: Any, work: Path, repeat: int, keep: bool) -> bool:
    """``bench.setup()``, then ``bench.rep(n)`` for n = 1..repeat; ``bench.close()`` and the
    removal of ``work`` (unless ``keep``) whatever happens. SIGTERM and SIGHUP (and SIGINT,
    which a background job inherits ignored) interrupt it like Ctrl-C; returns False then."""

    def interrupted(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupted)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        bench.setup()
        for n in range(1, repeat + 1):
            bench.rep(n)
    except KeyboardInterrupt:
        say("interrupted: cleaning up")
        return False
    finally:
        bench.close()
        if keep:
            say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return True
