"""Helpers for tests that mount real FUSE filesystems through the ``s3fsv`` command.

``Mounted`` always unmounts and stops its daemon, even when the test fails: it tries
``s3fsv unmount``, then a lazy ``fusermount3 -uz``, then kills the daemon by its pid file.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

S3FSV = [sys.executable, "-m", "s3fsv.cli"]


def run_cli(
    *args: str, env: dict[str, str] | None = None, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [*S3FSV, *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"s3fsv {' '.join(args)} exited {result.returncode}:\n{result.stdout}{result.stderr}"
        )
    return result


def daemon_pids(state_home: Path, mountpoint: Path | None = None) -> list[int]:
    """Daemon pids recorded under ``state_home`` (only ``mountpoint``'s when given)."""
    from s3fsv.mount.runtime_files import mount_id

    pattern = f"{mount_id(mountpoint.absolute())}.json" if mountpoint else "*.json"
    pids = []
    for f in (state_home / "s3fsv" / "mounts").glob(pattern):
        with contextlib.suppress(OSError, ValueError, KeyError):
            pids.append(int(json.loads(f.read_text())["pid"]))
    return pids


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie counts as gone.
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z"):
            return False
    return True


def mount_table() -> dict[str, list[str]]:
    """Mount point -> mount options, as the kernel lists them (/proc/self/mounts)."""
    with open("/proc/self/mounts") as fh:
        fields = [line.split() for line in fh]
    return {f[1].replace("\\040", " "): f[3].split(",") for f in fields}


def in_mount_table(mountpoint: Path) -> bool:
    """Whether the kernel lists ``mountpoint`` as mounted. Unlike ``os.path.ismount``, this
    also sees a dead FUSE mount (its daemon killed), whose root fails ``stat`` (ENOTCONN)."""
    table = mount_table()
    return str(mountpoint) in table or os.path.realpath(mountpoint) in table


def force_unmount(mountpoint: Path, state_home: Path) -> None:
    mountpoint = Path(os.path.realpath(mountpoint))  # as the mount table lists it
    pids = daemon_pids(state_home, mountpoint)
    if in_mount_table(mountpoint):
        subprocess.run(["fusermount3", "-u", str(mountpoint)], capture_output=True)
    if in_mount_table(mountpoint):
        subprocess.run(["fusermount3", "-uz", str(mountpoint)], capture_output=True)
    deadline = time.monotonic() + 10
    for pid in pids:
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def mounted(
    source: str,
    mountpoint: Path,
    env: dict[str, str],
    *options: str,
    said: list[str] | None = None,
) -> Iterator[Path]:
    """Mount ``source`` at ``mountpoint`` with ``env`` (which must set XDG_STATE_HOME); what
    the mount command printed to stderr is appended to ``said``."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    state_home = Path(env["XDG_STATE_HOME"])
    try:
        result = run_cli("mount", source, str(mountpoint), *options, env=env)
        if said is not None:
            said.append(result.stderr)
        assert os.path.ismount(mountpoint)
        yield mountpoint
    finally:
        if in_mount_table(mountpoint):
            result = run_cli("unmount", str(mountpoint), env=env, check=False)
            if result.returncode != 0:
                force_unmount(mountpoint, state_home)
        force_unmount(mountpoint, state_home)


def drop_page_cache() -> None:
    """Ask the kernel to forget cached file data, so the next read reaches the daemon."""
    os.sync()
    with contextlib.suppress(OSError), open("/proc/sys/vm/drop_caches", "w") as fh:
        fh.write("3\n")


def wait_for_open_writers(state_home: Path, count: int = 0, timeout: float = 10.0) -> None:
    """Wait until the daemons' staging journals show ``count`` files open for writing. The
    kernel sends RELEASE after close() returns: a daemon killed (or sent SIGTERM) before it
    reads one counts that file as open, so holds it back as possibly incomplete."""
    from s3fsv.mount.staging import _still_open

    deadline = time.monotonic() + timeout
    journals = list((state_home / "s3fsv" / "staging").glob("*/slot-*/writing"))
    while sum(len(_still_open(j)) for j in journals) != count:
        assert time.monotonic() < deadline, f"files open for writing did not drop to {count}"
        time.sleep(0.02)
