"""Tombstones: the record a purge leaves of what it erased, when, why and by whom.

One record per purge, ``STORE/_purges/<id>`` (ids sort by time). It holds the purge's path
patterns and attribute conditions, counts, the reason and the person, never file content or
the matching paths themselves, and what others need to act on it:

- ``rewritten``: old commit id -> new commit id, for every commit the purge replaced (mounts
  pinned to an old commit show the new one after their next refresh);
- ``evict``: the content ids (SHA-256) of the purged files' chunks, which every daemon that
  sees the tombstone deletes from its machine's cache;
- ``objects``: the store objects that held purged bytes (their chunks, the packs they were
  in), which ``gc`` deletes once nothing reaches them, without waiting for the grace period.

``state`` is ``started`` while the purge runs and ``done`` after it; a purge that died in
between is visible as such. ``audit_sinks`` is where an audit trail subscribes: each callable
gets the final tombstone (an access layer's ``audit log`` records purges through it).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from s3fsv.errors import S3fsvError
from s3fsv.store.records import Record, Records
from s3fsv.store.tombstones import NAMESPACE, condemned, records, tombstones

__all__ = [
    "NAMESPACE",
    "audit_sinks",
    "condemned",
    "new_id",
    "publish",
    "records",
    "summary",
    "tombstones",
]

log = logging.getLogger(__name__)

audit_sinks: list[Callable[[dict[str, Any]], None]] = []


def new_id() -> str:
    """A tombstone id: UTC time to the second, then random, so names sort by time."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{uuid.uuid4().hex[:8]}"


def publish(store: Records, tid: str, value: dict[str, Any], etag: str | None) -> Record:
    """Create (``etag`` None) or update the tombstone; tell the audit sinks when it is done."""
    if etag is None:
        return Record(value, store.create(tid, value))
    record = Record(value, store.replace(tid, value, etag))
    if value.get("state") == "done":
        for sink in audit_sinks:
            try:
                sink(value)
            except S3fsvError as err:  # the purge happened: a sink's failure must not hide it
                log.error("audit sink failed to record purge %s: %s", tid, err)
    return record


def summary(value: dict[str, Any]) -> dict[str, Any]:
    """A tombstone without its id lists: what people read (``purge --list``)."""
    hidden = {"rewritten", "evict", "objects"}
    return {k: v for k, v in value.items() if k not in hidden}
