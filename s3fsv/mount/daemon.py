"""``s3fsv mount`` / ``s3fsv unmount``: checks, the background daemon, logging, clean stops.

``mount`` does every check that can fail with a clear message (mountpoint, FUSE, store, repo,
ref) in the calling process, then starts the daemon in a new session and returns only once the
mount answers, or reports the daemon's own error. The daemon logs to
``$XDG_STATE_HOME/s3fsv/logs/`` (and to stderr with ``--foreground``); SIGTERM and SIGINT make
libfuse leave its loop and unmount.

While mounted, the daemon serves its control socket (``control.py``; named in the pid file
``$XDG_STATE_HOME/s3fsv/mounts/<id>.json``) for ``s3fsv commit/status/discard``, and applies
the ``--commit-on`` policy: ``manual``, ``unmount`` or ``idle=SECONDS``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from s3fsv.config import cache_dir, endpoint_url, parse_size, private_dir, store_url
from s3fsv.errors import MountError, S3fsvError, UsageError
from s3fsv.mount.exit_report import ExitReport, take_report
from s3fsv.mount.mounttable import is_dead, mount_table, mounted_at
from s3fsv.mount.options import (
    PROBE_S3_OPTIONS,
    Source,
    parse_commit_on,
    parse_source,
)
from s3fsv.mount.runtime_files import exit_report_file, log_file, pid_file, rotate_log, socket_file
from s3fsv.store.store import Store

log = logging.getLogger(__name__)

READY_TIMEOUT = 60.0
UNMOUNT_TIMEOUT = 30.0
# With --commit-on unmount the daemon uploads after the kernel has let go: wait for it longer.
UNMOUNT_COMMIT_TIMEOUT = 3600.0
IDLE_POLL = 1.0
IDLE_RETRY_MAX = 600.0  # a failing idle commit is retried with backoff up to this many seconds


def check_mountpoint(path: str, *, replace_dead: bool = False) -> Path:
    """The mountpoint, resolved (the kernel mounts on the real directory, and a symlink to it
    never counts as mounted), once checked to be an empty directory with nothing mounted. The
    dead mount of a crashed s3fsv daemon counts as nothing; ``replace_dead`` removes it."""
    mp = Path(os.path.realpath(path))
    table = mount_table()
    there = mounted_at(table, mp) if table is not None else None
    if there is not None and there.is_s3fsv and is_dead(mp):
        # Its daemon crashed or was killed; its staged writes are on disk for this mount.
        if not replace_dead:
            return mp
        _detach(mp)
        print(f"s3fsv: replaced the dead mount at {mp} (its daemon had stopped)", file=sys.stderr)
    elif there is not None if table is not None else os.path.ismount(mp):
        if is_dead(mp):
            raise MountError(
                f"mountpoint {mp} holds a dead FUSE mount (its daemon stopped): unmount it first"
            )
        raise MountError(f"mountpoint {mp} is busy: something is already mounted there")
    if not mp.exists():
        raise MountError(f"mountpoint {mp} does not exist")
    if not mp.is_dir():
        raise MountError(f"mountpoint {mp} is not a directory")
    if any(mp.iterdir()):
        raise MountError(f"mountpoint {mp} is not empty")
    return mp


def _detach(mp: Path) -> None:
    """Unmount ``mp``, lazily if programs still hold files there."""
    for flags in ("-u", "-uz"):
        if subprocess.run(["fusermount3", flags, str(mp)], capture_output=True).returncode == 0:
            return
    raise MountError(f"cannot unmount the dead mount at {mp}")


def check_cache_dir(path: str | None) -> Path:
    """The cache directory as an absolute path (``path``, else the default), made 0700 if
    missing, and checked to be a writable directory: before a daemon is started to use it."""
    where = Path(os.path.abspath(path)) if path else cache_dir()
    try:
        if where.exists() and not where.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
        private_dir(where)
        if not os.access(where, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
    except OSError as err:
        raise MountError(f"cannot use {where} as the cache directory: {err.strerror}") from None
    return where


def check_fuse() -> None:
    if not os.path.exists("/dev/fuse"):
        raise MountError("FUSE is unavailable: /dev/fuse is missing (load the fuse module)")
    if shutil.which("fusermount3") is None:
        raise MountError("FUSE is unavailable: fusermount3 not found (install the fuse3 package)")


def start(argv: list[str], mountpoint: str, foreground: bool) -> int:
    """Validate, then either serve in this process (``foreground``) or start the daemon and wait
    until the mount is usable. ``argv`` is the mount command line to re-run in the daemon."""
    check_fuse()
    mp = check_mountpoint(mountpoint, replace_dead=True)
    if foreground:
        return -1  # the caller serves in-process
    logf = rotate_log(log_file(mp))
    with open(logf, "ab") as out:
        os.fchmod(out.fileno(), 0o600)
        start = out.tell()  # an earlier daemon's lines are not this one's error
        child = subprocess.Popen(
            [*s3fsv_command(), *argv, "--foreground", "--daemonized"],
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
            raise MountError(f"mount failed: {_last_error(logf, start)} (log: {logf})")
        time.sleep(0.05)
    child.terminate()
    raise MountError(f"mount did not become ready within {READY_TIMEOUT:.0f}s (log: {logf})")


# The daemon runs the s3fsv this process runs. `python -m` or `-c` would put the caller's
# directory first on sys.path, where an s3fsv/ of anyone's making would be imported instead;
# -I or -P would drop it but also PYTHONPATH (-I) or need Python 3.11 (-P).
_DAEMON_MAIN = (
    f"import sys; sys.path[0] = {str(Path(__file__).resolve().parents[2])!r}; "
    "from s3fsv.cli import main; sys.exit(main())"
)


def s3fsv_command() -> list[str]:
    """How to run s3fsv in the daemon: the entry point this command was started by (so that
    `ps` shows daemons as s3fsv and `pgrep -f s3fsv` finds them), else the bootstrap."""
    script = sys.argv[0]
    main_file = getattr(sys.modules["__main__"], "__file__", None)
    # Only a script named by its full path, and the very one running: a bare 's3fsv' (as some
    # wrappers set argv[0]) would be looked up in the caller's directory.
    if os.path.basename(script) == "s3fsv" and os.path.isabs(script) and main_file is not None:
        with contextlib.suppress(OSError):
            if os.path.samefile(script, main_file):
                return [sys.executable, script]
    return [sys.executable, "-c", _DAEMON_MAIN]


def _last_error(logf: Path, start: int) -> str:
    """The error the daemon wrote to ``logf`` after offset ``start``, else its last line."""
    try:
        with open(logf, "rb") as fh:
            fh.seek(start)
            text = fh.read().decode(errors="replace")
    except OSError:
        return "daemon exited"
    lines = [ln for ln in text.splitlines() if ln.strip()]
    for line in reversed(lines[-20:]):
        if "error" in line.lower():
            return line.split("error:", 1)[-1].strip()
    return lines[-1] if lines else "daemon exited"


def serve(args: object, store: Store, source: Source, mountpoint: str) -> int:
    """Run the filesystem in this process until it is unmounted: control socket (and metrics
    endpoint) first, then the FUSE loop, then the ``--commit-on unmount`` commits, then the
    socket goes. Under systemd (``NOTIFY_SOCKET``) it reports ready once the mount is usable,
    and stopping when the loop ends."""
    from s3fsv.mount.control import ControlServer
    from s3fsv.mount.fuse import mount
    from s3fsv.mount.health import Health
    from s3fsv.mount.notify import Notifier

    mp = Path(os.path.realpath(mountpoint))
    # Everything the daemon itself creates (logs, pid file, staging databases and their
    # journals, sockets) is for this user alone.
    os.umask(0o077)
    _log_to_file(args, mp)
    notifier = Notifier.from_environment() if not getattr(args, "daemonized", False) else None
    policy = parse_commit_on(str(getattr(args, "commit_on", "manual")))
    metrics = _metrics(args, store, mp)
    fs = make_filesystem(args, store, source, metrics)
    outage = getattr(store.backend, "outage", None)
    health = Health(
        fs, outage, mountpoint=str(mp), source=source_text(source, pinned=fs.immutable),
        commit_on=str(policy),
    )  # fmt: skip
    logging.getLogger().addHandler(health.errors)
    if policy.kind != "manual":  # else the branch's own mounts should find them, not this one
        for repo, branch in fs.open_leftover_staging():
            log.info(
                "committing on %s the writes an earlier mount left on %s@%s", policy, repo, branch
            )
    if getattr(args, "daemonized", False):
        os.chdir("/")  # a daemon must not keep the directory it was started from busy
    control = ControlServer(fs, socket_file(mp), health=health.report)
    idle = IdleCommitter(fs, policy.idle) if policy.kind == "idle" else None
    endpoint = None
    control.start()
    try:
        if metrics is not None:
            endpoint = _serve_metrics(args, metrics, fs, outage)
            health.metrics_address = endpoint.address
        info = {
            "pid": os.getpid(),
            "source": store.url,
            "mountpoint": str(mp),
            "socket": str(control.socket_path),
            "commit_on": str(policy),
            "metrics": health.metrics_address,
        }
        pid_file(mp).write_text(json.dumps(info))
        log.info("mounting %s at %s (pid %d, commit on %s)", store.url, mp, os.getpid(), policy)
        if idle is not None:
            idle.start()

        def ready() -> None:
            _tell_ready(args, mp)
            if notifier is not None:
                notifier.ready(f"mounted {health.source} at {mp}")
                notifier.start_watchdog(lambda: os.stat(mp))

        try:
            mount(
                fs,
                str(mp),
                ref_ttl=fs.spec.ref_ttl,
                allow_other=bool(getattr(args, "allow_other", False)),
                fsname=mount_name(source, pinned=fs.immutable),
                on_ready=ready,
                timer=metrics.fuse_timer if metrics is not None else None,
            )
        finally:
            if notifier is not None:
                notifier.stopping(f"unmounted {mp}; finishing")
            if idle is not None:
                idle.stop()
            log.info("unmounted %s", mp)
        fs.writers_left_open()
        report = ExitReport()
        report.lines += idle.summary() if idle is not None else []
        if policy.kind == "unmount":  # only after a loop that ran and ended normally
            commit_staged(fs, "s3fsv: commit on unmount", report)
        for repo, branch in fs.staged_branches():
            staged, interrupted = fs.staged_count(repo, branch)
            held = f", {interrupted} of them possibly incomplete," if interrupted else ""
            report.lines.append(
                f"{staged} staged path(s) of {repo}@{branch}{held} were not committed: they "
                "stay staged for the next mount of that branch (s3fsv status, commit or "
                "discard there)"
            )
        for line in report.lines:
            log.log(logging.ERROR if line.startswith("error: ") else logging.INFO, "%s", line)
        report.write(exit_report_file(mp))
    finally:
        if endpoint is not None:
            endpoint.close()
        control.close()
        fs.close()
        store.close()  # its clients, the outage probe's too
        pid_file(mp).unlink(missing_ok=True)
        logging.getLogger().removeHandler(health.errors)
    return 0


def _metrics(args: object, store: Store, mp: Path) -> Any:
    """The mount's ``MountMetrics`` when ``--metrics-addr`` asks for them, else None."""
    if not getattr(args, "metrics_addr", None):
        return None
    from s3fsv.mount.metrics import MountMetrics
    from s3fsv.version import __version__

    metrics = MountMetrics()
    metrics.info = {"version": __version__, "source": store.url, "mountpoint": str(mp)}
    return metrics


