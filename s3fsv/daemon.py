"""``s3fsv mount`` / ``s3fsv unmount``: checks, the background daemon, logging, clean stops.

``mount`` does every check that can fail with a clear message (mountpoint, FUSE, store, repo,
ref) in the calling process, then starts the daemon in a new session and returns only once the
mount answers, or reports the daemon's own error. The daemon logs to
``$XDG_STATE_HOME/s3fsv/logs/`` (and to stderr with ``--foreground``); SIGTERM and SIGINT make
libfuse leave its loop and unmount.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from s3fsv.config import cache_dir, endpoint_url, private_dir, state_dir
from s3fsv.errors import NotFound, S3fsvError, UsageError
from s3fsv.refs import check_ref_name
from s3fsv.store import Store

log = logging.getLogger(__name__)

READY_TIMEOUT = 60.0
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)


class MountError(S3fsvError):
    exit_code = 12


def parse_size(text: str) -> int:
    """``10G``, ``512MiB``, ``1000000`` -> bytes (binary multiples)."""
    m = _SIZE.match(text)
    if not m:
        raise UsageError(f"bad size {text!r}: use e.g. 512M or 20G")
    factor = 1024 ** " kmgt".index((m.group(2) or " ").lower())
    return int(float(m.group(1)) * factor)


@dataclass(frozen=True)
class Source:
    store_url: str
    repo: str | None
    ref: str | None


def parse_source(text: str, endpoint: str | None) -> tuple[Store, Source]:
    """Split ``STORE[/REPO[@REF]]`` and open the store. The store is the longest prefix of the
    URL that holds an s3fsv store marker; what follows is the repo."""
    base, _, last = text.rstrip("/").rpartition("/")
    if "@" in last:
        repo, _, ref = last.partition("@")
        check_ref_name(repo, "repo")
        check_ref_name(ref)
        return Store.open(base, endpoint_url=endpoint), Source(base, repo, ref)
    try:
        return Store.open(text, endpoint_url=endpoint), Source(text, None, None)
    except NotFound as first:
        if not base or base.endswith(":/") or base.endswith(":"):
            raise first from None
        try:
            store = Store.open(base, endpoint_url=endpoint)
        except NotFound:
            raise first from None
    store.repo(last)
    return store, Source(base, last, None)


def check_mountpoint(path: str) -> Path:
    mp = Path(path).absolute()
    if not mp.exists():
        raise MountError(f"mountpoint {mp} does not exist")
    if not mp.is_dir():
        raise MountError(f"mountpoint {mp} is not a directory")
    if os.path.ismount(mp):
        raise MountError(f"mountpoint {mp} is busy: something is already mounted there")
    if any(mp.iterdir()):
        raise MountError(f"mountpoint {mp} is not empty")
    return mp


def check_fuse() -> None:
    if not os.path.exists("/dev/fuse"):
        raise MountError("FUSE is unavailable: /dev/fuse is missing (load the fuse module)")
    if shutil.which("fusermount3") is None:
        raise MountError("FUSE is unavailable: fusermount3 not found (install the fuse3 package)")


def _mount_id(mp: Path) -> str:
    return hashlib.sha256(str(mp).encode()).hexdigest()[:16]


def pid_file(mp: Path) -> Path:
    return private_dir(state_dir() / "mounts") / f"{_mount_id(mp)}.json"


def log_file(mp: Path) -> Path:
    return private_dir(state_dir() / "logs") / f"mount-{mp.name or 'root'}-{_mount_id(mp)}.log"


def start(argv: list[str], mountpoint: str, foreground: bool) -> int:
    """Validate, then either serve in this process (``foreground``) or start the daemon and wait
    until the mount is usable. ``argv`` is the mount command line to re-run in the daemon."""
    check_fuse()
    mp = check_mountpoint(mountpoint)
    if foreground:
        return -1  # the caller serves in-process
    logf = log_file(mp)
    with open(logf, "ab") as out:
        os.fchmod(out.fileno(), 0o600)
        child = subprocess.Popen(
            [sys.executable, "-m", "s3fsv.cli", *argv, "--foreground", "--daemonized"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if os.path.ismount(mp):
            return 0
        if child.poll() is not None:
            raise MountError(f"mount failed: {_last_error(logf)} (log: {logf})")
        time.sleep(0.05)
    child.terminate()
    raise MountError(f"mount did not become ready within {READY_TIMEOUT:.0f}s (log: {logf})")


def _last_error(logf: Path) -> str:
    try:
        lines = [ln for ln in logf.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "daemon exited"
    for line in reversed(lines[-20:]):
        if "error" in line.lower():
            return line.split("error:", 1)[-1].strip()
    return lines[-1] if lines else "daemon exited"


def serve(args: object, store: Store, source: Source, mountpoint: str) -> int:
    """Run the filesystem in this process until it is unmounted."""
    from s3fsv.cache import DiskCache
    from s3fsv.fuse import mount
    from s3fsv.vfs import Filesystem, MountSpec

    mp = Path(mountpoint).absolute()
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = logging.getLogger()
    if getattr(args, "daemonized", False):
        for h in root.handlers:  # stderr is the log file already
            h.setFormatter(fmt)
    else:
        handler = logging.FileHandler(log_file(mp))
        handler.setFormatter(fmt)
        root.addHandler(handler)
    cache = DiskCache(
        getattr(args, "cache_dir", None) or cache_dir(),
        parse_size(getattr(args, "cache_size", "10G")),
    )
    store.cache = cache
    spec = MountSpec(source.repo, source.ref, float(getattr(args, "ref_ttl", 5.0)))
    fs = Filesystem(store, spec, cache)
    pid_file(mp).write_text(json.dumps({"pid": os.getpid(), "source": store.url}))
    log.info("mounting %s at %s (pid %d)", store.url, mp, os.getpid())
    try:
        mount(
            fs,
            str(mp),
            ref_ttl=spec.ref_ttl,
            allow_other=bool(getattr(args, "allow_other", False)),
            fsname=f"s3fsv:{source.repo or 'store'}",
        )
    finally:
        pid_file(mp).unlink(missing_ok=True)
        log.info("unmounted %s", mp)
    return 0


def unmount(mountpoint: str, timeout: float = 30.0) -> None:
    """Unmount and wait for the daemon to exit."""
    mp = Path(mountpoint).absolute()
    if not os.path.ismount(mp):
        raise MountError(f"{mp} is not mounted")
    pid = None
    with contextlib.suppress(OSError, ValueError, KeyError):
        pid = json.loads(pid_file(mp).read_text())["pid"]
    result = subprocess.run(["fusermount3", "-u", str(mp)], capture_output=True, text=True)
    if result.returncode != 0:
        msg = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "failed"
        if "busy" in msg.lower():
            raise MountError(f"cannot unmount {mp}: it is busy (files are open there)")
        raise MountError(f"cannot unmount {mp}: {msg}")
    if pid is None:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGTERM)


def store_for_mount(text: str, endpoint_flag: str | None) -> tuple[Store, Source]:
    return parse_source(text, endpoint_url(endpoint_flag))
