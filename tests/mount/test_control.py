"""The control socket (``s3fsv/control.py``), the daemon's commit policies, and the ``commit``,
``status`` and ``discard`` commands' error paths. A fake filesystem stands in for
``vfs.Filesystem``; one test goes through a real FUSE mount."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import socket
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from s3fsv.cli import mount as cli_mount
from s3fsv.errors import (
    Conflict,
    CorruptObject,
    MountError,
    NotFound,
    S3fsvError,
    StoreUnavailable,
    UsageError,
)
from s3fsv.mount import daemon, mounttable, options, runtime_files
from s3fsv.mount.control import ControlServer, request
from s3fsv.mount.exit_report import ExitReport
from s3fsv.mount.mounttable import FSTYPE, Mounted
from s3fsv.store.store import Store
from tests.mounting import mounted, run_cli


class FakeFs:
    """The control-facing part of ``vfs.Filesystem``."""

    immutable = False
    read_path_mode = "fuse"

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.errors: dict[str, BaseException] = {}
        self.delay = 0.0
        self.barrier: threading.Barrier | None = None

    def _maybe_fail(self, path: str) -> None:
        if self.barrier is not None:
            self.barrier.wait(timeout=10)
        if self.delay:
            time.sleep(self.delay)
        if path in self.errors:
            raise self.errors[path]

    def commit(
        self, path: str, message: str, author: str | None = None, *, overwrite: bool = False
    ) -> str | None:
        self.calls.append(("commit", path, message, author))
        self._maybe_fail(path)
        if path.endswith("/clean"):
            return None
        return hashlib.sha256(f"{path}\0{message}".encode()).hexdigest()

    def status(self, path: str) -> dict[str, Any]:
        self.calls.append(("status", path))
        self._maybe_fail(path)
        return {
            "repo": "cams",
            "branch": "main",
            "base": "ab" * 32,
            "added": ["new.txt"],
            "modified": ["sub/x"],
            "deleted": [],
        }

    def discard(self, path: str) -> int:
        self.calls.append(("discard", path))
        self._maybe_fail(path)
        return 3


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path / "state"


@pytest.fixture
def served(tmp_path: Path, state: Path) -> Iterator[tuple[Path, FakeFs, ControlServer]]:
    """(mountpoint, fake fs, server): a control server registered as the mountpoint's daemon."""
    mp = tmp_path / "mnt"
    mp.mkdir()
    fs = FakeFs()
    server = ControlServer(fs, runtime_files.socket_file(mp))
    server.start()
    info = {"pid": os.getpid(), "socket": str(server.socket_path)}
    runtime_files.pid_file(mp).write_text(json.dumps(info))
    yield mp, fs, server
    server.close()


