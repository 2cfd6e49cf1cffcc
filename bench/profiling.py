"""Sampling profiles of the s3fsv daemon while a benchmark workload runs (``--profile DIR``).

``py-spy record`` samples the daemon without stopping it (``--nonblocking``) and writes the
collapsed stacks (``<workload>-<n>.txt``: one ``frame;frame;... count`` line per stack, the
input of any flame-graph tool); ``summary`` prints the functions that held the most samples.
Idle threads (waiting on a lock, a socket or the FUSE device) are left out by py-spy.
"""

from __future__ import annotations

import collections
import contextlib
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

RATE = 250  # samples per second


def py_spy() -> str | None:
    """The py-spy executable (the virtualenv's first), or None."""
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


@contextlib.contextmanager
def recorded(pid: int | None, out: Path) -> Iterator[None]:
    """Sample ``pid`` into ``out`` for the duration of the block (nothing when ``pid`` or
    py-spy is missing)."""
    exe = py_spy()
    if pid is None or exe is None:
        yield
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [exe, "record", "--pid", str(pid), "--rate", str(RATE), "--format", "raw",
           "--nonblocking", "--threads", "--output", str(out)]  # fmt: skip
    spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            spy.wait(timeout=30)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait()


def summary(raw: Path, top: int = 15) -> str:
    """The ``top`` functions by samples in which they ran themselves, and by samples below
    them (inclusive), from a collapsed-stack file."""
    own: collections.Counter[str] = collections.Counter()
    below: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        frames, n = stack.split(";"), int(count)
        total += n
        own[frames[-1]] += n
        for frame in set(frames[1:]):  # the first frame names the thread
            below[frame] += n
    lines = [f"{raw.name}: {total} samples"]
    for title, counter in (("own", own), ("inclusive", below)):
        lines.append(f"  {title}:")
        lines += [f"    {n / max(total, 1):6.1%}  {frame}" for frame, n in counter.most_common(top)]
    return "\n".join(lines)


if __name__ == "__main__":
    for name in sys.argv[1:]:
        print(summary(Path(name)))
