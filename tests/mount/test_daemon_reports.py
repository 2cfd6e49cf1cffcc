"""What the daemon tells the user when it stops (the exit report ``s3fsv unmount`` prints:
commits made or failed, writes left staged), how it names itself (mount table, ``ps``), and how
it is started: the pinned commit it is handed, its working directory, its paths."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from s3fsv import config
from s3fsv.errors import NotFound, UsageError
from s3fsv.mount.daemon import _last_error
from s3fsv.mount.exit_report import ExitReport, take_report
from s3fsv.mount.options import parse_source
from s3fsv.mount.runtime_files import rotate_log
from s3fsv.store.store import Store
from tests.mounting import (
    S3FSV,
    daemon_pids,
    force_unmount,
    mounted,
    run_cli,
    wait_for_open_writers,
)


def _log_messages(url: str) -> list[str]:
    return [c.message for _, c in Store.open(url).repo("cams").log("main")]


def test_exit_report_is_read_once_and_only_by_its_daemon(tmp_path: Path) -> None:
    path = tmp_path / "x.exit.json"
    report = ExitReport(pid=1234)
    report.fail("commit of a@b failed: conflict", 6)
    report.write(path)
    assert take_report(path, 999) is None and not path.exists()  # an earlier daemon's
    report.write(path)
    got = take_report(path, 1234)
    assert got is not None and got.code == 6 and got.lines == report.lines
    assert take_report(path, 1234) is None


def test_unmount_reports_what_the_daemon_did_with_staged_writes(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """``unmount`` prints the commits made on unmount, fails (exit 6) with the reason when one
    is refused, and says which writes stay staged; a plain unmount says so too."""
    url = f"file://{tmp_path}/store"
    Store.init(url).create_repo("cams")
    other = tmp_path / "theirs.txt"
    other.write_text("theirs")
    mp = tmp_path / "mnt"
    with mounted(url, mp, env, "--commit-on", "unmount") as mp:
        (mp / "cams/branch/main/out.txt").write_text("mine")
        run_cli("--store", url, "put", "-q", str(other), "cams@main:out.txt", "-m", "x", env=env)
        result = run_cli("unmount", str(mp), env=env, check=False)
        assert result.returncode == 6, result.stderr
        lines = result.stderr.splitlines()
        assert lines[0].startswith("s3fsv: error: commit of cams@main failed: conflict")
        assert "1 staged path(s) of cams@main were not committed" in lines[-1]
    # The next mount says it shows them again; a plain unmount says they stay staged.
    again = run_cli("mount", url, str(mp), env=env)
    try:
        assert "cams@main has 1 path(s) staged by an earlier mount" in again.stderr
        assert (mp / "cams/branch/main/out.txt").read_text() == "mine"
        result = run_cli("unmount", str(mp), env=env)
        assert "1 staged path(s) of cams@main were not committed" in result.stderr
    finally:
        force_unmount(mp, Path(env["XDG_STATE_HOME"]))
    with mounted(url, mp, env, "--commit-on", "unmount") as mp:
        run_cli("commit", str(mp / "cams/branch/main"), "--overwrite", "-m", "mine", env=env)
        (mp / "cams/branch/main/more.txt").write_text("more")
        result = run_cli("unmount", str(mp), env=env)
        assert result.stderr.startswith("s3fsv: committed cams@main: ")
        assert "not committed" not in result.stderr
    with mounted(url, mp, env, "--commit-on", "idle=0.2") as mp:
        (mp / "cams/branch/main/idle.txt").write_text("idle")
        deadline = time.monotonic() + 20
        while len(_log_messages(url)) < 5 and time.monotonic() < deadline:
            time.sleep(0.1)
        result = run_cli("unmount", str(mp), env=env)
        assert "s3fsv: committed cams@main 1 time(s) after 0.2 s idle" in result.stderr
    # A daemon logs its commits at its default level: a node never unmounted keeps a record.
    logs = Path(env["XDG_STATE_HOME"], "s3fsv", "logs").glob("*.log")
    assert any("committed cams@main after 0.2s idle" in p.read_text() for p in logs)


def test_writes_left_by_an_earlier_mount_are_committed_without_being_touched(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """A node restarted after a crash: --commit-on commits what the dead mount staged even
    when no job looks at the branch again, and holds back what it had open for writing."""
    url = f"file://{tmp_path}/store"
    repo = Store.init(url).create_repo("cams")
    mp = tmp_path / "mnt"
    state = Path(env["XDG_STATE_HOME"])
    with mounted(url, mp, env) as mp:
        (mp / "cams/branch/main/done.txt").write_text("done")
        writer = open(mp / "cams/branch/main/half.bin", "wb")  # noqa: SIM115 (open at the kill)
        writer.write(b"half")
        writer.flush()
        wait_for_open_writers(state, 1)  # done.txt's RELEASE comes after close() returns
        (pid,) = daemon_pids(state, mp)
        os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            writer.close()
        force_unmount(mp, state)
    with mounted(url, mp, env, "--commit-on", "unmount") as mp:
        result = run_cli("unmount", str(mp), env=env, check=False)  # nothing touched the branch
        assert result.returncode == 13 and "half.bin" in result.stderr, result.stderr
        assert "2 staged path(s) of cams@main, 1 of them possibly incomplete," in result.stderr
    with mounted(url, mp, env, "--commit-on", "unmount") as mp:
        subprocess.run(["touch", str(mp / "cams/branch/main/half.bin")], check=True)
        result = run_cli("unmount", str(mp), env=env)
        assert result.stderr.startswith("s3fsv: committed cams@main: "), result.stderr
    head = repo.resolve("main")
    assert b"".join(repo.read_file(repo.stat(head, "done.txt"))) == b"done"
    assert b"".join(repo.read_file(repo.stat(head, "half.bin"))) == b"half"


def test_the_mount_table_names_store_repo_and_pinned_commit(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """``mount`` and /proc/mounts tell mounts apart: the store, the repo, the ref (for a
    pinned snapshot, the commit it resolved to)."""
    url = f"file://{tmp_path}/my,store"
    repo = Store.init(url).create_repo("cams")
    head = repo.resolve("main")
    for source, shown in (
        (url, url),
        (f"{url}/cams@main", f"{url}/cams@main"),
        (f"{url}/cams@main~0", f"{url}/cams@{head}"),
    ):
        with mounted(source, tmp_path / "mnt", env) as mp:
            lines = Path("/proc/self/mounts").read_text().splitlines()
            table = {line.split()[1]: line.split()[0] for line in lines}
            assert table[str(mp)] == shown, source


def test_a_pinned_mounts_daemon_pins_the_commit_the_command_resolved(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """``REPO@main~1`` is resolved once, by the command that prints it: the daemon is given
    that commit, so a branch moving meanwhile cannot make it mount another one."""
    url = f"file://{tmp_path}/store"
    repo = Store.init(url).create_repo("cams")
    (tmp_path / "v").write_text("one")
    run_cli("--store", url, "put", "-q", str(tmp_path / "v"), "cams@main:v", "-m", "1", env=env)
    parent = repo.resolve("main~1")
    with mounted(f"{url}/cams@main~1", tmp_path / "mnt", env) as mp:
        (pid,) = daemon_pids(Path(env["XDG_STATE_HOME"]), mp)
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert argv[argv.index(b"--pinned-commit") + 1] == parent.encode()
        assert not (mp / "v").exists()  # the parent commit: before v was put


def test_a_pinned_source_is_not_resolved_again(tmp_path: Path) -> None:
    """The daemon's pin stands for the ref: a branch deleted after the command resolved it
    does not stop the daemon, and a pin that names no commit is refused."""
    url = f"file://{tmp_path}/store"
    repo = Store.init(url).create_repo("cams")
    head = repo.resolve("main")
    repo.create_branch("short-lived")
    repo.refs.delete_branch("short-lived")
    _, source = parse_source(f"{url}/cams@short-lived", None, head)
    assert (source.repo, source.ref, source.commit) == ("cams", head, head)
    with pytest.raises(NotFound):
        parse_source(f"{url}/cams@main", None, "0" * 64)
    with pytest.raises(UsageError):
        parse_source(f"{url}/cams", None, head)


def test_the_daemon_runs_from_root_and_never_imports_from_the_callers_directory(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """`s3fsv mount cams cams` from a directory that holds an s3fsv/ package: the daemon
    runs the installed s3fsv, keeps no directory busy (its cwd is /), and its relative cache
    directory holds the reads."""
    url = f"file://{tmp_path}/store"
    Store.init(url).create_repo("cams")
    (tmp_path / "v").write_text("one")
    run_cli("--store", url, "put", "-q", str(tmp_path / "v"), "cams@main:v", "-m", "1", env=env)
    work = tmp_path / "work"
    mp = work / "cams"  # named like the repo: the daemon must tell the two arguments apart
    mp.mkdir(parents=True)
    (work / "s3fsv").mkdir()
    (work / "s3fsv" / "__init__.py").write_text("raise SystemExit('planted code ran')\n")
    exe = str(Path(sys.executable).with_name("s3fsv"))
    try:
        subprocess.run(
            [exe, "--store", url, "mount", "cams", "cams", "--cache-dir", "cache"],
            cwd=work,
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )
        (pid,) = daemon_pids(Path(env["XDG_STATE_HOME"]), mp)
        assert os.readlink(f"/proc/{pid}/cwd") == "/"
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert argv[1] == exe.encode() and b"mount" in argv  # `pgrep -f s3fsv.*mount` finds it
        assert (mp / "branch/main/v").read_text() == "one"
        # The cache is written after the read returns: give that write a moment.
        for _ in range(100):
            if any(p.is_file() for p in (work / "cache" / "objects").rglob("*")):
                break
            time.sleep(0.05)
        assert any(p.is_file() for p in (work / "cache" / "objects").rglob("*"))
    finally:
        force_unmount(mp, Path(env["XDG_STATE_HOME"]))


def test_a_failed_mount_reports_its_own_error_not_an_earlier_one(tmp_path: Path) -> None:
    logf = tmp_path / "mount.log"
    logf.write_text("s3fsv: error: an earlier daemon's failure\n")
    start = logf.stat().st_size
    assert _last_error(logf, start) == "daemon exited"
    with open(logf, "a") as fh:
        fh.write("s3fsv: INFO: mounting\ns3fsv: error: this one\n")
    assert _last_error(logf, start) == "this one"


def test_options_are_never_abbreviated() -> None:
    result = subprocess.run([*S3FSV, "mount", "--fore", "x", "y"], capture_output=True, text=True)
    assert result.returncode == 2 and "unrecognized arguments: --fore" in result.stderr


def test_relative_xdg_directories_are_ignored(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """As the XDG spec says: a daemon runs from /, where a relative one would name another
    place than where the command ran."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_STATE_HOME", "relative/state")
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")
    assert config.state_dir() == tmp_path / ".local/state/s3fsv"
    assert config.cache_dir() == tmp_path / ".cache/s3fsv"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "c"))
    assert config.cache_dir() == tmp_path / "c/s3fsv"


def test_a_mount_log_is_rotated_when_a_daemon_starts_on_it(tmp_path: Path) -> None:
    logf = tmp_path / "mount-x.log"
    logf.write_text("old\n" * 10)
    assert rotate_log(logf, keep=100) == logf and logf.exists()  # under the bound: kept
    logf.write_text("old\n" * 100)
    rotate_log(logf, keep=100)
    assert not logf.exists() and (tmp_path / "mount-x.log.1").read_text() == "old\n" * 100
    assert rotate_log(tmp_path / "none.log") == tmp_path / "none.log"  # no log yet
