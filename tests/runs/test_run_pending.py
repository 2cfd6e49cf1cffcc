"""Whether a run is still running, from what its ``run.json`` names: the s3fsv process that
runs it, alive, the same process (a pid reused since does not count), and not a zombie."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from s3fsv.runs import staging


def owner(pid: int, since: int | None) -> dict[str, object]:
    return {"running": {"pid": pid, "since": since}}


def test_this_process_runs_what_it_wrote(tmp_path: Path) -> None:
    staging.write_pending(tmp_path, {"message": "m"}, running=True)
    info = json.loads((tmp_path / staging.PENDING).read_text())
    assert info["message"] == "m" and staging.running_pid(info) == os.getpid()
    assert oct((tmp_path / staging.PENDING).stat().st_mode & 0o777) == "0o600"
    staging.write_pending(tmp_path, {"message": "m"})  # written again without: ended
    assert staging.running_pid(json.loads((tmp_path / staging.PENDING).read_text())) is None
    assert not list(tmp_path.glob("*.tmp"))


def test_a_reused_pid_an_ended_process_and_a_zombie_run_nothing() -> None:
    # No start time known: the pid alone.
    assert staging.running_pid(owner(os.getpid(), None)) == os.getpid()
    info = {"running": {"pid": os.getpid(), "since": 1}}  # another process had this pid then
    assert staging.running_pid(info) is None
    child = subprocess.Popen(["true"])
    try:
        path = Path(f"/proc/{child.pid}/stat")
        deadline = time.monotonic() + 30
        while ") Z " not in path.read_text() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert staging.running_pid(owner(child.pid, None)) is None  # ended, not yet reaped
    finally:
        child.wait()
    assert staging.running_pid(owner(child.pid, None)) is None  # gone
    for bad in ({}, {"running": "x"}, owner(0, None), {"running": {"pid": "1"}}):
        assert staging.running_pid(bad) is None
