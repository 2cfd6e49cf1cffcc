"""Writable branches through real FUSE mounts: POSIX operations, commits, crashes, two nodes and
real programs (git, tar, sqlite)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shlex
import shutil
import signal
import sqlite3
import stat
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from s3fsv.store.provenance import _command_line, command_of
from s3fsv.store.store import Store
from s3fsv.store.transfer import put
from tests.mounting import (
    S3FSV,
    alive,
    daemon_pids,
    force_unmount,
    mount_table,
    mounted,
    run_cli,
    wait_for_open_writers,
)

CHUNK = 64 * 1024


@pytest.fixture
def repo_url(store_url: str, tmp_path: Path) -> str:
    store = Store.init(store_url)
    repo = store.create_repo("cams", chunk_size=CHUNK)
    src = tmp_path / "seed"
    (src / "in").mkdir(parents=True)
    (src / "in/a.txt").write_bytes(b"alpha\n")
    (src / "in/big.bin").write_bytes(os.urandom(3 * CHUNK + 7))
    (src / "keep.txt").write_bytes(b"keep\n")
    put(repo, "main", src, "", "seed")
    return store_url


@pytest.fixture
def branch(repo_url: str, tmp_path: Path, env: dict[str, str]) -> Iterator[Path]:
    with mounted(repo_url, tmp_path / "mnt", env) as mp:
        yield mp / "cams" / "branch" / "main"


def commit(path: Path, env: dict[str, str], message: str = "test") -> str:
    out = run_cli("commit", str(path), "-m", message, env=env).stdout.strip()
    assert len(out) == 64, out
    return out


def test_posix_operations_and_commit(
    branch: Path, env: dict[str, str], repo_url: str, tmp_path: Path
) -> None:
    big = (branch / "in/big.bin").read_bytes()
    (branch / "new.txt").write_bytes(b"hello")
    assert (branch / "new.txt").read_bytes() == b"hello"  # reads see own writes at once
    with open(branch / "new.txt", "ab") as fh:
        fh.write(b" world")
    with open(branch / "in/big.bin", "r+b") as fh:  # copy-up, random write
        fh.seek(CHUNK + 5)
        fh.write(b"XYZ")
    expected_big = big[: CHUNK + 5] + b"XYZ" + big[CHUNK + 8 :]
    assert (branch / "in/big.bin").read_bytes() == expected_big
    os.truncate(branch / "in/a.txt", 3)
    (branch / "d1/d2").mkdir(parents=True)
    (branch / "d1/d2/f.txt").write_text("deep")
    os.rename(branch / "d1", branch / "d9")
    tmp = branch / "out.json.tmp"
    tmp.write_text('{"x": 1}')
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, branch / "out.json")
    os.chmod(branch / "new.txt", 0o600)
    os.utime(branch / "new.txt", ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    os.symlink("new.txt", branch / "link")
    os.unlink(branch / "keep.txt")
    (branch / "gone").mkdir()
    os.rmdir(branch / "gone")
    status = json.loads(run_cli("status", str(branch), "--json", env=env).stdout)
    assert "new.txt" in status["added"] and "keep.txt" in status["deleted"]
    assert "in/big.bin" in status["modified"]
    cid = commit(branch / "in", env, "many ops")
    assert json.loads(run_cli("status", str(branch), "--json", env=env).stdout)["added"] == []
    repo = Store.open(repo_url).repo("cams")
    got = {p: e for p, e in repo.walk(cid)}
    assert "keep.txt" not in got and "d1" not in got and "gone" not in got
    assert b"".join(repo.read_file(got["new.txt"])) == b"hello world"
    assert got["new.txt"].mode == 0o600 and got["new.txt"].mtime_ns == 1_600_000_000_000_000_000
    assert b"".join(repo.read_file(got["in/big.bin"])) == expected_big
    assert b"".join(repo.read_file(got["in/a.txt"])) == b"alp"
    assert b"".join(repo.read_file(got["d9/d2/f.txt"])) == b"deep"
    assert b"".join(repo.read_file(got["out.json"])) == b'{"x": 1}'
    assert got["link"].kind == "link" and got["link"].target == "new.txt"
    # The branch directory shows the new head, and the mount's commit view has it too.
    assert (branch / "new.txt").read_bytes() == b"hello world"
    mp = branch.parent.parent.parent
    assert (mp / "cams/commit" / cid / "d9/d2/f.txt").read_text() == "deep"
    log = json.loads(run_cli("--store", repo_url, "log", "cams", "--json", env=env).stdout)
    assert log[0]["id"] == cid and log[0]["provenance"]["user"]


def test_provenance_names_commands_that_only_move_or_remove(
    branch: Path, env: dict[str, str], repo_url: str
) -> None:
    subprocess.run(["mkdir", str(branch / "made")], check=True)
    subprocess.run(["mv", str(branch / "keep.txt"), str(branch / "made" / "kept.txt")], check=True)
    subprocess.run(["rm", str(branch / "in" / "a.txt")], check=True)
    spaced = ["touch", "-d", "2020-01-01 00:00", str(branch / "a b")]
    subprocess.run(spaced, check=True)
    cid = commit(branch, env, "moves only")
    commands = Store.open(repo_url).repo("cams").commit_object(cid).provenance["commands"]
    assert any(_run(c).startswith("mkdir ") for c in commands), commands
    assert any(_run(c).startswith("mv ") for c in commands), commands
    assert any(_run(c).startswith("rm ") for c in commands), commands
    # Each argument whole (quoted as a shell needs it), after the directory it ran in.
    assert f"cd {shlex.quote(os.getcwd())} && {shlex.join(spaced)}" in commands


def _run(command: str) -> str:
    """A recorded command line without its leading ``cd DIR && ``."""
    return command.split(" && ", 1)[1]


def test_long_command_lines_are_cut_between_arguments() -> None:
    line = _command_line(["detect.py", "--out", "a b", *[f"img{n:04}.jpg" for n in range(100)]])
    assert line.startswith("detect.py --out 'a b' img0000.jpg") and line.endswith(" ...")
    assert len(line) <= 504 and shlex.split(line)[-2].startswith("img")
    program = "/opt/" + "x" * 600  # the program is kept, however long
    assert _command_line([program, "arg"]) == f"{program} ..."


def test_a_command_whose_directory_cannot_be_read_is_recorded_without_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    full = command_of(os.getpid())
    assert full.startswith(f"cd {shlex.quote(os.getcwd())} && ")

    def refused(path: str) -> str:
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(os, "readlink", refused)  # as for another user's process
    assert command_of(os.getpid()) == _run(full)


def test_provenance_is_per_commit_and_dropped_by_discard(
    branch: Path, env: dict[str, str], repo_url: str
) -> None:
    repo = Store.open(repo_url).repo("cams")
    seed = repo.resolve("main")
    pinned = branch.parent.parent / "commit" / seed / "in" / "a.txt"

    def inputs(cid: str) -> list[str]:
        return [i["commit"] for i in repo.commit_object(cid).provenance["inputs"]]

    subprocess.run(["cp", str(pinned), str(branch / "one")], check=True)
    first = commit(branch, env, "one")
    assert inputs(first) == [seed]
    # The same input, read again for the next commit, is an input of that one too.
    subprocess.run(["cp", str(pinned), str(branch / "two")], check=True)
    second = commit(branch, env, "two")
    assert inputs(second) == [seed]
    # A branch first written after another branch committed still lists what was read.
    repo.create_branch("other")
    (branch.parent / "other" / "later.txt").write_text("later")
    other = run_cli("commit", str(branch.parent / "other"), "-m", "o", env=env).stdout.strip()
    assert inputs(other) == [seed]
    # A discarded run leaves no inputs or commands behind for the next commit.
    subprocess.run(["cp", str(pinned), str(branch / "dropped")], check=True)
    assert "discarded 1" in run_cli("discard", str(branch), env=env).stdout
    subprocess.run(["touch", str(branch / "three")], check=True)
    third = commit(branch, env, "three")
    prov = repo.commit_object(third).provenance
    assert inputs(third) == [] and not any(_run(c).startswith("cp ") for c in prov["commands"])


def test_unsupported_operations_fail_as_documented(
    branch: Path, repo_url: str, tmp_path: Path, env: dict[str, str]
) -> None:
    (branch / "f").write_text("f")
    with pytest.raises(OSError) as info:
        os.link(branch / "f", branch / "hard")
    assert info.value.errno == errno.EPERM
    with pytest.raises(OSError) as info:
        os.mkfifo(branch / "fifo")
    assert info.value.errno == errno.EPERM
    Store.open(repo_url).repo("cams").create_branch("other")
    other = branch.parent / "other"
    with pytest.raises(OSError) as info:
        os.rename(branch / "f", other / "f")
    assert info.value.errno == errno.EXDEV
    shutil.move(branch / "f", other / "f")  # mv falls back to copy + delete, as across disks
    assert (other / "f").read_text() == "f" and not (branch / "f").exists()
    with pytest.raises(OSError) as info:
        os.rmdir(branch / "in")
    assert info.value.errno == errno.ENOTEMPTY
    cid = Store.open(repo_url).repo("cams").resolve("main")
    with pytest.raises(OSError) as info:
        (branch.parent.parent / "commit" / cid / "x").write_text("x")
    assert info.value.errno == errno.EROFS
    pinned = branch.parent.parent / "commit" / cid / "keep.txt"
    with pytest.raises(OSError) as info:  # snapshot -> branch: mv copies
        os.rename(pinned, branch / "kept-copy.txt")
    assert info.value.errno == errno.EXDEV
    with pytest.raises(OSError) as info:  # snapshot -> snapshot: nothing writable
        os.rename(pinned, pinned.parent / "renamed.txt")
    assert info.value.errno == errno.EROFS
    # Extended attributes are "not supported", so cp -a and mv copy in without complaint.
    (branch / "x").write_text("x")
    with pytest.raises(OSError) as info:
        os.setxattr(branch / "x", "user.tag", b"1")
    assert info.value.errno == errno.ENOTSUP
    src = tmp_path / "tree"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f").write_text("f")
    os.chmod(src / "sub" / "f", 0o640)
    subprocess.run(["cp", "-a", str(src), str(branch / "copied")], check=True)
    assert (branch / "copied/sub/f").read_text() == "f"
    # A branch root cannot move: EPERM before anything is copied (EXDEV would make mv copy
    # the whole branch and stage its deletion).
    before = json.loads(run_cli("status", str(branch), "--json", env=env).stdout)
    with pytest.raises(OSError) as info:
        os.rename(other, branch / "moved")
    assert info.value.errno == errno.EPERM
    moved = subprocess.run(["mv", str(other), str(branch / "moved")], capture_output=True)
    assert moved.returncode != 0 and not (branch / "moved").exists()
    assert json.loads(run_cli("status", str(branch), "--json", env=env).stdout) == before


def test_xattrs_tell_staged_from_committed(branch: Path, env: dict[str, str]) -> None:
    head = os.getxattr(branch / "keep.txt", "user.s3fsv.commit").decode()
    (branch / "newdir").mkdir()
    (branch / "in" / "a.txt").write_text("changed")
    for staged in ("newdir", "in", "in/a.txt", ""):  # "" is the branch root: changes below
        names = set(os.listxattr(branch / staged))
        assert names == {"user.s3fsv.repo", "user.s3fsv.staged"}, (staged, names)
    assert os.getxattr(branch / "keep.txt", "user.s3fsv.commit").decode() == head
    cid = commit(branch, env)
    assert os.getxattr(branch / "in", "user.s3fsv.commit").decode() == cid
    assert "user.s3fsv.staged" not in os.listxattr(branch / "newdir")


def test_touch_sets_now_and_touch_a_leaves_mtime(branch: Path, env: dict[str, str]) -> None:
    """touch passes "now" and "unchanged" as special markers, never as times."""
    target = branch / "keep.txt"
    os.utime(target, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    subprocess.run(["touch", "-a", str(target)], check=True)
    assert os.stat(target).st_mtime_ns == 1_600_000_000_000_000_000
    subprocess.run(["touch", str(target), str(branch / "brand-new")], check=True)
    for path in (target, branch / "brand-new"):
        assert os.stat(path).st_mtime > 1_700_000_000  # now, not 1970
    os.utime(target)
    assert os.stat(target).st_mtime > 1_700_000_000


def test_open_file_survives_commit(branch: Path, env: dict[str, str], repo_url: str) -> None:
    fh = open(branch / "log.txt", "w")  # noqa: SIM115
    try:
        fh.write("first\n")
        fh.flush()
        first = commit(branch, env, "first half")
        fh.write("second\n")
        fh.flush()
    finally:
        fh.close()
    assert (branch / "log.txt").read_text() == "first\nsecond\n"
    second = commit(branch, env, "second half")
    repo = Store.open(repo_url).repo("cams")
    assert b"".join(repo.read_file(repo.stat(first, "log.txt"))) == b"first\n"
    assert b"".join(repo.read_file(repo.stat(second, "log.txt"))) == b"first\nsecond\n"
    # The process still writing after the first commit is named by the second one too.
    me = command_of(os.getpid())
    assert me.startswith(f"cd {shlex.quote(os.getcwd())} && ")
    for cid in (first, second):
        assert me in repo.commit_object(cid).provenance.get("commands", []), cid


def test_write_only_descriptors_stay_coherent_with_readers(branch: Path) -> None:
    """Write-only opens bypass the page cache; a reader's cached pages must not go stale."""
    path = branch / "shared.bin"
    path.write_bytes(b"a" * 100_000)
    with open(path, "rb") as reader:
        assert reader.read() == b"a" * 100_000  # now in the page cache
        fd = os.open(path, os.O_WRONLY)
        try:
            assert os.pwrite(fd, b"b" * 1000, 5000) == 1000
            os.lseek(fd, 0, os.SEEK_END)
            assert os.write(fd, b"tail") == 4
        finally:
            os.close(fd)
        reader.seek(0)
        assert reader.read() == b"a" * 5000 + b"b" * 1000 + b"a" * 94_000 + b"tail"
    with open(path, "ab") as appender:  # write-only with O_APPEND
        appender.write(b"!")
    assert path.stat().st_size == 100_005
    assert path.read_bytes().endswith(b"tail!")


