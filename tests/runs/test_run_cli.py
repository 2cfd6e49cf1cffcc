"""``s3fsv run`` as a user meets it, with cheap commands on a file:// store: a failing command
commits nothing and keeps its outputs (then ``--commit ID`` / ``--discard ID``), Ctrl-C leaves
no commit and no mount, a mount of the store already there is used, no FUSE falls back to
downloads, and mistakes are one line with no traceback."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.mounting import S3FSV, alive, daemon_pids, in_mount_table, mounted
from tests.runs.helpers import cli, xdg


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    env = xdg(tmp_path, S3FSV_STORE=f"file://{tmp_path}/store")
    cli(tmp_path, "init", env=env)
    for repo in ("cams", "det"):
        cli(tmp_path, "repo", "create", repo, env=env)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("alpha\n")
    cli(tmp_path, "put", "-q", str(tmp_path / "in"), "cams@main:data", "-m", "ingest", env=env)
    return env


def head(tmp: Path, env: dict[str, str], repo: str = "det") -> str:
    return json.loads(cli(tmp, "log", repo, "-n", "1", "--json", env=env).stdout)[0]["id"]


def runs_dir(env: dict[str, str]) -> Path:
    return Path(env["XDG_STATE_HOME"]) / "s3fsv" / "runs"


def no_mount_left(env: dict[str, str]) -> None:
    state = Path(env["XDG_STATE_HOME"])
    assert not [p for p in daemon_pids(state) if alive(p)]
    with open("/proc/self/mounts") as fh:
        assert str(state) not in fh.read()


# The pipes a process has, other than its standard streams.
PIPES = (
    "import os; fd = '/proc/self/fd/'; print(*(f for f in os.listdir(fd) if int(f) > 2"
    " and os.path.exists(fd + f) and os.readlink(fd + f).startswith('pipe:')))"
)


def test_success_commits_exactly_what_was_written(tmp_path: Path, env: dict[str, str]) -> None:
    cli(tmp_path, "put", "-q", str(tmp_path / "in"), "det@main:out/old", "-m", "old", env=env)
    done = cli(
        tmp_path, "run", "--in", "cams@main:data", "--out", "det@main:out", "-m", "copy",
        "--", "sh", "-c", 'cp "$S3FSV_IN/data/a.txt" {out}/b.txt; echo "$S3FSV_RUN_ID" > {out}/id;'
        f' "{sys.executable}" -c "{PIPES}" > {{out}}/fds; env > {{out}}/env',
        env=env,
    )  # fmt: skip
    cid = done.stdout.strip()
    assert cid == head(tmp_path, env)
    ls = cli(tmp_path, "ls", "-R", f"det@{cid}:out", env=env).stdout.split()
    assert ls == ["out/b.txt", "out/env", "out/fds", "out/id"]  # out/old is gone: the run owns out/
    # No pipe of s3fsv's own reaches the command, such as the one that keeps the mount's
    # unmount guard waiting (what stays open across exec is the command's).
    assert cli(tmp_path, "cat", f"det@{cid}:out/fds", env=env).stdout.split() == []
    # The caller's environment and the run's variables: nothing s3fsv set for itself.
    seen = dict(
        line.split("=", 1)
        for line in cli(tmp_path, "cat", f"det@{cid}:out/env", env=env).stdout.splitlines()
        if "=" in line
    )
    assert {k for k in seen if k.startswith("FUSE_")} == {k for k in env if k.startswith("FUSE_")}
    assert seen["S3FSV_OUT"].endswith("/out") and seen["HOME"] == env["HOME"]
    assert "replace out/ of det@main: 1 path(s) there that the command did not write are " in (
        done.stderr
    )
    assert f"input cams: cams@main:data = commit {head(tmp_path, env, 'cams')}" in done.stderr
    assert "committed the outputs of run" in done.stderr and "(exit 0" in done.stderr
    assert not list(runs_dir(env).iterdir())
    no_mount_left(env)
    logs = Path(env["XDG_STATE_HOME"]) / "s3fsv" / "logs"
    assert not list(logs.glob("mount-mnt-*"))  # a run's own mount leaves no log behind


def test_failure_keeps_outputs_then_commit_or_discard(tmp_path: Path, env: dict[str, str]) -> None:
    before = head(tmp_path, env)
    argv = ["sh", "-c", "echo partial > {out}/part.txt; exit 3"]
    done = cli(tmp_path, "run", "--in", "cams", "--out", "det@main:r", "--", *argv,
               env=env, check=False)  # fmt: skip
    assert done.returncode == 3
    assert head(tmp_path, env) == before  # no commit
    (kept,) = runs_dir(env).iterdir()
    assert (kept / "out" / "part.txt").read_text() == "partial\n"
    assert not (kept / "mnt").exists() and not (kept / "in").exists()
    assert oct(kept.stat().st_mode & 0o777) == "0o700"
    assert oct((kept / "run.json").stat().st_mode & 0o777) == "0o600"
    said = done.stderr
    assert "the command exited with 3" in said and "nothing committed" in said
    assert f"its outputs are kept in {kept}/out" in said
    assert f"s3fsv run --commit {kept.name}" in said and f"s3fsv run --discard {kept.name}" in said
    no_mount_left(env)
    listed = cli(tmp_path, "run", "--list", env=env).stdout.splitlines()
    assert listed == [f"{kept.name}  failed (exit 3)  -> det@main:r"]
    cid = cli(tmp_path, "run", "--commit", kept.name, env=env).stdout.strip()
    assert cid == head(tmp_path, env) != before
    shown = json.loads(cli(tmp_path, "show", f"det@{cid}", "--json", env=env).stdout)
    assert shown["provenance"]["run"]["exit_code"] == 3
    assert shown["changes"]["added"] == ["r/part.txt"]
    assert not kept.exists()
    cli(tmp_path, "run", "--in", "cams", "--out", "det", "--", "false", env=env, check=False)
    (again,) = runs_dir(env).iterdir()
    (again / "run.json").write_text("")  # as a machine that went down could leave it
    unreadable = cli(tmp_path, "run", "--commit", again.name, env=env, check=False)
    assert unreadable.returncode == 2 and "cannot read" in unreadable.stderr
    assert f"s3fsv run --discard {again.name} removes them" in unreadable.stderr
    assert cli(tmp_path, "run", "--list", env=env).stdout == f"{again.name}  unreadable    -> ?\n"
    assert cli(tmp_path, "run", "--discard", again.name, env=env).returncode == 0
    assert not again.exists()
    assert "no unfinished runs" in cli(tmp_path, "run", "--list", env=env).stderr
    missing = cli(tmp_path, "run", "--commit", again.name, env=env, check=False)
    assert missing.returncode == 3 and "no kept run" in missing.stderr


def start_waiting_run(tmp: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    """``s3fsv run`` of a command that reads its input, writes its pid to ``{out}/started``,
    prints ``ready`` and sleeps for a minute."""
    script = (
        "import os, sys, time\n"
        "open(os.path.join(sys.argv[1], 'data', 'a.txt')).read()\n"
        "open(os.path.join(sys.argv[2], 'started'), 'w').write(str(os.getpid()))\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    return subprocess.Popen(
        [*S3FSV, "run", "--in", "cams@main:data", "--out", "det@main:x", "--",
         sys.executable, "-c", script, "{in}", "{out}"],
        cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_ctrl_c_leaves_no_commit_and_no_mount(tmp_path: Path, env: dict[str, str]) -> None:
    before = head(tmp_path, env)
    proc = start_waiting_run(tmp_path, env)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        mounts = [m for m in Path(env["XDG_STATE_HOME"]).rglob("mnt") if in_mount_table(m)]
        assert len(mounts) == 1  # the run's own mount, while the command runs
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130, err
    assert '.py", line' not in err  # the command's own traceback only (from -c), no s3fsv one
    assert "the command exited with 130" in err and "nothing committed" in err
    assert head(tmp_path, env) == before
    no_mount_left(env)
    assert not in_mount_table(mounts[0])
    (kept,) = runs_dir(env).iterdir()
    assert (kept / "out" / "started").exists()


def test_a_killed_run_leaves_no_mount_and_keeps_its_outputs(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """``kill -9`` of ``s3fsv run`` itself (not its command): its mount is taken away, and its
    outputs are a kept run whose record says it was interrupted."""
    before = head(tmp_path, env)
    proc = start_waiting_run(tmp_path, env)
    command = 0
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        (top,) = runs_dir(env).iterdir()
        (mount,) = [m for m in Path(env["XDG_STATE_HOME"]).rglob("mnt") if in_mount_table(m)]
        command = int((top / "out" / "started").read_text())
        busy = cli(tmp_path, "run", "--discard", top.name, env=env, check=False)
        assert busy.returncode == 2 and "is still running (s3fsv process" in busy.stderr
        listed = cli(tmp_path, "run", "--list", env=env).stdout
        assert listed.startswith(f"{top.name}  running (s3fsv process {proc.pid})  -> det@main:x")
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 30
        while in_mount_table(mount) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not in_mount_table(mount)  # taken away although s3fsv could not do it
        # The command outlives its s3fsv, and may still write: the run is not over yet.
        busy = cli(tmp_path, "run", "--commit", top.name, env=env, check=False)
        assert busy.returncode == 2, busy.stderr
        assert f"still running (its command, process {command}, whose s3fsv ended)" in busy.stderr
    finally:
        proc.kill()
        proc.wait()
        if command:
            with contextlib.suppress(ProcessLookupError):
                os.kill(command, signal.SIGKILL)
            deadline = time.monotonic() + 30
            while gone_or_zombie(command) is False and time.monotonic() < deadline:
                time.sleep(0.05)
    pending = (top / "run.json").read_text()
    listed = cli(tmp_path, "run", "--list", env=env).stdout
    assert listed == f"{top.name}  interrupted   -> det@main:x\n"
    done = cli(tmp_path, "run", "--commit", top.name, env=env)
    assert "was interrupted: s3fsv ended before the command did" in done.stderr
    cid = done.stdout.strip()
    assert cid == head(tmp_path, env) != before
    run = json.loads(cli(tmp_path, "show", f"det@{cid}", "--json", env=env).stdout)["provenance"]
    assert run["run"]["exit_code"] == -1 and "interrupted" in run["run"]
    assert "interrupted: s3fsv ended" in cli(tmp_path, "show", f"det@{cid}", env=env).stdout
    assert not top.exists()
    # Killed once more, after its commit but before removing its directory: not twice.
    (top / "out").mkdir(parents=True)
    (top / "run.json").write_text(pending)
    again = cli(tmp_path, "run", "--commit", top.name, env=env)
    assert again.stdout.strip() == cid and "was committed already" in again.stderr
    assert head(tmp_path, env) == cid and not top.exists()


def gone_or_zombie(pid: int) -> bool:
    try:
        return ") Z " in Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True


def test_an_existing_mount_of_the_store_is_used(tmp_path: Path, env: dict[str, str]) -> None:
    url = env["S3FSV_STORE"]
    with mounted(url, tmp_path / "mnt", env) as mp:
        done = cli(
            tmp_path, "run", "--in", "cams@main:data", "--out", "det",
            "--", "sh", "-c", 'echo "$S3FSV_IN"; cat {in}/data/a.txt > {out}/a', env=env,
        )  # fmt: skip
        first = done.stdout.splitlines()[0]
        assert first.startswith(f"{mp}/cams/commit/") and first.count("/") == str(mp).count("/") + 3
        assert f"inputs read through the mount at {mp} (already mounted)" in done.stderr
        assert os.path.ismount(mp)  # still there: not the run's to unmount
        assert len(daemon_pids(Path(env["XDG_STATE_HOME"]))) == 1
        run_commit = done.stdout.strip().splitlines()[-1]
        # A commit through the mount, of something read from the same input, is lineage too.
        source = Path(first) / "data"
        (mp / "det" / "branch" / "main" / "m.txt").write_bytes((source / "a.txt").read_bytes())
        by_mount = cli(tmp_path, "commit", str(mp / "det/branch/main"), "-m", "m", env=env)
    record = json.loads(cli(tmp_path, "show", "det", "--json", env=env).stdout)["provenance"]
    assert "run" not in record and record["inputs"]
    rows = json.loads(cli(tmp_path, "lineage", "--downstream", "cams", "--json", env=env).stdout)
    assert {(r["repo"], r["commit"]) for r in rows} == {
        ("det", run_commit),
        ("det", by_mount.stdout.strip()),
    }
    shown = json.loads(cli(tmp_path, "show", f"det@{run_commit}", "--json", env=env).stdout)
    assert shown["provenance"]["run"]["mode"] == "fuse"


@pytest.mark.parametrize("two", [False, True], ids=["one-commit", "two-commits"])
def test_the_runs_own_mount_is_read_only_and_pinned(
    tmp_path: Path, env: dict[str, str], two: bool
) -> None:
    """One input commit: the run's own mount shows that commit at its root; inputs of two
    commits: the whole store, each at <repo>/commit/<id>. Either way the inputs are
    read-only, and the mount is gone afterwards."""
    old = head(tmp_path, env, "cams")
    (tmp_path / "in" / "a.txt").write_text("beta\n")
    cli(tmp_path, "put", "-q", str(tmp_path / "in"), "cams@main:data", "-m", "again", env=env)
    new = head(tmp_path, env, "cams")
    inputs = ["--in", f"new=cams@{new}:data"] + (["--in", f"old=cams@{old}:data"] if two else [])
    script = 'echo "$S3FSV_IN_NEW"; cat {in.new}/data/a.txt; touch {in.new}/data/a.txt || echo ro'
    done = cli(tmp_path, "run", *inputs, "--out", "det", "--", "sh", "-c", script, env=env)
    where, text, refused = done.stdout.splitlines()[:3]
    mnt = str(runs_dir(env)) + "/"
    assert where.startswith(mnt) and where.endswith(f"/mnt/cams/commit/{new}" if two else "/mnt")
    assert (text, refused) == ("beta", "ro")  # (refused even to root: a read-only mount)
    no_mount_left(env)


def test_without_fuse_inputs_are_downloaded(tmp_path: Path, env: dict[str, str]) -> None:
    """No fusermount3 on PATH: the run says so and downloads its inputs instead."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "cat", "touch"):
        (bin_dir / tool).symlink_to(subprocess.check_output(["which", tool], text=True).strip())
    nofuse = {**env, "PATH": str(bin_dir)}
    done = cli(
        tmp_path, "run", "--in", "cams@main:data", "--out", "det",
        "--", "sh", "-c",
        "cat {in}/data/a.txt > {out}/a; touch {in}/data/a.txt 2>/dev/null || echo ro",
        env=nofuse,
    )  # fmt: skip
    assert "FUSE cannot be used here (fusermount3 not found" in done.stderr
    assert "inputs are downloaded instead" in done.stderr
    assert done.stdout.splitlines()[0] == "ro" or os.geteuid() == 0  # read-only inputs
    cid = done.stdout.strip().splitlines()[-1]
    shown = json.loads(cli(tmp_path, "show", f"det@{cid}", "--json", env=env).stdout)
    assert shown["provenance"]["run"]["mode"] == "local"
    assert cli(tmp_path, "cat", f"det@{cid}:a", env=env).stdout == "alpha\n"
    assert not list(runs_dir(env).iterdir())  # downloads removed


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["--in", "cams@", "--out", "det", "--", "true"], 2, "bad --in 'cams@'"),
        (["--in", "nope@main", "--out", "det", "--", "true"], 3, "no such repo 'nope'"),
        (["--in", "cams@nobranch", "--out", "det", "--", "true"], 3, "no branch, tag or commit"),
        (["--in", "cams:missing", "--out", "det", "--", "true"], 3, "no missing in cams@"),
        (["--in", "cams", "--out", "det", "--", "no-such-command-x"], 127, "command not found"),
        (["--in", "cams", "--out", "det", "--", "echo", "{in.x}"], 2, "{in.x} names no input"),
        (["--in", "cams", "--out", "det@v9", "--", "true"], 2, "outputs go to a branch"),
        (["--in", "cams", "--", "true"], 2, "--out REPO@BRANCH[:PATH] is required"),
        (["--in", "cams", "--out", "det"], 2, "no command given"),
        (["--in", "cams", "--out", "det", "--record-file", "nope", "--", "true"], 2, "nope"),
        (["--commit", "x", "--in", "cams"], 2, "take no command"),
    ],
)
def test_mistakes_are_one_line(
    tmp_path: Path, env: dict[str, str], args: list[str], code: int, says: str
) -> None:
    done = cli(tmp_path, "run", *args, env=env, check=False)
    assert done.returncode == code, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert says in lines[0]
    assert not runs_dir(env).exists() or not list(runs_dir(env).iterdir())
    no_mount_left(env)


def test_reproduce_and_lineage_refuse_what_they_cannot_do(
    tmp_path: Path, env: dict[str, str]
) -> None:
    plain = cli(tmp_path, "reproduce", "cams@main", env=env, check=False)
    assert plain.returncode == 2 and "has no run record" in plain.stderr
    bare = head(tmp_path, env, "cams")
    by_id = cli(tmp_path, "reproduce", bare[:10], env=env, check=False)
    assert "has no run record" in by_id.stderr  # found in its repo by id alone
    none = cli(tmp_path, "lineage", "--downstream", "cams", env=env)
    assert "nothing recorded cams@main as an input" in none.stderr
    ingest = cli(tmp_path, "lineage", "cams", env=env).stdout
    assert ingest.startswith(f"cams@{bare[:12]}") and "no recorded inputs: ingest" in ingest
    for args, says in (
        (["lineage"], "lineage needs REPO"),
        (["lineage", "--downstream", "cams:data"], "without :PATH"),
        (["lineage", "cams:nothing"], "no commit of cams@main wrote nothing"),
    ):
        done = cli(tmp_path, *args, env=env, check=False)
        assert done.returncode in (2, 3) and says in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
