"""The peers s3fsv is compared with, mounted on the same SeaweedFS: s3fs-fuse (with and without
``use_cache``) and rclone (``--vfs-cache-mode full``), both from Debian.

Each mount runs in the foreground as a child process in a session of its own, so that it can be
stopped by its pid: ``PeerMounts.close()`` (called by the benchmark's cleanup, also on errors and
Ctrl-C) unmounts every mount started here (``fusermount3 -u``, then ``-uz``) and stops its
process (SIGTERM, then SIGKILL), whatever state it is in.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

from common import say
from mounts import spawn_logged, wait_mounted

PEERS = ("s3fs", "s3fs-cache", "rclone")


class PeerMounts:
    """Mounts of ``bucket/prefix`` by the peers. ``endpoint``, ``access_key``, ``secret_key``
    and ``region`` name the S3 server; ``work`` holds their logs, passwords and config."""

    def __init__(
        self, endpoint: str, access_key: str, secret_key: str, region: str, work: Path
    ) -> None:
        self.endpoint = endpoint
        self.region = region
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        self.passwd = work / "s3fs.passwd"
        self.passwd.write_text(f"{access_key}:{secret_key}\n")
        os.chmod(self.passwd, 0o600)
        self.rclone_conf = work / "rclone.conf"
        self.rclone_conf.write_text(
            "[bench]\ntype = s3\nprovider = Other\n"
            f"endpoint = {endpoint}\naccess_key_id = {access_key}\n"
            f"secret_access_key = {secret_key}\nregion = {region}\n"
        )
        os.chmod(self.rclone_conf, 0o600)
        self._procs: dict[Path, subprocess.Popen[bytes]] = {}

    @staticmethod
    def missing() -> list[str]:
        """The peer programs that are not installed."""
        return [p for p in ("s3fs", "rclone") if shutil.which(p) is None]

    def command(self, peer: str, bucket: str, prefix: str, mp: Path, cache: Path) -> list[str]:
        """The command line that mounts ``bucket/prefix`` at ``mp`` for ``peer``."""
        if peer in ("s3fs", "s3fs-cache"):
            opts = [
                f"url={self.endpoint}",
                "use_path_request_style",
                f"passwd_file={self.passwd}",
                f"endpoint={self.region}",
                "dbglevel=warn",
            ]
            if peer == "s3fs-cache":
                opts.append(f"use_cache={cache}")
            return ["s3fs", f"{bucket}:/{prefix}", str(mp), "-f", "-o", ",".join(opts)]
        if peer == "rclone":
            # rclone 1.60 refuses to start with AWS_CA_BUNDLE set (this machine sets it).
            return [
                "env", "-u", "AWS_CA_BUNDLE", "rclone", "mount", f"bench:{bucket}/{prefix}",
                str(mp), "--config", str(self.rclone_conf), "--vfs-cache-mode", "full",
                "--cache-dir", str(cache), "--vfs-write-back", "1s", "--log-level", "NOTICE",
            ]  # fmt: skip
        raise ValueError(f"unknown peer {peer}")

    @contextlib.contextmanager
    def mount(self, peer: str, bucket: str, prefix: str, mp: Path, cache: Path) -> Iterator[Path]:
        """``peer``'s mount of ``bucket/prefix`` at ``mp`` (cache directory ``cache``) for the
        duration of the block; unmounted and its process stopped whatever happens."""
        mp.mkdir(parents=True, exist_ok=True)
        cache.mkdir(parents=True, exist_ok=True)
        log = self.work / f"{peer}.log"
        proc = self._procs[mp] = spawn_logged(self.command(peer, bucket, prefix, mp, cache), log)
        try:
            wait_mounted(proc, mp, peer, log)
            yield mp
        finally:
            self.unmount(mp)

    def pid(self, mp: Path) -> int | None:
        proc = self._procs.get(mp)
        return None if proc is None else proc.pid

    def unmount(self, mp: Path, grace: float = 30.0) -> None:
        """Unmount ``mp`` and wait for its process (which flushes writes before it exits)."""
        proc = self._procs.pop(mp, None)
        if proc is None:
            return
        if os.path.ismount(mp):
            subprocess.run(["fusermount3", "-u", str(mp)], capture_output=True)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            say(f"{mp}: peer did not exit after unmount: stopping it")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if os.path.ismount(mp):
            subprocess.run(["fusermount3", "-uz", str(mp)], capture_output=True)

    def close(self) -> None:
        for mp in list(self._procs):
            with contextlib.suppress(Exception):
                self.unmount(mp, grace=10.0)
