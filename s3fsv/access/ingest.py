"""The engine's own request logs folded into the audit trail: ``s3fsv audit receive`` takes
SeaweedFS's fluent-forward stream (``-s3.auditLogConfig``) and appends each request to a JSON
lines file; ``s3fsv audit ingest FILE`` reads what was added since the last ingest of that
file and appends summary records to the trail.

Accepted lines: SeaweedFS access records (``requester_arn``, ``operation``, ``bucket``,
``key``, ``status``, ``time``), as ``audit receive`` writes them or as a fluentd/fluent-bit
file output does, and CloudTrail data events (``eventName``, ``userIdentity.arn``,
``requestParameters.bucketName``/``key``, ``eventTime``), one per line or as a CloudTrail
file's ``{"Records": [...]}``.

Only requests on the store's bucket below its prefix are kept. They are grouped by principal
(the STS session name, i.e. the principal the gateway issued the credentials to, or the IAM
user), repo, kind (``engine.read``, ``engine.write``, ``engine.delete``, ``engine.list``)
and outcome (``.refused`` for 401 and 403, ``.failed`` for other errors, such as a 404), one
record per group (and per 200 keys), with the keys, the count, the status
codes and the first and last request time. A cursor per file (``_audit/ingest/<id>``,
compare-and-swap) makes a second ingest of the same file add only what is new.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from s3fsv.access.audit import NAMESPACE, AuditTrail
from s3fsv.access.policy import Location
from s3fsv.api import Store
from s3fsv.errors import AlreadyExists, PreconditionFailed, UsageError

log = logging.getLogger(__name__)

KEYS_PER_RECORD = 200
_KINDS = {"GET": "read", "HEAD": "read", "PUT": "write", "POST": "write", "DELETE": "delete"}
_TRAIL_ACTIONS = {
    "GetObject": "read",
    "HeadObject": "read",
    "PutObject": "write",
    "CopyObject": "write",
    "CompleteMultipartUpload": "write",
    "DeleteObject": "delete",
    "DeleteObjects": "delete",
    "ListObjects": "list",
    "ListObjectsV2": "list",
}


def _parse_line(line: str) -> Iterator[dict[str, Any]]:
    """The requests in one line, each as {time, principal, op, bucket, key, status}."""
    try:
        value = json.loads(line)
    except ValueError:
        return
    if isinstance(value, list) and len(value) >= 3 and isinstance(value[2], dict):
        value = value[2]  # [tag, time, record, ...] as fluent forwards it
    items = value.get("Records") if isinstance(value, dict) and "Records" in value else [value]
    for item in items or ():
        if not isinstance(item, dict):
            continue
        if "eventName" in item:
            found = _cloudtrail(item)
        elif "operation" in item:
            found = _seaweed(item)
        else:
            found = None
        if found is not None:
            yield found


def _seaweed(rec: dict[str, Any]) -> dict[str, Any] | None:
    parts = str(rec.get("operation", "")).split(".")  # REST.GET.OBJECT
    if len(parts) < 3:
        return None
    kind = _KINDS.get(parts[1])
    if kind == "read" and not rec.get("key"):
        kind = "list"  # a bucket-level GET
    if kind is None:
        return None
    who = str(rec.get("requester_arn") or rec.get("requester") or "?")
    return {
        "time": int(rec.get("time") or 0),
        "principal": who.rsplit("/", 1)[-1],
        "op": str(rec["operation"]),
        "bucket": str(rec.get("bucket", "")),
        "key": str(rec.get("key", "")).lstrip("/"),
        "status": int(rec.get("status") or 0),
    }


def _cloudtrail(rec: dict[str, Any]) -> dict[str, Any] | None:
    kind = _TRAIL_ACTIONS.get(str(rec.get("eventName")))
    if kind is None:
        return None
    params = rec.get("requestParameters") or {}
    who = str((rec.get("userIdentity") or {}).get("arn") or "?")
    try:
        when = datetime.fromisoformat(str(rec.get("eventTime")).replace("Z", "+00:00"))
    except ValueError:
        return None
    return {
        "time": int(when.timestamp()),
        "principal": who.rsplit("/", 1)[-1],
        "op": str(rec["eventName"]),
        "bucket": str(params.get("bucketName", "")),
        "key": str(params.get("key", "")),
        "status": 403 if rec.get("errorCode") == "AccessDenied" else 200,
    }


def _kind(op: str, key: str) -> str:
    if op in _TRAIL_ACTIONS:
        return _TRAIL_ACTIONS[op]
    parts = op.split(".")
    kind = _KINDS.get(parts[1] if len(parts) > 1 else "", "read")
    return "list" if kind == "read" and not key else kind


def _outcome(status: int) -> str:
    """ "" for success, ".refused" for 401/403, ".failed" for any other answer."""
    if 200 <= status < 300:
        return ""
    return ".refused" if status in (401, 403) else ".failed"


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat().replace("+00:00", "Z")


def summarize(requests: Iterable[dict[str, Any]], where: Location) -> list[dict[str, Any]]:
    """Audit record fields for the requests on ``where``'s keys, grouped (module docstring)."""
    groups: dict[tuple[str, str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for req in requests:
        if req["bucket"] != where.bucket:
            continue
        key = req["key"]
        if key and not key.startswith(where.prefix):
            continue
        rest = key[len(where.prefix) :]
        top, slash, below = rest.partition("/")
        repo = (below.partition("/")[0] if top == "_uploads" else top) if slash else ""
        groups[(req["principal"], repo, _kind(req["op"], key), _outcome(req["status"]))].append(req)
    out = []
    for (principal, repo, kind, outcome), reqs in sorted(groups.items()):
        reqs.sort(key=lambda r: r["time"])
        keys = sorted({r["key"][len(where.prefix) :] for r in reqs if r["key"]})
        for start in range(0, max(len(keys), 1), KEYS_PER_RECORD):
            out.append(
                {
                    "principal": principal,
                    "action": f"engine.{kind}{outcome}",
                    "repo": repo or None,
                    "detail": {
                        "count": len(reqs),
                        "statuses": sorted({r["status"] for r in reqs}),
                        "operations": sorted({r["op"] for r in reqs}),
                        "keys": keys[start : start + KEYS_PER_RECORD],
                        "first": _iso(reqs[0]["time"]),
                        "last": _iso(reqs[-1]["time"]),
                    },
                }
            )
    return out


def ingest_files(store: Store, paths: list[Path]) -> int:
    """Fold what each file gained since its last ingest into the trail; return how many
    requests were read."""
    trail = AuditTrail(store.records(NAMESPACE))
    if not trail.enabled():
        raise UsageError("the audit trail is off for this store: s3fsv audit init")
    where = Location.of(store.url)
    records = store.records(NAMESPACE)
    total = 0
    for path in paths:
        name = "ingest/" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
        cursor = records.find(name)
        offset = int(cursor.value["offset"]) if cursor is not None else 0
        try:
            with open(path, "rb") as fh:
                fh.seek(offset)
                data = fh.read()
        except OSError as err:
            raise UsageError(f"cannot read {path}: {err.strerror or err}") from None
        whole = data[: data.rfind(b"\n") + 1]  # a line still being written waits
        requests = [r for line in whole.decode().splitlines() for r in _parse_line(line)]
        for fields in summarize(requests, where):
            principal = fields.pop("principal")
            fields["detail"]["source"] = path.name
            trail.append(fields, principal=principal, session=principal)
        value = {"path": str(path.resolve()), "offset": offset + len(whole)}
        try:
            if cursor is None:
                records.create(name, value)
            else:
                records.replace(name, value, cursor.etag)
        except (AlreadyExists, PreconditionFailed):
            raise UsageError(f"{path} was ingested by someone else meanwhile") from None
        total += len(requests)
    return total


def receive(host: str, port: int, out: Path, stop: threading.Event) -> None:
    """Accept fluent-forward connections on ``host:port`` and append each event's record
    as one JSON line to ``out`` (made 0600) until ``stop`` is set."""
    import msgpack

    lock = threading.Lock()
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    sink = os.fdopen(fd, "a")
    server = socket.create_server((host, port))
    server.settimeout(0.5)

    def serve(conn: socket.socket) -> None:
        unpacker = msgpack.Unpacker(raw=False, ext_hook=lambda code, data: None)
        conn.settimeout(0.5)
        with conn:
            while not stop.is_set():
                try:
                    chunk = conn.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not chunk:
                    return
                unpacker.feed(chunk)
                for message in unpacker:
                    for record in _events(message):
                        with lock:
                            sink.write(json.dumps(record, default=str) + "\n")
                            sink.flush()

    try:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            threading.Thread(target=serve, args=(conn,), daemon=True).start()
    finally:
        server.close()
        sink.close()


def _events(message: Any) -> Iterator[dict[str, Any]]:
    """The records of one fluent-forward message: [tag, time, record] (message mode) or
    [tag, [[time, record], ...]] (forward mode)."""
    if not isinstance(message, list) or len(message) < 2:
        return
    if isinstance(message[1], list):
        for entry in message[1]:
            if isinstance(entry, list) and len(entry) >= 2 and isinstance(entry[1], dict):
                yield entry[1]
    elif len(message) >= 3 and isinstance(message[2], dict):
        yield message[2]
