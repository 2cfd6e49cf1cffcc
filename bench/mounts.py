"""Mounts the benchmarks start: s3fsv through its CLI, and the passthrough ceiling. Whatever
happens (a failed mount, an exception, Ctrl-C), every mount started here is unmounted and its
daemon stopped."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from common import HERE, s3fsv_command, say, wait_or_kill
from s3server import SeaweedServer

MOUNT_TIMEOUT = 120.0


def spawn_logged(cmd: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in a session of its own, its output appended to ``log_path``."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )


def wait_mounted(proc: subprocess.Popen[bytes], mp: Path, what: str, log_path: Path) -> None:
    """Wait until ``mp`` is a mount point; raise if ``proc`` exits or it takes too long."""
    deadline = time.monotonic() + MOUNT_TIMEOUT
    while not os.path.ismount(mp):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} mount failed; see {log_path}")
        time.sleep(0.02)


class Mounts:
    """``state_home`` is the XDG state directory of ``env`` (where the daemons record their
    pids); ``logs`` is where the passthrough writes its log."""

    def __init__(self, env: dict[str, str], state_home: Path, logs: Path | None = None) -> None:
        self.env = env
        self.state_home = state_home
        self.logs = logs or state_home
        self.s3fsv = s3fsv_command()
        self._active: dict[Path, int | None] = {}  # s3fsv mountpoint -> daemon pid
        self._passthrough: dict[Path, subprocess.Popen[bytes]] = {}

    def _pid_files(self) -> set[Path]:
        return set((self.state_home / "s3fsv" / "mounts").glob("*.json"))

    def metrics_address(self, mp: Path) -> str | None:
        """The metrics endpoint (HOST:PORT) of the s3fsv mount at ``mp``, from its pid file."""
        for f in self._pid_files():
            with contextlib.suppress(OSError, ValueError):
                info = json.loads(f.read_text())
                if info.get("mountpoint") == os.path.realpath(mp):
                    return info.get("metrics")
        return None

    def daemon_pid(self, mp: Path) -> int | None:
        if mp in self._passthrough:
            return self._passthrough[mp].pid
        return self._active.get(mp)

    @contextlib.contextmanager
    def mount(
        self, source: str, mp: Path, cache_dir: Path, options: Sequence[str] = ()
    ) -> Iterator[Path]:
        """``s3fsv mount SOURCE MP --cache-dir CACHE_DIR [OPTIONS]`` for the duration of the
        block."""
        mp.mkdir(parents=True, exist_ok=True)
        before = self._pid_files()
        cmd = [*self.s3fsv, "mount", source, str(mp), "--cache-dir", str(cache_dir), *options]
        self._active[mp] = None  # from now on: unmounted whatever happens (even Ctrl-C here)
        try:
            res = subprocess.run(
                cmd, env=self.env, capture_output=True, text=True, timeout=MOUNT_TIMEOUT
            )
            for f in self._pid_files() - before:
                with contextlib.suppress(OSError, ValueError, KeyError):
                    self._active[mp] = int(json.loads(f.read_text())["pid"])
            if res.returncode != 0 or not os.path.ismount(mp):
                raise RuntimeError(
                    f"s3fsv mount {source} failed ({res.returncode}): {res.stderr.strip()}"
                )
            yield mp
        finally:
            self.unmount(mp)

    @contextlib.contextmanager
    def passthrough(self, source: Path, mp: Path) -> Iterator[Path]:
        """``bench/passthrough.py SOURCE MP`` (the ceiling) for the duration of the block."""
        mp.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, str(HERE / "passthrough.py"), str(source), str(mp)]
        proc = self._passthrough[mp] = spawn_logged(cmd, self.logs / "passthrough.log")
        try:
            wait_mounted(proc, mp, "passthrough", self.logs / "passthrough.log")
            yield mp
        finally:
            self.unmount(mp)

    def unmount(self, mp: Path) -> None:
        proc = self._passthrough.pop(mp, None)
        if proc is not None:
            if os.path.ismount(mp):
                subprocess.run(["fusermount3", "-u", str(mp)], capture_output=True)
            self._lazy_unmount(mp)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            return
        if mp not in self._active:
            return
        pid = self._active.pop(mp)
        if pid is None:  # interrupted before the pid was known: look for it
            for f in self._pid_files():
                with contextlib.suppress(OSError, ValueError, KeyError):
                    info = json.loads(f.read_text())
                    if Path(info["mountpoint"]) == mp.absolute():
                        pid = int(info["pid"])
        if os.path.ismount(mp):
            subprocess.run(
                [*self.s3fsv, "unmount", str(mp)], env=self.env, capture_output=True, timeout=120
            )
        self._lazy_unmount(mp)
        if pid is not None:
            wait_or_kill(pid)

    @staticmethod
    def _lazy_unmount(mp: Path) -> None:
        if os.path.ismount(mp):
            say(f"unmount of {mp} failed: lazy unmount")
            subprocess.run(["fusermount3", "-uz", str(mp)], capture_output=True)

    def close(self) -> None:
        for mp in [*self._active, *self._passthrough]:
            with contextlib.suppress(Exception):
                self.unmount(mp)
        for f in self._pid_files():  # any daemon left behind (this state dir is ours alone)
            with contextlib.suppress(OSError, ValueError, KeyError):
                info = json.loads(f.read_text())
                if os.path.ismount(info["mountpoint"]):
                    subprocess.run(["fusermount3", "-uz", info["mountpoint"]], capture_output=True)
                wait_or_kill(int(info["pid"]), grace=2)


class MountBench:
    """What the mount benchmarks share: their SeaweedFS on 127.0.0.1, the environment their
    ``s3fsv`` commands run in, their mounts; :meth:`close` stops them all."""

    def __init__(self, args: Any, work: Path) -> None:
        self.args = args
        self.work = work
        self.mounts: Mounts | None = None
        self.server: SeaweedServer | None = None
        self.env: dict[str, str] = {}

    def start_server(self, *xdg: str) -> dict[str, str]:
        """Start SeaweedFS (``work/weed``) and return the environment of the ``s3fsv``
        commands: its credentials, and XDG directories ``state``, ``config`` and ``xdg`` of
        their own in ``work`` (never a user's config); ``self.mounts`` keeps its state there."""
        say("starting SeaweedFS on 127.0.0.1")
        # weed often ignores SIGTERM: do not wait the default 10 s for it
        self.server = SeaweedServer(self.work / "weed", grace=3.0).start()
        env = {**os.environ, **self.server.env()}
        for name in ("state", "config", *xdg):
            (self.work / name).mkdir()
            env[f"XDG_{name.upper()}_HOME"] = str(self.work / name)
        env.pop("S3FSV_STORE", None)
        os.environ.update(self.server.env())
        self.env = env
        self.mounts = Mounts(env, self.work / "state", self.work)
        return env

    def close(self) -> None:
        if self.mounts is not None:
            self.mounts.close()
        if self.server is not None:
            say("stopping SeaweedFS")
            self.server.stop()