def _serve_metrics(args: object, metrics: Any, fs: Any, outage: Any) -> Any:
    """Start the metrics endpoint at ``--metrics-addr`` (a port already taken is the mount's
    error); its gauges read the filesystem's staging, the cache and the outage breaker."""
    from s3fsv.mount.metrics import MetricsServer, registry_for
    from s3fsv.mount.options import parse_listen_address

    host, port = parse_listen_address(str(getattr(args, "metrics_addr", "")))
    metrics.watch(
        staged=lambda: [
            (s["repo"], s["branch"], s["paths"], s["bytes"]) for s in fs.staged_summary()
        ],
        cache=lambda: fs.cache,
        outage=lambda: outage,
        read_path=lambda: fs.read_path_mode,
    )
    try:
        server = MetricsServer(host, port, registry_for(metrics))
    except OSError as err:
        raise MountError(
            f"cannot serve metrics at {getattr(args, 'metrics_addr', '')}: {err.strerror or err}"
        ) from None
    log.info("metrics at http://%s/metrics", server.address)
    return server


def source_text(source: Source, *, pinned: bool) -> str:
    """The mount's source: the store, and the repo and ref, or for a pinned snapshot the full
    commit id (ops tell mounts apart by it)."""
    name = source.store_url
    if source.repo is not None:
        name += f"/{source.repo}"
        if source.ref is not None:
            name += f"@{source.commit if pinned and source.commit else source.ref}"
    return name