def raw_exchange(path: Path, *lines: bytes) -> list[dict[str, Any]]:
    """Send raw request lines on one connection; return the decoded answers."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(b"".join(lines))
        sock.shutdown(socket.SHUT_WR)
        with sock.makefile("rb") as reader:
            return [json.loads(line) for line in reader]


# -- requests and answers --------------------------------------------------------------------


def test_ping(served: tuple[Path, FakeFs, ControlServer]) -> None:
    mp, fs, _ = served
    assert request(mp, {"op": "ping"}) == {"pid": os.getpid()}
    assert fs.calls == []


def test_commit_status_discard(served: tuple[Path, FakeFs, ControlServer]) -> None:
    mp, fs, _ = served
    cid = request(
        mp, {"op": "commit", "path": "/cams/branch/main", "message": "day 1", "author": "ann"}
    )
    assert cid == hashlib.sha256(b"/cams/branch/main\0day 1").hexdigest()
    assert request(mp, {"op": "commit", "path": "/b/clean", "message": "m"}) is None
    status = request(mp, {"op": "status", "path": "/cams/branch/main/sub"})
    assert status["added"] == ["new.txt"] and status["read_path"] == "fuse"
    assert request(mp, {"op": "discard", "path": "/cams/branch/main"}) == 3
    assert fs.calls == [
        ("commit", "/cams/branch/main", "day 1", "ann"),
        ("commit", "/b/clean", "m", None),
        ("status", "/cams/branch/main/sub"),
        ("discard", "/cams/branch/main"),
    ]


@pytest.mark.parametrize(
    "raised",
    [
        Conflict(["b/2.json", "a/1.json"], "main"),
        UsageError("not inside a writable branch: /cams/commit/abcd"),
        NotFound("no such repo: x"),
        StoreUnavailable("cannot reach s3://b: timed out"),
        CorruptObject("ab" * 32, "hash mismatch"),
        MountError("custom exit code 12"),
        S3fsvError("plain error"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_error_round_trip(served: tuple[Path, FakeFs, ControlServer], raised: S3fsvError) -> None:
    mp, fs, _ = served
    fs.errors["/cams/branch/main"] = raised
    with pytest.raises(S3fsvError) as info:
        request(mp, {"op": "commit", "path": "/cams/branch/main", "message": "m"})
    err = info.value
    assert str(err) == str(raised)
    assert err.exit_code == raised.exit_code
    expected_cls = type(raised) if type(raised) is not MountError else S3fsvError
    assert type(err) is expected_cls
    if isinstance(raised, Conflict):
        assert isinstance(err, Conflict) and err.paths == ["a/1.json", "b/2.json"]
    assert request(mp, {"op": "ping"})["pid"] == os.getpid()  # the server lives on


def test_unexpected_exception_is_an_answer(
    served: tuple[Path, FakeFs, ControlServer], caplog: pytest.LogCaptureFixture
) -> None:
    mp, fs, _ = served
    fs.errors["/x"] = RuntimeError("bug\nwith two lines")
    with (
        caplog.at_level(logging.ERROR, logger="s3fsv.mount.control"),
        pytest.raises(S3fsvError) as info,
    ):
        request(mp, {"op": "status", "path": "/x"})
    assert info.value.exit_code == 1
    assert "internal error" in str(info.value) and "\n" not in str(info.value)
    assert any("failed" in r.message for r in caplog.records)  # logged, with its traceback
    assert request(mp, {"op": "ping"})["pid"] == os.getpid()


def test_bad_requests_get_usage_errors(served: tuple[Path, FakeFs, ControlServer]) -> None:
    _, fs, server = served
    answers = raw_exchange(
        server.socket_path,
        b"not json\n",
        b"[1, 2]\n",
        b"\n",  # blank lines are skipped
        b'{"op": "format-disk"}\n',
        b'{"op": "commit", "path": "/cams/branch/main"}\n',
        b'{"op": "commit", "path": "/p", "message": "  "}\n',
        b'{"op": "commit", "path": "/p", "message": "m", "author": 5}\n',
        b'{"op": "status", "path": "relative"}\n',
        b'{"op": "ping"}\n',
    )
    assert len(answers) == 8  # one answer per request line, all on one connection
    for answer in answers[:-1]:
        assert answer["ok"] is False and answer["exit_code"] == 2, answer
        assert "\n" not in answer["error"]
    assert answers[-1] == {"ok": True, "result": {"pid": os.getpid()}}
    assert fs.calls == []


def test_oversized_request_is_refused(served: tuple[Path, FakeFs, ControlServer]) -> None:
    _, _, server = served
    line = json.dumps({"op": "ping", "pad": "x" * (2 << 20)}).encode() + b"\n"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(server.socket_path))
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(line)  # the server may close before reading everything
        with sock.makefile("rb") as reader:
            answer = json.loads(reader.readline())
    assert answer["ok"] is False and "too long" in answer["error"]


# -- the socket file -------------------------------------------------------------------------


def test_socket_file_is_private(tmp_path: Path) -> None:
    sockdir = tmp_path / "sockets"
    sockdir.mkdir(mode=0o755)
    sockdir.chmod(0o755)
    with ControlServer(FakeFs(), sockdir / "c.sock") as server:
        mode = os.stat(server.socket_path).st_mode
        assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
        assert stat.S_IMODE(os.stat(sockdir).st_mode) == 0o700
    assert not os.path.lexists(sockdir / "c.sock")  # close() removes it


def test_stale_socket_is_replaced(tmp_path: Path, state: Path) -> None:
    path = tmp_path / "c.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()  # leaves a socket file nobody listens on, like a killed daemon
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    with ControlServer(FakeFs(), path) as server:
        assert server.answer(b'{"op": "ping"}')["ok"] is True
        got = raw_exchange(path, b'{"op": "ping"}\n')
        assert got == [{"ok": True, "result": {"pid": os.getpid()}}]
    path.write_text("leftover")  # a non-socket leftover is replaced too
    with ControlServer(FakeFs(), path):
        assert stat.S_ISSOCK(os.lstat(path).st_mode)


def test_live_socket_is_not_stolen(tmp_path: Path) -> None:
    path = tmp_path / "c.sock"
    with ControlServer(FakeFs(), path):
        second = ControlServer(FakeFs(), path)
        with pytest.raises(S3fsvError, match="another s3fsv daemon answers"):
            second.start()
        assert raw_exchange(path, b'{"op": "ping"}\n')[0]["ok"] is True


def test_long_socket_path(tmp_path: Path, state: Path) -> None:
    deep = tmp_path.joinpath(*["d" * 40] * 4)
    path = deep / "control.sock"
    assert len(str(path)) > 108  # longer than sun_path
    mp = tmp_path / "mnt"
    with ControlServer(FakeFs(), path) as server:
        runtime_files.pid_file(mp).write_text(
            json.dumps({"pid": 1, "socket": str(server.socket_path)})
        )
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert request(mp, {"op": "discard", "path": "/b/main"}) == 3
    assert not path.exists()


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to connect as another user")
def test_other_users_are_refused() -> None:
    """Even if the socket file were reachable, SO_PEERCRED turns a stranger away. (Root is
    always allowed, so the daemon here plays a user whose uid is not the stranger's.)"""
    fs = FakeFs()
    with tempfile.TemporaryDirectory(prefix="s3fsv-test-") as where:  # pytest's is 0700
        path = Path(where) / "c.sock"
        with ControlServer(fs, path):
            os.chmod(where, 0o711)
            os.chmod(path, 0o666)
            answer = _exchange_as(65534, path, b'{"op": "discard", "path": "/b/main"}\n')
    assert answer["ok"] is False and answer["exit_code"] == 9
    assert fs.calls == []


def _exchange_as(uid: int, path: Path, line: bytes) -> dict[str, Any]:
    """Send one request line from a forked child running as ``uid``; return the answer."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child touches nothing but sockets and the pipe
        try:
            os.close(rfd)
            os.setgid(uid)
            os.setuid(uid)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(10)
                sock.connect(str(path))
                with contextlib.suppress(BrokenPipeError):  # refused: answered and closed
                    sock.sendall(line)
                with sock.makefile("rb") as reader:
                    os.write(wfd, reader.readline())
        except BaseException as err:
            os.write(wfd, repr(err).encode())
        finally:
            os._exit(0)
    os.close(wfd)
    with os.fdopen(rfd, "rb") as fh:
        data = fh.read()
    os.waitpid(pid, 0)
    try:
        return json.loads(data)
    except ValueError:
        raise AssertionError(f"the child failed: {data!r}") from None


# -- the client ------------------------------------------------------------------------------


def test_no_daemon(tmp_path: Path, state: Path) -> None:
    mp = tmp_path / "mnt"
    with pytest.raises(MountError, match=f"no s3fsv daemon answers for {mp}"):
        request(mp, {"op": "ping"})  # no pid file
    runtime_files.pid_file(mp).write_text(
        json.dumps({"pid": 1, "socket": str(tmp_path / "gone.sock")})
    )
    with pytest.raises(MountError, match=f"no s3fsv daemon answers for {mp}"):
        request(mp, {"op": "ping"})  # pid file, but nobody listens


def test_closed_server_does_not_answer(served: tuple[Path, FakeFs, ControlServer]) -> None:
    mp, _, server = served
    server.close()
    assert not server.socket_path.exists()
    with pytest.raises(MountError, match="no s3fsv daemon answers"):
        request(mp, {"op": "ping"})


def test_request_timeout(served: tuple[Path, FakeFs, ControlServer]) -> None:
    mp, fs, _ = served
    fs.delay = 1.5
    start = time.monotonic()
    with pytest.raises(S3fsvError, match="did not answer within 0.3s"):
        request(mp, {"op": "status", "path": "/b"}, timeout=0.3)
    assert time.monotonic() - start < 1.4


def test_concurrent_requests(served: tuple[Path, FakeFs, ControlServer]) -> None:
    """Each connection has its own thread: 6 requests that wait for each other all finish."""
    mp, fs, _ = served
    fs.barrier = threading.Barrier(6)
    results: dict[int, Any] = {}
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            payload = {"op": "commit", "path": f"/r/branch/b{n}", "message": f"m{n}"}
            results[n] = request(mp, payload, timeout=30)
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    for n in range(6):
        assert results[n] == hashlib.sha256(f"/r/branch/b{n}\0m{n}".encode()).hexdigest()


# -- commit policies -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,expected",
    [
        ("manual", options.CommitPolicy("manual")),
        ("unmount", options.CommitPolicy("unmount")),
        ("idle=30", options.CommitPolicy("idle", 30.0)),
        ("IDLE=0.5", options.CommitPolicy("idle", 0.5)),
    ],
)
def test_parse_commit_on(text: str, expected: options.CommitPolicy) -> None:
    assert options.parse_commit_on(text) == expected


@pytest.mark.parametrize("text", ["", "never", "idle", "idle=", "idle=0", "idle=-3", "idle=inf"])
def test_parse_commit_on_refuses(text: str) -> None:
    with pytest.raises(UsageError, match="--commit-on"):
        options.parse_commit_on(text)


class StagedFs:
    """Branches with staged writes, for the commit policies."""

    def __init__(self) -> None:
        self.idle: dict[tuple[str, str], float] = {}
        self.writers: set[tuple[str, str]] = set()
        self.fail: dict[tuple[str, str], S3fsvError] = {}
        self.commits: list[tuple[str, str, str]] = []

    def staged_branches(self) -> list[tuple[str, str]]:
        return sorted(self.idle)

    def idle_seconds(self, repo: str, branch: str) -> float:
        return self.idle[(repo, branch)]

    def has_open_writers(self, repo: str, branch: str) -> bool:
        return (repo, branch) in self.writers

    def commit_branch(self, repo: str, branch: str, message: str) -> str | None:
        if (repo, branch) in self.fail:
            raise self.fail[(repo, branch)]
        self.commits.append((repo, branch, message))
        del self.idle[(repo, branch)]
        return "c" * 64


def test_idle_committer_picks_quiet_branches() -> None:
    fs = StagedFs()
    fs.idle = {("a", "busy"): 2.0, ("a", "open"): 99.0, ("a", "quiet"): 10.0, ("b", "x"): 1e9}
    fs.writers = {("a", "open")}
    committer = daemon.IdleCommitter(fs, 10)
    committer.tick()
    msg = "s3fsv: commit after 10 s idle"
    assert fs.commits == [("a", "quiet", msg), ("b", "x", msg)]
    assert sorted(fs.idle) == [("a", "busy"), ("a", "open")]


def test_idle_committer_backs_off_after_a_failure(caplog: pytest.LogCaptureFixture) -> None:
    fs = StagedFs()
    fs.idle = {("a", "main"): float("inf")}
    fs.fail[("a", "main")] = Conflict(["x"], "main")
    committer = daemon.IdleCommitter(fs, 1)
    with caplog.at_level(logging.ERROR, logger="s3fsv.mount.daemon"):
        committer.tick()
        committer.tick()  # within the backoff: not retried
    failures = [r for r in caplog.records if "idle commit of a@main failed" in r.message]
    assert len(failures) == 1 and "conflict" in failures[0].getMessage()
    assert ("a", "main") in fs.idle  # still staged
    del fs.fail[("a", "main")]
    committer._retry_at[("a", "main")] = (0.0, 5.0)  # the backoff has passed
    committer.tick()
    assert fs.commits == [("a", "main", "s3fsv: commit after 1 s idle")]


def test_idle_committer_thread_survives_errors() -> None:
    fs = StagedFs()
    fs.idle = {("a", "main"): 5.0}
    calls = []

    def broken() -> list[tuple[str, str]]:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return StagedFs.staged_branches(fs)

    fs.staged_branches = broken  # type: ignore[method-assign]
    committer = daemon.IdleCommitter(fs, 1, poll=0.02)
    committer.start()
    deadline = time.monotonic() + 5
    while not fs.commits and time.monotonic() < deadline:
        time.sleep(0.02)
    committer.stop()
    assert fs.commits == [("a", "main", "s3fsv: commit after 1 s idle")]


def test_commit_staged_on_unmount(caplog: pytest.LogCaptureFixture) -> None:
    fs = StagedFs()
    fs.idle = {("a", "bad"): 0.0, ("a", "good"): 0.0}
    fs.fail[("a", "bad")] = StoreUnavailable("store down")
    report = ExitReport()
    with caplog.at_level(logging.INFO, logger="s3fsv.mount.daemon"):
        done = daemon.commit_staged(fs, "s3fsv: commit on unmount", report)
    assert done == {("a", "good"): "c" * 64}
    assert report.code == StoreUnavailable.exit_code
    assert report.lines == [
        "error: commit of a@bad failed: store down",
        f"committed a@good: {'c' * 64}",
    ]
    assert fs.commits == [("a", "good", "s3fsv: commit on unmount")]
    assert ("a", "bad") in fs.idle
    text = caplog.text
    assert "commit of a@bad failed, its writes stay staged: store down" in text
    assert "committed a@good: " + "c" * 64 in text


# -- the commands ----------------------------------------------------------------------------


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("s3fsv: error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize(
    "args", [("commit", "-m", "msg"), ("status",), ("discard",)], ids=lambda a: a[0]
)
def test_commands_outside_a_mount(env: dict[str, str], tmp_path: Path, args: tuple[str]) -> None:
    result = run_cli(*args, str(tmp_path), env=env, check=False)
    assert result.returncode == 2
    assert one_error_line(result) == f"s3fsv: error: {tmp_path} is not inside an s3fsv mount"
    assert result.stdout == ""


@pytest.mark.parametrize("value", ["never", "idle=0", "idle=soon"])
def test_mount_refuses_bad_commit_on(env: dict[str, str], tmp_path: Path, value: str) -> None:
    (tmp_path / "mnt").mkdir()
    result = run_cli(
        "mount", "file:///nonexistent", str(tmp_path / "mnt"), "--commit-on", value, env=env,
        check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "--commit-on" in one_error_line(result)


def test_mount_refuses_commit_on_with_read_only(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "mnt").mkdir()
    args = ("mount", "file:///x", str(tmp_path / "mnt"), "--read-only", "--commit-on", "unmount")
    result = run_cli(*args, env=env, check=False)
    assert result.returncode == 2
    assert "--read-only" in one_error_line(result)


def test_find_mount(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "my mnt"
    (root / "cams/branch/main/sub").mkdir(parents=True)
    table = {"/": Mounted("/", "ext4", "/dev/vda"), str(root): Mounted(str(root), FSTYPE, "x")}
    monkeypatch.setattr(cli_mount, "mount_table", lambda: table)
    assert cli_mount.find_mount(str(root)) == (root, "/")
    deep = root / "cams/branch/main/sub/new-file"
    assert cli_mount.find_mount(str(deep)) == (root, "/cams/branch/main/sub/new-file")
    monkeypatch.chdir(root / "cams/branch/main")
    assert cli_mount.find_mount(".") == (root, "/cams/branch/main")
    link = tmp_path / "link"
    link.symlink_to(root / "cams")
    assert cli_mount.find_mount(str(link / "branch/main")) == (root, "/cams/branch/main")
    with pytest.raises(UsageError, match="is not inside an s3fsv mount"):
        cli_mount.find_mount(str(tmp_path))


def test_mountinfo_unescape() -> None:
    assert mounttable._unescape(r"/mnt/my\040data\134x") == "/mnt/my data\\x"


def test_through_a_real_mount(
    tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon starts its control socket with the mount, names it in the pid file, answers
    on it, and removes it on unmount; errors from the filesystem reach the command as one line."""
    url = f"file://{tmp_path}/store"
    cid = Store.init(url).create_repo("cams").branch_head("main").commit
    mp = tmp_path / "mnt"
    with mounted(url, mp, env, "--commit-on", "unmount"):
        info = json.loads(next((tmp_path / "state/s3fsv/mounts").glob("*.json")).read_text())
        sock = Path(info["socket"])
        assert info["commit_on"] == "unmount" and info["mountpoint"] == str(mp)
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
        monkeypatch.setenv("XDG_STATE_HOME", env["XDG_STATE_HOME"])
        assert request(mp, {"op": "ping"}) == {"pid": info["pid"]}
        result = run_cli("status", str(mp / "cams/commit" / cid), env=env, check=False)
        assert result.returncode != 0  # a commit directory is never writable
        one_error_line(result)
    assert not sock.exists()
    assert not list((tmp_path / "state/s3fsv/mounts").glob("*.json"))


def _log_messages(url: str) -> list[str]:
    return [c.message for _, c in Store.open(url).repo("cams").log("main")]


def test_commit_on_idle(tmp_path: Path, env: dict[str, str]) -> None:
    """``idle=N`` commits a branch N seconds after its last write, but not while a file is
    still open for writing there."""
    url = f"file://{tmp_path}/store"
    Store.init(url).create_repo("cams")
    with mounted(url, tmp_path / "mnt", env, "--commit-on", "idle=0.5") as mp:
        branch = mp / "cams/branch/main"
        with open(branch / "held.txt", "w") as held:
            held.write("x")
            held.flush()
            (branch / "quick.txt").write_text("q")
            time.sleep(2.5)
            assert _log_messages(url) == ["Create repository"]  # a writer is still open
        deadline = time.monotonic() + 20
        while len(_log_messages(url)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _log_messages(url) == ["s3fsv: commit after 0.5 s idle", "Create repository"]
        status = json.loads(run_cli("status", str(branch), "--json", env=env).stdout)
        assert status["added"] == status["modified"] == status["deleted"] == []


def test_commit_on_unmount(tmp_path: Path, env: dict[str, str]) -> None:
    url = f"file://{tmp_path}/store"
    Store.init(url).create_repo("cams")
    with mounted(url, tmp_path / "mnt", env, "--commit-on", "unmount") as mp:
        (mp / "cams/branch/main/out.txt").write_text("result")
        assert _log_messages(url) == ["Create repository"]
    assert _log_messages(url) == ["s3fsv: commit on unmount", "Create repository"]
    repo = Store.open(url).repo("cams")
    assert b"".join(repo.read_file(repo.stat(repo.resolve("main"), "out.txt"))) == b"result"
