"""Who runs a pipeline's jobs right now: a lease held by compare-and-swap.

Jobs of one pipeline run one at a time and in input-commit order, because each job's
incremental plan starts from the previous job's result. So a runner (``pipeline run``, a
watcher, ``pipeline finish``) first takes the pipeline's lease: a record naming its owner and
an expiry, created write-once or replaced over the etag it read. The owner renews it from a
thread; a lease that expired, or whose owner on this same host is no longer alive (``kill
-9``), may be taken over at once. Before a runner moves the output branch it renews the lease
once more, so a runner that lost it (paused past expiry) does not commit.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from typing import Any

from s3fsv.errors import AlreadyExists, NotFound, PreconditionFailed, S3fsvError
from s3fsv.store.records import Records

LEASE_MS = 30_000


class LeaseLost(S3fsvError):
    """Another runner holds, or took over, the pipeline's lease."""

    exit_code = 5


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _start_time(pid: int) -> str:
    """A live process's start time in clock ticks since boot: with the pid, it names one
    process even after the pid is reused. "" for no such process, or a zombie (killed, not
    yet reaped by its parent)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return ""
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return ""
    return fields[19]


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def me() -> dict[str, Any]:
    """This process, as a lease (or any claim) names its owner: host, pid, start time, boot."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "start": _start_time(pid), "boot": _boot_id()}


def owner_gone(owner: dict[str, Any]) -> bool:
    """Whether the owner is known dead: it ran on this host (this boot) and its process is
    gone. An owner on another host is only ever taken over once its lease expires."""
    if owner.get("host") != socket.gethostname() or owner.get("boot") != _boot_id():
        return False
    pid = owner.get("pid")
    return not isinstance(pid, int) or _start_time(pid) != owner.get("start")


class Lease:
    """The lease on one pipeline. Use ``acquire`` (or ``hold`` as a context manager)."""

    def __init__(self, records: Records, pipeline: str, ms: int = LEASE_MS) -> None:
        self.records = records
        self.name = f"leases/{pipeline}"
        self.ms = ms
        self.owner = me()
        self._etag: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = False

    def _value(self) -> dict[str, Any]:
        return {"owner": self.owner, "expires_ms": _now_ms() + self.ms}

    def try_acquire(self) -> bool:
        """Take the lease if it is free, expired or its owner died; False if it is held."""
        try:
            self._etag = self.records.create(self.name, self._value())
        except AlreadyExists:
            current = self.records.find(self.name)
            if current is None:
                return self.try_acquire()
            held = current.value
            if held.get("owner") == self.owner:
                pass
            elif held.get("expires_ms", 0) > _now_ms() and not owner_gone(held.get("owner", {})):
                return False
            try:
                self._etag = self.records.replace(self.name, self._value(), current.etag)
            except (PreconditionFailed, NotFound):
                return False
        self.lost = False
        self._stop.clear()
        self._thread = threading.Thread(target=self._renew_loop, name="s3fsv-lease", daemon=True)
        self._thread.start()
        return True

    def renew(self) -> None:
        """Extend the lease now; ``LeaseLost`` if another runner took it."""
        with self._lock:
            if self.lost or self._etag is None:
                raise LeaseLost(f"lost the lease on {self.name}: another runner took over")
            try:
                self._etag = self.records.replace(self.name, self._value(), self._etag)
            except (PreconditionFailed, NotFound):
                self.lost = True
                raise LeaseLost(
                    f"lost the lease on {self.name}: another runner took over"
                ) from None

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ms / 3000):
            try:
                self.renew()
            except LeaseLost:
                return
            except S3fsvError:
                continue  # the store is unreachable for now: try again, the lease may hold

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock, contextlib.suppress(S3fsvError):
            if self._etag is not None and not self.lost:
                # Expired rather than deleted: a delete could remove a successor's lease.
                value = {"owner": self.owner, "expires_ms": 0}
                self.records.replace(self.name, value, self._etag)
        self._etag = None