def test_kill_9_loses_nothing_closed_and_flags_what_was_open(
    repo_url: str, tmp_path: Path, env: dict[str, str]
) -> None:
    mp = tmp_path / "mnt"
    state = Path(env["XDG_STATE_HOME"])
    with mounted(repo_url, mp, env):
        b = mp / "cams/branch/main"
        writer = open(b / "half.bin", "wb")  # noqa: SIM115 (still open when the daemon dies)
        writer.write(b"h" * 1000)
        writer.flush()
        (b / "staged.txt").write_text("survives")
        (b / "dir").mkdir()
        (b / "dir/x.bin").write_bytes(b"x" * 100_000)
        os.unlink(b / "keep.txt")
        with open(b / "in/a.txt", "a") as fh:
            fh.write("appended\n")
        # Staged data is private: every directory of the state tree 0700, every file 0600.
        for where, _, files in os.walk(state / "s3fsv"):
            assert stat.S_IMODE(os.stat(where).st_mode) == 0o700, where
            for name in files:
                mode = stat.S_IMODE(os.lstat(os.path.join(where, name)).st_mode)
                assert mode & 0o077 == 0, (where, name, oct(mode))
        wait_for_open_writers(state, 1)  # only half.bin is open when the daemon dies
        pid = daemon_pids(state)[0]
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        with contextlib.suppress(OSError):
            writer.close()
        force_unmount(mp, state)
    said: list[str] = []
    with mounted(repo_url, mp, env, said=said):
        b = mp / "cams/branch/main"
        assert "1 file(s) were open for writing when that mount stopped" in said[0]
        assert (b / "staged.txt").read_text() == "survives"
        assert not (b / "keep.txt").exists()
        status = json.loads(run_cli("status", str(b), "--json", env=env).stdout)
        assert {"staged.txt", "dir/x.bin", "half.bin"} <= set(status["added"])
        assert status["interrupted"] == ["half.bin"]
        assert "half.bin was open for writing" in run_cli("status", str(b), env=env).stderr
        refused = run_cli("commit", str(b), "-m", "after crash", env=env, check=False)
        assert refused.returncode == 13 and "half.bin" in refused.stderr, refused.stderr
        assert (b / "half.bin").read_bytes() == b"h" * 1000  # nothing dropped
        os.rename(b / "half.bin", b / "moved.bin")  # the mark goes with the content
        status = json.loads(run_cli("status", str(b), "--json", env=env).stdout)
        assert status["interrupted"] == ["moved.bin"]
        subprocess.run(["touch", str(b / "moved.bin")], check=True)  # checked: keep it
        cid = commit(b, env, "after crash")
    repo = Store.open(repo_url).repo("cams")
    files = {p: b"".join(repo.read_file(e)) for p, e in repo.walk(cid) if e.kind == "file"}
    assert files["staged.txt"] == b"survives" and files["moved.bin"] == b"h" * 1000
    assert files["dir/x.bin"] == b"x" * 100_000
    assert files["in/a.txt"] == b"alpha\nappended\n"
    assert "keep.txt" not in files


