"""The command of a run gets the caller's streams, directory and environment, its exit status
is returned (128+N for signal N), and SIGINT/SIGTERM reach it exactly once: passed on when
sent to the runner alone, not again when a terminal's Ctrl-C reached both."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from s3fsv.runs.execute import CommandNotExecutable, CommandNotFound, check_command, run_command

ROOT = Path(__file__).resolve().parents[2]

# Counts the SIGINTs it gets for 5 s (or until it got one and 1 s passed), then exits with
# that count.
CHILD = """\
import signal, sys, time
got = []
signal.signal(signal.SIGINT, lambda s, f: got.append(time.monotonic()))
print("ready", flush=True)
end = time.monotonic() + 5
while time.monotonic() < end and not (got and time.monotonic() > got[0] + 1):
    time.sleep(0.02)
sys.exit(len(got))
"""

RUNNER = """\
import os, sys
from s3fsv.runs.execute import run_command
code = run_command([sys.executable, sys.argv[1]], cwd=os.getcwd(), env=dict(os.environ))
print("runner: command exited", code, flush=True)
sys.exit(code)
"""


def test_exit_code_cwd_env(tmp_path: Path) -> None:
    code = run_command(
        ["sh", "-c", 'pwd > out; echo "$X" >> out; exit 7'],
        cwd=str(tmp_path),
        env={**os.environ, "X": "from env"},
    )
    assert code == 7
    assert (tmp_path / "out").read_text() == f"{tmp_path}\nfrom env\n"
    assert os.getcwd() != str(tmp_path)  # the runner's own directory is unchanged
    assert run_command(["sh", "-c", "kill -TERM $$"], cwd=".", env=dict(os.environ)) == 143


def test_stdin_is_inherited(tmp_path: Path) -> None:
    code = (
        "from s3fsv.runs.execute import run_command; import os, sys; "
        "sys.exit(run_command(['cat'], cwd='.', env=dict(os.environ)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], input=b"piped\n", capture_output=True, cwd=ROOT
    )
    assert done.returncode == 0 and done.stdout == b"piped\n"


def test_command_not_found(tmp_path: Path) -> None:
    env = dict(os.environ)
    with pytest.raises(CommandNotFound, match="command not found: no-such-tool") as err:
        check_command(["no-such-tool"], str(tmp_path), env)
    assert err.value.exit_code == 127
    (tmp_path / "data.txt").write_text("x")
    with pytest.raises(CommandNotExecutable) as denied:
        check_command(["./data.txt"], str(tmp_path), env)
    assert denied.value.exit_code == 126
    with pytest.raises(CommandNotFound):
        check_command(["./missing.sh"], str(tmp_path), env)


def _spawn_runner(tmp_path: Path) -> subprocess.Popen[str]:
    (tmp_path / "child.py").write_text(CHILD)
    (tmp_path / "runner.py").write_text(RUNNER)
    return subprocess.Popen(
        [sys.executable, str(tmp_path / "runner.py"), str(tmp_path / "child.py")],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def test_sigint_sent_to_runner_is_passed_on_once(tmp_path: Path) -> None:
    runner = _spawn_runner(tmp_path)
    try:
        assert runner.stdout is not None
        assert runner.stdout.readline().strip() == "ready"
        runner.send_signal(signal.SIGINT)
        assert runner.wait(timeout=20) == 1  # the command got exactly one SIGINT
        assert "runner: command exited 1" in runner.stdout.read()
    finally:
        runner.kill()
        runner.wait()


def test_terminal_ctrl_c_is_not_sent_twice(tmp_path: Path) -> None:
    """At a terminal, Ctrl-C goes to the whole foreground group: runner and command both get
    it. The runner must not pass on a second one."""
    (tmp_path / "child.py").write_text(CHILD)
    (tmp_path / "runner.py").write_text(RUNNER)
    pid, fd = pty.fork()
    if pid == 0:  # the child: the runner, in the pty's foreground group
        os.chdir(ROOT)
        os.execv(sys.executable, [sys.executable, str(tmp_path / "runner.py"),
                                  str(tmp_path / "child.py")])  # fmt: skip
    seen = b""
    sent = False
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    break
                if not data:
                    break
                seen += data
            if b"ready" in seen and not sent:
                os.write(fd, b"\x03")  # the terminal's interrupt character
                sent = True
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    assert sent, seen
    assert os.waitstatus_to_exitcode(status) == 1, seen  # one SIGINT, not two
    assert b"runner: command exited 1" in seen