def mount_name(source: Source, *, pinned: bool) -> str:
    """What ``mount`` and ``/proc/mounts`` show as the mount's source (``source_text``)."""
    # libfuse splits options at commas; a backslash keeps one in the value.
    return source_text(source, pinned=pinned).replace("\\", "\\\\").replace(",", "\\,")


def _tell_ready(args: object, mp: Path) -> None:
    """The line that says a mount is usable: in the log, and on stderr in the foreground."""
    what = getattr(args, "source", "")
    log.info("mounted %s at %s", what, mp)
    if not getattr(args, "daemonized", False):
        print(f"s3fsv: mounted {what} at {mp}; SIGTERM or Ctrl-C unmounts", file=sys.stderr)


def _log_to_file(args: object, mp: Path) -> None:
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = logging.getLogger()
    if getattr(args, "daemonized", False):
        for h in root.handlers:  # stderr is the log file already
            h.setFormatter(fmt)
    else:
        handler = logging.FileHandler(rotate_log(log_file(mp)))
        handler.setFormatter(fmt)
        root.addHandler(handler)


def _quietly(fn: Callable[..., object], *args: object) -> None:
    """``fn(*args)``, whatever it raises (what it found is not needed)."""
    with contextlib.suppress(Exception):
        fn(*args)


def make_filesystem(args: object, store: Store, source: Source, metrics: Any = None) -> Any:
    """The mount's ``vfs.Filesystem``, built in this one place from the mount options; with
    ``metrics`` (a ``MountMetrics``), its store requests, reads and commits are recorded."""
    from s3fsv.mount.outage import GuardedBackend, Outage
    from s3fsv.mount.vfs import Filesystem, MountSpec
    from s3fsv.store.backend import open_backend
    from s3fsv.store.cache import DiskCache
    from s3fsv.store.store import MARKER

    cache = DiskCache(  # an absolute path: the daemon moves to / later
        check_cache_dir(getattr(args, "cache_dir", None)),
        parse_size(getattr(args, "cache_size", "10G")),
    )
    store.cache = cache
    # The probe asks once: one still in its retries when the store came back would make the
    # first calls after the outage fail.
    endpoint = getattr(store.backend, "endpoint_url", None)
    # The same identity as the store's (a gateway's refreshing credentials, if it has them).
    same = {
        "credentials": getattr(store.backend, "credentials", None),
        "region": getattr(store.backend, "region", None),
    }
    probe = open_backend(store.url, endpoint_url=endpoint, **PROBE_S3_OPTIONS, **same)
    inner = store.backend
    if metrics is not None:
        from s3fsv.mount.metrics import MeteredBackend

        inner = MeteredBackend(inner, metrics)
    store.backend = GuardedBackend(inner, Outage(lambda: probe.head(MARKER)), owned=[probe])
    # A client's first request pays for its lazy setup (hundreds of ms on a busy machine),
    # which the first `status` would report as the store's round trip: pay it now, aside. (Not
    # for a mount without `status`, a run's own: there it only slows the run's start.)
    if getattr(args, "warm_probe", True):
        threading.Thread(
            target=_quietly, args=(probe.head, MARKER), name="s3fsv-probe-warmup", daemon=True
        ).start()
    spec = MountSpec(
        source.repo,
        source.ref,
        float(getattr(args, "ref_ttl", 5.0)),
        read_only=bool(getattr(args, "read_only", False)),
        rw=bool(getattr(args, "rw", False)),
    )
    return Filesystem(store, spec, cache, metrics=metrics)


