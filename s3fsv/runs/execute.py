"""Running a run's command as if the caller had run it: the caller's stdin, stdout, stderr,
working directory and environment; SIGINT and SIGTERM passed on; its exit status returned.

A Ctrl-C at a terminal reaches the command by itself (it is in the terminal's foreground
process group with ``s3fsv run``), so only a signal sent to ``s3fsv run`` alone (``kill``) is
passed on: the command never gets one Ctrl-C twice. Which is which comes from the signal's
``si_code``, read with ``sigtimedwait`` while the signals are blocked.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import FrameType

from s3fsv.errors import S3fsvError

FORWARDED = (signal.SIGINT, signal.SIGTERM)
SI_KERNEL = 0x80  # si_code of a signal the kernel sent: the terminal's Ctrl-C among them
_POLL = 0.5


class CommandNotFound(S3fsvError):
    """The command to run does not exist (exit 127, as a shell says)."""

    errno = errno.ENOENT
    exit_code = 127


class CommandNotExecutable(S3fsvError):
    """The command exists but may not be run (exit 126, as a shell says)."""

    errno = errno.EACCES
    exit_code = 126


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived while ``s3fsv run`` itself was working (not its command): stop as for
    Ctrl-C, cleaning up on the way, and exit 143."""


def check_command(argv: Sequence[str], cwd: str, env: Mapping[str, str]) -> str:
    """The program ``argv[0]`` names, found as the command would find it (on ``env``'s
    ``PATH`` unless it holds a ``/``); ``CommandNotFound``/``CommandNotExecutable`` else."""
    if not argv or not argv[0]:
        raise CommandNotFound("no command given: s3fsv run ... -- COMMAND [ARGS...]")
    name = argv[0]
    if "/" in name:
        path = os.path.join(cwd, name)
        if not os.path.exists(path):
            raise CommandNotFound(f"command not found: {name}")
        if os.path.isdir(path) or not os.access(path, os.X_OK):
            raise CommandNotExecutable(f"cannot run {name}: not an executable file")
        return path
    found = shutil.which(name, path=env.get("PATH", os.defpath))
    if found is None:
        raise CommandNotFound(f"command not found: {name}")
    return found


def run_command(
    argv: Sequence[str],
    *,
    cwd: str,
    env: Mapping[str, str],
    stdout_to_stderr: bool = False,
    on_start: Callable[[int], None] | None = None,
) -> int:
    """Run ``argv`` and return its exit status (``128 + N`` when signal N ended it).

    Standard streams are inherited (with ``stdout_to_stderr``, its stdout is this process's
    stderr: for a report that must stay alone on stdout). The working directory is ``cwd``:
    the process changes to it for the instant of the spawn when it is not already there.
    While the command runs, SIGINT and SIGTERM sent to this process are passed on to it; this
    process then keeps waiting for the command to end, as a shell does. ``on_start`` is told
    the command's pid once it runs."""
    program = check_command(argv, cwd, env)
    previous = {sig: signal.getsignal(sig) for sig in FORWARDED}
    child: list[int] = []

    def forward(signum: int, _frame: FrameType | None) -> None:
        # Reached only when a thread other than this one took the signal (it was not
        # blocked there): its origin is unknown, so pass it on.
        for pid in child:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    for sig in FORWARDED:
        signal.signal(sig, forward)
    waited = set(FORWARDED) | {signal.SIGCHLD}
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, waited)
    try:
        with _in_directory(cwd):
            pid = os.posix_spawn(
                program,
                list(argv),
                dict(env),
                setsigmask=mask,  # the command starts with the caller's mask, not ours
                setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),  # Python ignores these
                file_actions=[(os.POSIX_SPAWN_DUP2, 2, 1)] if stdout_to_stderr else None,
            )
        child.append(pid)
        if on_start is not None:
            on_start(pid)
        waiting = _Waiting(pid)
        threading.Thread(target=waiting.nudge_when_done, daemon=True).start()
        return waiting.wait()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class _Waiting:
    """Waiting in this thread for the command ``pid`` to end, passing signals on meanwhile."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.waiter = threading.get_ident()
        self._lock = threading.Lock()
        self._reaped = False

    def nudge_when_done(self) -> None:
        """Send SIGCHLD to the waiting thread once the command has ended (not reaping it).
        The kernel gives a process's own SIGCHLD to any thread that does not block it, where
        it is lost (other threads of this process: a run's mount, the store's), so ``wait``
        would only notice at its next poll. (Only while that thread still waits: the lock
        keeps it from being gone.)"""
        with contextlib.suppress(OSError):
            os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOWAIT)
        with self._lock:
            if not self._reaped:
                signal.pthread_kill(self.waiter, signal.SIGCHLD)

    def wait(self) -> int:
        waited = set(FORWARDED) | {signal.SIGCHLD}
        while True:
            info = signal.sigtimedwait(waited, _POLL)
            if info is not None and info.si_signo in FORWARDED and info.si_code != SI_KERNEL:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, info.si_signo)
            with self._lock:
                done, status = os.waitpid(self.pid, os.WNOHANG)
                self._reaped = bool(done)
            if done:
                code = os.waitstatus_to_exitcode(status)
                return code if code >= 0 else 128 - code  # killed by signal N: 128 + N


@contextlib.contextmanager
def _in_directory(cwd: str) -> Iterator[None]:
    here = os.getcwd()
    if os.path.realpath(here) == os.path.realpath(cwd):
        yield
        return
    os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(here)


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """While active, SIGTERM raises :class:`Terminated` (a ``KeyboardInterrupt``), so that a
    run being set up or committing cleans up (unmounts) as for Ctrl-C instead of dying."""

    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
