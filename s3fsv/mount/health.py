"""What ``s3fsv status MOUNTPOINT`` reports about a running mount: whether the store answers
and how fast, what the mount shows (a pinned commit, or a branch and its head), cache use
against its bound, staged changes, the last error and when it happened, uptime and version.

The daemon builds one :class:`Health` and the control socket's ``status`` request on the mount
root returns :meth:`Health.report`. The last error is the latest of: a log record at ERROR or
above (an ``EIO``, a failed commit) and a store failure seen by the outage breaker.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import datetime, timezone
from typing import Any

from s3fsv.mount.outage import Outage
from s3fsv.version import __version__

CHECK_TIMEOUT = 5.0  # seconds status waits for its own round trip to the store


def iso(when: float) -> str:
    return datetime.fromtimestamp(when, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class LastError(logging.Handler):
    """Remembers the last record at ERROR or above (without taking the handler lock on the
    way: ``handle`` is overridden, one tuple assignment is the whole state change)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.last: tuple[float, str] | None = None

    def handle(self, record: logging.LogRecord) -> bool:
        if record.levelno >= self.level:
            self.last = (record.created, _one_line(record.getMessage()))
        return True

    def emit(self, record: logging.LogRecord) -> None:
        self.handle(record)


def _one_line(text: str) -> str:
    return " ".join(text.split())


class Health:
    """The daemon's health report. ``fs`` is the mount's ``vfs.Filesystem``, ``outage`` the
    breaker its store requests go through (None for a store that cannot be out)."""

    def __init__(
        self,
        fs: Any,
        outage: Outage | None,
        *,
        mountpoint: str,
        source: str,
        commit_on: str,
    ) -> None:
        self.fs = fs
        self.outage = outage
        self.mountpoint = mountpoint
        self.source = source
        self.commit_on = commit_on
        self.started = time.time()
        self.errors = LastError()
        self.metrics_address: str | None = None
        self._checked: tuple[float, float | None, str | None] | None = None

    def report(self) -> dict[str, Any]:
        """The status of the mount, as JSON-ready values (times in UTC, ISO 8601)."""
        now = time.time()
        cache = self.fs.cache
        return {
            "mountpoint": self.mountpoint,
            "source": self.source,
            "pid": os.getpid(),
            "version": __version__,
            "started": iso(self.started),
            "uptime_s": round(now - self.started, 1),
            "view": self.view(),
            "store": self.store(),
            "cache": {
                "dir": str(cache.root),
                "used_bytes": cache.usage(),
                "limit_bytes": cache.max_bytes,
            },
            "staged": self.fs.staged_summary(),
            "last_error": self.last_error(),
            "commit_on": self.commit_on,
            "metrics": self.metrics_address,
        }

    def view(self) -> dict[str, Any]:
        """What the mount shows: a pinned commit, one branch and its head, or a repo or the
        whole store (with the branch heads this mount has read)."""
        fs = self.fs
        spec = fs.spec
        if fs.fixed is not None and fs.immutable:
            return {"kind": "commit", "repo": spec.repo, "ref": spec.ref, "commit": fs.fixed.commit}
        if fs.fixed is not None:
            return {
                "kind": "branch",
                "repo": spec.repo,
                "branch": spec.ref,
                "head": fs.known_heads().get((spec.repo, spec.ref), fs.fixed.commit),
                "writable": not spec.read_only and spec.rw,
            }
        heads = {f"{r}@{b}": head for (r, b), head in sorted(fs.known_heads().items())}
        kind = "repo" if spec.repo is not None else "store"
        return {"kind": kind, "repo": spec.repo, "heads": heads}

    def store(self) -> dict[str, Any]:
        """One round trip to the store now (bounded by ``CHECK_TIMEOUT``: a store that does
        not answer by then is reported so), and the outage breaker's view."""
        out: dict[str, Any] = {"url": self.fs.store.url}
        if self.outage is None:
            return {**out, "reachable": True, "rtt_ms": None, "outage": None, "outages": 0}
        result: list[tuple[Any, float]] = []
        probe = threading.Thread(
            target=lambda: result.append(self.outage.check()),  # type: ignore[union-attr]
            name="s3fsv-status-probe",
            daemon=True,
        )
        probe.start()
        probe.join(CHECK_TIMEOUT)
        if result:
            error, took = result[0]
            out["reachable"] = error is None
            out["rtt_ms"] = round(took * 1000, 1) if error is None else None  # no round trip
            out["error"] = None if error is None else str(error)
        else:
            out["reachable"] = False
            out["rtt_ms"] = None
            out["error"] = f"no answer within {CHECK_TIMEOUT:g} s"
        since = self.outage.down_since
        out["outage"] = None if since is None else {"since": iso(since)}
        if since is not None and self.outage.last_failure is not None:
            out["outage"]["error"] = self.outage.last_failure[1]
        out["outages"] = self.outage.outages
        return out

    def last_error(self) -> dict[str, str] | None:
        candidates = [self.errors.last]
        if self.outage is not None:
            candidates.append(self.outage.last_failure)
        found = [c for c in candidates if c is not None]
        if not found:
            return None
        when, message = max(found)
        return {"time": iso(when), "message": message}