def commit_staged(
    fs: Any, message: str, report: ExitReport | None = None
) -> dict[tuple[str, str], str | None]:
    """Commit every branch with staged writes; log each result (and add it to ``report``). A
    failure leaves that branch's staging as it was."""
    done: dict[tuple[str, str], str | None] = {}
    try:
        branches = list(fs.staged_branches())
    except Exception as err:
        log.error("cannot list staged branches: %s", err)
        return done
    for repo, branch in branches:
        try:
            cid = fs.commit_branch(repo, branch, message)
        except Exception as err:
            log.error("commit of %s@%s failed, its writes stay staged: %s", repo, branch, err)
            if report is not None:
                code = err.exit_code if isinstance(err, S3fsvError) else 1
                report.fail(f"commit of {repo}@{branch} failed: {err}", code)
            continue
        done[(repo, branch)] = cid
        log.info("committed %s@%s: %s", repo, branch, cid or "nothing staged")
        if report is not None and cid:
            report.lines.append(f"committed {repo}@{branch}: {cid}")
    return done


class IdleCommitter:
    """Commits each staged branch once it has had no write for ``idle`` seconds and no file is
    open for writing on it. A failed commit (conflict, store down) is retried with backoff."""

    def __init__(self, fs: Any, idle: float, poll: float = IDLE_POLL) -> None:
        self.fs = fs
        self.idle = idle
        self.poll = poll
        self.message = f"s3fsv: commit after {idle:g} s idle"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._retry_at: dict[tuple[str, str], tuple[float, float]] = {}  # -> (when, delay)
        self.committed: dict[tuple[str, str], tuple[int, str]] = {}  # -> (how many, last id)

    def summary(self) -> list[str]:
        """One line per branch this committer committed, for the exit report."""
        return [
            f"committed {repo}@{branch} {n} time(s) after {self.idle:g} s idle (last: {cid})"
            for (repo, branch), (n, cid) in sorted(self.committed.items())
        ]

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="s3fsv-idle-commit", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.poll):
            try:
                self.tick()
            except Exception:  # the thread must survive anything
                log.exception("idle commit check failed")

    def tick(self) -> None:
        """One pass over the staged branches."""
        now = time.monotonic()
        for key in self.fs.staged_branches():
            repo, branch = key
            if self._stop.is_set():
                return
            if self.fs.idle_seconds(repo, branch) < self.idle:
                continue
            if self.fs.has_open_writers(repo, branch):
                continue
            when, delay = self._retry_at.get(key, (0.0, 0.0))
            if now < when:
                continue
            try:
                cid = self.fs.commit_branch(repo, branch, self.message)
            except Exception as err:
                delay = min(IDLE_RETRY_MAX, max(2 * delay, 5.0))
                self._retry_at[key] = (now + delay, delay)
                log.error(
                    "idle commit of %s@%s failed (retry in %.0fs), its writes stay staged: %s",
                    repo,
                    branch,
                    delay,
                    err,
                )
                continue
            self._retry_at.pop(key, None)
            log.info("committed %s@%s after %gs idle: %s", repo, branch, self.idle, cid)
            if cid:
                self.committed[key] = (self.committed.get(key, (0, ""))[0] + 1, cid)


