"""Whether a run is still running, from what its ``run.json`` names: the s3fsv process that
runs it or, once that has ended, the command it started; each alive and the same process (a
pid reused since does not count, nor a zombie); a run of another host or of an earlier boot."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

from s3fsv.runs import owner, staging


def test_this_process_runs_what_it_wrote(tmp_path: Path) -> None:
    staging.write_pending(tmp_path, {"message": "m"}, running=owner.here())
    info = json.loads((tmp_path / staging.PENDING).read_text())
    assert info["message"] == "m"
    assert owner.still_running(info["running"]) == f"s3fsv process {os.getpid()}"
    assert oct((tmp_path / staging.PENDING).stat().st_mode & 0o777) == "0o600"
    staging.write_pending(tmp_path, {"message": "m"})  # written again without: ended
    assert "running" not in json.loads((tmp_path / staging.PENDING).read_text())
    assert [p.name for p in tmp_path.iterdir()] == [staging.PENDING]  # no temporary left


def test_reused_pids_ended_processes_and_zombies_run_nothing() -> None:
    me = owner.here()
    assert owner.still_running({**me, "since": None}) is not None  # the pid alone, then
    assert owner.still_running({**me, "since": 1}) is None  # another process had this pid
    child = subprocess.Popen(["true"])
    try:
        path = Path(f"/proc/{child.pid}/stat")
        deadline = time.monotonic() + 30
        while ") Z " not in path.read_text() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert owner.still_running({**me, "pid": child.pid, "since": None}) is None  # a zombie
    finally:
        child.wait()
    assert owner.still_running({**me, "pid": child.pid, "since": None}) is None  # gone
    for bad in (None, "x", {}, {"pid": 0}, {"pid": "1"}):
        assert owner.still_running(bad) is None


def test_a_command_that_outlives_its_s3fsv_still_runs_the_run() -> None:
    child = subprocess.Popen(["sleep", "60"])
    try:
        gone = {**owner.here(child.pid), "pid": 2**22 + 1, "since": None}  # s3fsv: no such pid
        assert owner.still_running(gone) == f"its command, process {child.pid}, whose s3fsv ended"
    finally:
        child.kill()
        child.wait()
    assert owner.still_running(gone) is None


def test_another_host_cannot_be_told_and_an_earlier_boot_is_over() -> None:
    me = owner.here()
    elsewhere = {**me, "host": socket.gethostname() + "-other"}
    assert "as far as can be told from here" in str(owner.still_running(elsewhere))
    assert owner.still_running({**me, "boot": "an-earlier-boot"}) is None
