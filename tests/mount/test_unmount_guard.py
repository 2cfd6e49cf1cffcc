"""The watcher that takes a mount away when the process serving it dies: it runs
``fusermount3 -uz MOUNTPOINT`` once the serving process is gone, whatever ended it, and nothing
once that process has released it. A ``fusermount3`` of the test's own, first on ``PATH``,
writes down how it was called."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest


@pytest.fixture
def fake_path(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "fusermount3"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/called\n')
    fake.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}


def serve(env: dict[str, str], mountpoint: str, ending: str, own_group: bool = False) -> None:
    """A process that starts a guard for ``mountpoint``, then ends as ``ending`` says (in a
    process group of its own with ``own_group``)."""
    code = (
        "import os, signal, sys\n"
        f"{'os.setpgrp()' if own_group else ''}\n"
        "from s3fsv.mount.unmount_guard import UnmountGuard\n"
        f"guard = UnmountGuard({mountpoint!r})\n"
        "guard.start()\n"
        f"{ending}\n"
    )
    subprocess.run([sys.executable, "-c", code], env=env, check=False, timeout=60)


def called(tmp_path: Path, deadline: float) -> str:
    while time.monotonic() < deadline:
        if (tmp_path / "called").exists():
            return (tmp_path / "called").read_text()
        time.sleep(0.05)
    return ""


@pytest.mark.parametrize(
    "ending",
    ["os.kill(os.getpid(), signal.SIGKILL)", "os._exit(3)", "raise SystemExit(0)"],
)
def test_a_process_that_dies_holding_a_mount_has_it_detached(
    tmp_path: Path, fake_path: dict[str, str], ending: str
) -> None:
    serve(fake_path, "/some/mount point", ending)
    assert called(tmp_path, time.monotonic() + 30) == "-uz /some/mount point\n"


def test_a_released_guard_detaches_nothing(tmp_path: Path, fake_path: dict[str, str]) -> None:
    serve(fake_path, "/some/mnt", "guard.release(); guard.release()")
    serve(fake_path, "/other/mnt", "guard.start(); os._exit(0)")  # started once only
    assert called(tmp_path, time.monotonic() + 30) == "-uz /other/mnt\n"
    time.sleep(0.5)  # (a late call from the first process would land by now)
    assert (tmp_path / "called").read_text() == "-uz /other/mnt\n"


def test_a_guard_outlives_a_signal_to_the_process_group_it_guards(
    tmp_path: Path, fake_path: dict[str, str]
) -> None:
    """Ctrl-C at a terminal reaches every process of the foreground group: the watcher must
    not die with the process it guards."""
    ending = "os.killpg(os.getpgrp(), signal.SIGHUP)"
    serve(fake_path, "/mnt/x", ending, own_group=True)
    assert called(tmp_path, time.monotonic() + 30) == "-uz /mnt/x\n"