def fusermount_unmount(mp: Path) -> MountError | None:
    """Unmount ``mp`` with ``fusermount3 -u``: None once done, else the error to report (one
    that says so when programs still use the mount)."""
    result = subprocess.run(["fusermount3", "-u", str(mp)], capture_output=True, text=True)
    if result.returncode == 0:
        return None
    msg = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "failed"
    if "busy" in msg.lower():
        return MountError(
            f"cannot unmount {mp}: it is busy (a process has a file open or its working "
            "directory there)"
        )
    return MountError(f"cannot unmount {mp}: {msg}")


def unmount(mountpoint: str, timeout: float | None = None) -> int:
    """Unmount and wait for the daemon to exit (longer when it commits on unmount); print
    what it reported (commits made or failed, writes left staged). Returns the exit code."""
    mp = Path(mountpoint).absolute()
    table = mount_table()
    if table is None:
        if not os.path.ismount(mp):
            raise MountError(f"{mp} is not mounted")
    elif (there := mounted_at(table, mp)) is None:
        if not os.path.lexists(mp):
            raise MountError(f"{mp}: no such file or directory")
        raise MountError(f"{mp} is not mounted")
    elif not there.is_s3fsv:
        raise MountError(f"{mp} is not an s3fsv mount (it is {there.fstype}): use umount for it")
    mp = Path(os.path.realpath(mp))  # as the mount table and the daemon have it
    if is_dead(mp):  # its daemon is gone: its pid file is stale (the pid may be reused)
        _detach(mp)
        for stale in (pid_file(mp), socket_file(mp)):
            stale.unlink(missing_ok=True)
        return 0
    pid = None
    commits = False
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        info = json.loads(pid_file(mp).read_text())
        commits = info.get("commit_on") == "unmount"
        pid = int(info["pid"])
    if timeout is None:
        timeout = UNMOUNT_COMMIT_TIMEOUT if commits else UNMOUNT_TIMEOUT
    if (failure := fusermount_unmount(mp)) is not None:
        raise failure
    if pid is None:
        return 0
    start = time.monotonic()
    told = not commits
    while time.monotonic() < start + timeout:
        if not _alive(pid):
            report = take_report(exit_report_file(mp), pid)
            for line in report.lines if report else []:
                print(f"s3fsv: {line}", file=sys.stderr)
            return report.code if report else 0
        if not told and time.monotonic() > start + 1.0:
            print(f"s3fsv: committing staged writes (log: {log_file(mp)})", file=sys.stderr)
            told = True
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    print(f"s3fsv: the daemon did not finish in {timeout:g} s; see {log_file(mp)}", file=sys.stderr)
    return 1


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs. A zombie has finished: the daemon is not our child, and
    whoever adopted it may reap it late."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][:1]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def store_for_mount(
    text: str,
    store_flag: str | None,
    endpoint_flag: str | None,
    pinned: str | None = None,
    **s3: Any,
) -> tuple[Store, Source]:
    """``STORE[/REPO[@REF]]`` as a URL, or ``REPO[@REF]`` in the store that ``--store``,
    ``S3FSV_STORE`` or the config file names; ``pinned`` and ``s3`` (backend options such
    as a gateway's ``credentials``) as for :func:`parse_source`."""
    if "://" not in text:
        if not text or "/" in text:
            raise UsageError(
                f"{text!r} is neither a store URL (s3://BUCKET/PREFIX, file:///PATH, with an "
                "optional /REPO[@REF]) nor a REPO[@REF] of the store given by --store or "
                "S3FSV_STORE"
            )
        text = f"{store_url(store_flag).rstrip('/')}/{text}"
    return parse_source(text, endpoint_url(endpoint_flag), pinned, **s3)