def test_two_nodes_commit_concurrently(repo_url: str, tmp_path: Path, env: dict[str, str]) -> None:
    with (
        mounted(repo_url, tmp_path / "n1", env) as n1,
        mounted(repo_url, tmp_path / "n2", env) as n2,
    ):
        for i in range(20):
            (n1 / f"cams/branch/main/in/n1-{i}.txt").write_text(f"one {i}")
            (n2 / f"cams/branch/main/in/n2-{i}.txt").write_text(f"two {i}")
        procs = [
            subprocess.Popen(
                [*S3FSV, "commit", str(n / "cams/branch/main"), "-m", n.name],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for n in (n1, n2)
        ]
        outs = [p.communicate(timeout=120) for p in procs]
        assert all(p.returncode == 0 for p in procs), outs
    repo = Store.open(repo_url).repo("cams")
    head = repo.resolve("main")
    names = {p for p, _ in repo.walk(head)}
    assert all(f"in/n1-{i}.txt" in names and f"in/n2-{i}.txt" in names for i in range(20))
    messages = [c.message for _, c in repo.log("main")]
    assert sorted(messages[:2]) == ["n1", "n2"]


def test_editing_what_another_writer_committed_is_no_conflict(
    repo_url: str, tmp_path: Path, env: dict[str, str]
) -> None:
    """The staging base follows the branch as the view refreshes: a file another writer
    committed, seen through the mount and then edited, is not a conflict (nor, after a remount
    with nothing staged, is the next one)."""
    repo = Store.open(repo_url).repo("cams")
    theirs = tmp_path / "theirs"
    theirs.mkdir()

    def foreign_commit(name: str, data: bytes) -> None:
        (theirs / name).write_bytes(data)
        put(repo, "main", theirs / name, name, f"foreign {name}")

    def seen(path: Path) -> bool:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if path.exists():
                return True
            time.sleep(0.1)
        return False

    mp = tmp_path / "mnt"
    for round_, name in enumerate(("r.txt", "s.txt")):
        with mounted(repo_url, mp, env, "--ref-ttl", "0.2"):
            b = mp / "cams" / "branch" / "main"
            assert "keep.txt" in os.listdir(b)  # the branch is in use before the foreign commit
            foreign_commit(name, b"theirs\n")
            assert seen(b / name)
            with open(b / name, "ab") as fh:
                fh.write(b"mine\n")
            cid = commit(b, env, f"edit {round_}")
        assert b"".join(repo.read_file(repo.stat(cid, name))) == b"theirs\nmine\n"


def test_a_stale_read_written_back_is_a_conflict(
    repo_url: str, tmp_path: Path, env: dict[str, str]
) -> None:
    """Read-modify-write across a refresh: a program read keep.txt, another writer changed it,
    and the program writes its edited old copy back. That must not silently win. A failed
    operation meanwhile (mkdir of an existing directory) must not stop the base following."""
    repo = Store.open(repo_url).repo("cams")
    theirs = tmp_path / "theirs"
    theirs.write_bytes(b"theirs\n")
    with mounted(repo_url, tmp_path / "mnt", env, "--ref-ttl", "0.2") as mp:
        b = mp / "cams" / "branch" / "main"
        old = (b / "keep.txt").read_bytes()  # read through the mount: the program holds it
        put(repo, "main", theirs, "keep.txt", "foreign keep")
        put(repo, "main", theirs, "fresh.txt", "foreign fresh")
        deadline = time.monotonic() + 10
        while not (b / "fresh.txt").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        with pytest.raises(FileExistsError):
            (b / "in").mkdir()
        (b / "keep.txt").write_bytes(old + b"edited\n")
        failed = run_cli("commit", str(b), "-m", "stale", env=env, check=False)
        assert failed.returncode == 6 and "keep.txt" in failed.stderr, failed.stderr
        run_cli("discard", str(b), env=env)
        with open(b / "fresh.txt", "ab") as fh:  # shown before it was touched: no conflict
            fh.write(b"mine\n")
        cid = commit(b, env, "fresh edit")
    assert b"".join(repo.read_file(repo.stat(cid, "fresh.txt"))) == b"theirs\nmine\n"
    assert b"".join(repo.read_file(repo.stat(cid, "keep.txt"))) == b"theirs\n"


def test_a_real_conflict_keeps_everything_staged_until_overwrite(
    repo_url: str, tmp_path: Path, env: dict[str, str]
) -> None:
    repo = Store.open(repo_url).repo("cams")
    with mounted(repo_url, tmp_path / "mnt", env, "--ref-ttl", "0.2") as mp:
        b = mp / "cams" / "branch" / "main"
        (b / "keep.txt").write_bytes(b"mine\n")  # staged against the seed's keep.txt
        (b / "other.txt").write_bytes(b"other\n")
        theirs = tmp_path / "theirs.txt"
        theirs.write_bytes(b"theirs\n")
        put(repo, "main", theirs, "keep.txt", "foreign")
        failed = run_cli("commit", str(b), "-m", "mine", env=env, check=False)
        assert failed.returncode == 6, failed.stderr
        assert "keep.txt" in failed.stderr and "other.txt" not in failed.stderr
        assert "--overwrite" in failed.stderr
        assert (b / "keep.txt").read_bytes() == b"mine\n"  # nothing lost
        cid = run_cli("commit", str(b), "-m", "mine", "--overwrite", env=env).stdout.strip()
    files = {p: b"".join(repo.read_file(e)) for p, e in repo.walk(cid) if e.kind == "file"}
    assert files["keep.txt"] == b"mine\n" and files["other.txt"] == b"other\n"
    assert [c.message for _, c in repo.log("main")][:2] == ["mine", "foreign"]


def test_sigterm_stops_a_foreground_mount_cleanly(
    repo_url: str, tmp_path: Path, env: dict[str, str]
) -> None:
    """What a service manager does: SIGTERM unmounts, runs the unmount commit, exits 0."""
    mp = tmp_path / "mnt"
    mp.mkdir()
    cmd = [*S3FSV, "mount", "--foreground", "--commit-on", "unmount", f"{repo_url}/cams", str(mp)]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not os.path.ismount(mp) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        (mp / "branch" / "main" / "late.txt").write_text("late\n")
        wait_for_open_writers(Path(env["XDG_STATE_HOME"]))  # late.txt is closed for it too
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert "error" not in err
        assert f"s3fsv: mounted {repo_url}/cams at {mp}" in err  # the ready line
        # A service manager's journal (not a terminal) gets INFO lines too, never credentials.
        assert "s3fsv: INFO: committed cams@main: " in err and "credentials" not in err
        logs = Path(env["XDG_STATE_HOME"], "s3fsv", "logs").glob("*.log")
        assert any("INFO s3fsv.mount.daemon: mounting" in p.read_text() for p in logs)
        assert not os.path.ismount(mp)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        force_unmount(mp, Path(env["XDG_STATE_HOME"]))
    repo = Store.open(repo_url).repo("cams")
    head = repo.resolve("main")
    assert repo.commit_object(head).message == "s3fsv: commit on unmount"
    assert b"".join(repo.read_file(repo.stat(head, "late.txt"))) == b"late\n"


def test_real_programs(branch: Path, env: dict[str, str], tmp_path: Path) -> None:
    # tar x of a tree, then diff -r against the source.
    src = tmp_path / "tarsrc"
    (src / "a/b").mkdir(parents=True)
    (src / "a/b/file.txt").write_text("tarred\n")
    (src / "a/bin.dat").write_bytes(os.urandom(200_000))
    os.chmod(src / "a/bin.dat", 0o640)
    os.symlink("b/file.txt", src / "a/link")
    with tarfile.open(tmp_path / "t.tar", "w") as tar:
        tar.add(src / "a", arcname="a")
    subprocess.run(["tar", "xf", str(tmp_path / "t.tar"), "-C", str(branch)], check=True)
    subprocess.run(["diff", "-r", str(src / "a"), str(branch / "a")], check=True)
    assert stat.S_IMODE(os.stat(branch / "a/bin.dat").st_mode) == 0o640
    # SQLite creates and updates a database file.
    db = sqlite3.connect(branch / "data.db")
    db.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")
    db.executemany("INSERT INTO t VALUES (?, ?)", [(i, f"v{i}") for i in range(500)])
    db.commit()
    db.execute("UPDATE t SET v = 'changed' WHERE k < 10")
    db.commit()
    db.close()
    check = sqlite3.connect(branch / "data.db")
    assert check.execute("SELECT count(*) FROM t WHERE v = 'changed'").fetchone() == (10,)
    assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    check.close()
    # git init, add and commit inside the branch directory.
    git_env = {**env, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
               "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}  # fmt: skip
    repo = branch / "gitrepo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True, env=git_env)
    (repo / "README").write_text("hello git\n")
    subprocess.run(["git", "-C", str(repo), "add", "README"], check=True, env=git_env)
    subprocess.run(["git", "-C", str(repo), "commit", "-qm", "first"], check=True, env=git_env)
    log = subprocess.run(
        ["git", "-C", str(repo), "log", "--oneline"], capture_output=True, text=True, check=True
    )
    assert "first" in log.stdout
    fsck = subprocess.run(["git", "-C", str(repo), "fsck"], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stderr
    commit(branch, env, "programs")
    subprocess.run(["diff", "-r", str(src / "a"), str(branch / "a")], check=True)


def test_repo_at_branch_mount_follows_the_head(
    repo_url: str, tmp_path: Path, env: dict[str, str]
) -> None:
    """A REPO@BRANCH mount names the head it shows (xattr, provenance), not the one it was
    mounted at; without --rw it is read-only for the kernel too."""
    repo = Store.open(repo_url).repo("cams")
    with mounted(f"{repo_url}/cams@main", tmp_path / "ro", env, "--ref-ttl", "0.2") as mp:
        assert "ro" in mount_table()[str(mp)]
    with mounted(f"{repo_url}/cams@main", tmp_path / "rw", env, "--rw", "--ref-ttl", "0.2") as mp:
        first = repo.resolve("main")
        assert os.getxattr(mp / "keep.txt", "user.s3fsv.commit").decode() == first
        src = tmp_path / "elsewhere.txt"
        src.write_text("moved on\n")
        moved = put(repo, "main", src, "elsewhere.txt", "another writer")[0]
        deadline = time.monotonic() + 10  # until the view refreshes (--ref-ttl)
        while not (mp / "elsewhere.txt").exists():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert os.getxattr(mp / "keep.txt", "user.s3fsv.commit").decode() == moved
        (mp / "out.txt").write_text("result\n")
        (mp / "keep.txt").read_text()
        cid = commit(mp, env, "from the branch mount")
    inputs = json.dumps(repo.commit_object(cid).provenance)
    assert moved in inputs and first not in inputs
