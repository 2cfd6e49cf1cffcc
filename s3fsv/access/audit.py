"""The audit trail: ``STORE/_audit/log/``, a hash chain (:mod:`s3fsv.access.chain`) of one
record per mutation and per credential or URL the gateway issues.

A record is canonical JSON with ``seq``, ``prev_hash``, ``time`` (UTC), ``principal``,
``session`` (the STS session name, or ``direct`` for the store's own credentials),
``action``, and as they apply ``repo``, ``ref``, ``old`` and ``new`` (commit ids),
``objects`` (hashes written: a commit and its tree), ``scope`` and ``expires`` (what issued
credentials allow, until when), ``detail``, and ``tool``, ``version`` and ``host``.

Record 0 (``audit.init``) switches the trail on for the store and says how long records are
locked (``retain_days``) and whether the store locks them (``locked``: an S3 bucket with
Object Lock, in compliance mode). Without it nothing is recorded, so stores that never use
access control pay nothing.

Who writes: a process using the store's own credentials appends directly; a process that got
its credentials from a gateway sends its records to the gateway, which stamps them with the
principal its token stands for (:class:`s3fsv.access.client.GatewaySink`). Compiled policies
give nobody ``DeleteObject`` below ``_audit/``.

Other layers record through the store's events: ``store.record_event("run.start", ...)`` (the
API; what ``s3fsv.runs`` uses, being a sibling layer) or :func:`record` here.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from s3fsv.access.chain import Chain, Verdict
from s3fsv.access.identity import current_principal, stamp
from s3fsv.config import parse_duration
from s3fsv.errors import AlreadyExists, UsageError
from s3fsv.store.events import Event, Events
from s3fsv.store.records import Records
from s3fsv.store.repo import utc_now

log = logging.getLogger(__name__)

NAMESPACE = "audit"
DEFAULT_RETAIN_DAYS = 7 * 365
RECHECK_SECONDS = 60.0
FIELDS = ("repo", "ref", "old", "new", "objects", "scope", "expires")

Sink = Callable[[dict[str, Any]], None]
"""Takes one record's fields (``action``, ``repo``... ``detail``) and has it written."""


class AuditTrail:
    """The trail of one store. Thread-safe."""

    def __init__(self, records: Records) -> None:
        self.chain = Chain(records, "log")
        self._settings: dict[str, Any] | None = None
        self._checked: float | None = None
        self._lock = threading.Lock()

    # -- switching on -------------------------------------------------------------------------
    def enabled(self) -> bool:
        """Whether record 0 exists (checked again at most once a minute while it does not)."""
        with self._lock:
            now = time.monotonic()
            stale = self._checked is None or now - self._checked > RECHECK_SECONDS
            if self._settings is None and stale:
                self._checked = now
                if self.chain.exists(0):
                    self._settings = self.chain.read(0)
            return self._settings is not None

    def init(self, retain_days: int = DEFAULT_RETAIN_DAYS) -> dict[str, Any]:
        """Write record 0 (``AlreadyExists`` when the trail is on already)."""
        if retain_days < 1:
            raise UsageError("records must be kept at least one day")
        if self.chain.exists(0):
            raise AlreadyExists("the audit trail of this store is on already")
        locks = getattr(self.chain.records.backend, "object_lock_enabled", None)
        locked = bool(locks()) if locks is not None else False
        body = {
            "action": "audit.init",
            "time": utc_now(),
            "principal": current_principal(),
            "session": "direct",
            "detail": {"retain_days": retain_days, "locked": locked},
            **stamp(),
        }
        record = self.chain.append(body, retain_until=_until(retain_days) if locked else None)
        with self._lock:
            self._settings = record
        return record

    def settings(self) -> Mapping[str, Any]:
        if not self.enabled():
            raise UsageError("the audit trail is off for this store: s3fsv audit init")
        assert self._settings is not None
        return self._settings["detail"]

    # -- writing ------------------------------------------------------------------------------
    def append(
        self, fields: Mapping[str, Any], *, principal: str, session: str
    ) -> dict[str, Any] | None:
        """Record ``fields`` (``action`` and the optional ones) as done by ``principal`` in
        ``session``; None (nothing written) when the trail is off."""
        if not self.enabled():
            return None
        body: dict[str, Any] = {
            "action": str(fields["action"]),
            "time": utc_now(),
            "principal": principal,
            "session": session,
            **stamp(),
        }
        for name in FIELDS:
            if fields.get(name) is not None:
                body[name] = fields[name]
        if fields.get("detail"):
            body["detail"] = dict(fields["detail"])
        conf = self.settings()
        until = _until(int(conf["retain_days"])) if conf.get("locked") else None
        return self.chain.append(body, retain_until=until)

    # -- reading ------------------------------------------------------------------------------
    def verify(self, expect: tuple[int, str] | None = None) -> Verdict:
        return self.chain.verify(expect=expect)

    def query(
        self,
        *,
        repo: str | None = None,
        principal: str | None = None,
        since: datetime | None = None,
        action: str | None = None,
    ) -> list[dict[str, Any]]:
        """Records matching every filter given, oldest first. ``repo`` matches records about
        the repo and credentials whose scope names it; ``action`` matches a prefix
        (``gateway.`` for everything the gateway issued)."""
        stamp_since = since.astimezone(timezone.utc) if since is not None else None
        out = []
        for rec in self.chain.all():
            if principal is not None and rec.get("principal") != principal:
                continue
            if action is not None and not str(rec.get("action", "")).startswith(action):
                continue
            if repo is not None and not _about(rec, repo):
                continue
            if stamp_since is not None and _time(rec) < stamp_since:
                continue
            out.append(rec)
        return out


def _about(rec: Mapping[str, Any], repo: str) -> bool:
    if rec.get("repo") == repo:
        return True
    scope = rec.get("scope") or []
    return any(isinstance(s, str) and s.split(" ")[2:3] == [repo] for s in scope)


def _time(rec: Mapping[str, Any]) -> datetime:
    try:
        return datetime.fromisoformat(str(rec.get("time", "")).replace("Z", "+00:00"))
    except ValueError:
        return datetime.min.replace(tzinfo=timezone.utc)


def _until(days: int) -> datetime:
    return datetime.now(timezone.utc) + timedelta(days=days)


# -- hooking the trail to a store's changes --------------------------------------------------


def event_fields(event: Event) -> dict[str, Any]:
    """An event as record fields: a commit's hashes go to ``objects``, the rest to detail."""
    detail = dict(event.detail)
    fields: dict[str, Any] = {"action": event.action, "repo": event.repo, "ref": event.ref}
    fields.update(old=event.old, new=event.new)
    if event.action == "commit" and event.new:
        tree = detail.pop("tree", None)
        fields["objects"] = [event.new] + ([tree] if tree else [])
    for name in ("scope", "expires"):
        if name in detail:
            fields[name] = detail.pop(name)
    fields["detail"] = detail
    return fields


def direct_sink(trail: AuditTrail, principal: str | None = None, session: str = "direct") -> Sink:
    """Records written straight to the store, as ``principal`` (default: this user)."""
    who = principal or current_principal()

    def sink(fields: dict[str, Any]) -> None:
        trail.append(fields, principal=who, session=session)

    return sink


def attach(events: Events, sink: Sink) -> Callable[[Event], None]:
    """Have every event of ``events`` written by ``sink``; returns the observer (for
    ``events.unsubscribe``). Failures are logged, never raised: the change they describe
    has happened already."""

    def observe(event: Event) -> None:
        try:
            sink(event_fields(event))
        except Exception as err:
            log.error("audit record of %s on %s not written: %s", event.action, event.repo, err)

    events.subscribe(observe)
    return observe


def record(store: Any, action: str, **fields: Any) -> None:
    """Record ``action`` through ``store`` (an ``s3fsv.api.Store``): what layers above the
    access layer call (``record(store, "pipeline.job", repo=..., new=...)``). Written when the
    store's trail is on and a sink is attached (``s3fsv.access.connect`` attaches one)."""
    store.record_event(action, **fields)


def parse_since(text: str) -> datetime:
    """``2026-05-01``, ``2026-05-01T12:00:00Z`` (UTC unless it says otherwise) or a span back
    from now (:func:`s3fsv.config.parse_duration`: ``90m``, ``12h``, ``7d``). A date or time is
    tried first, so what reads as one (``20260501``) is one."""
    text = text.strip()
    with contextlib.suppress(ValueError):
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return when if when.tzinfo else when.replace(tzinfo=timezone.utc)
    try:
        span = parse_duration(text)
    except UsageError:
        raise UsageError(f"bad time {text!r}: use 2026-05-01, an ISO time, or 90m/12h/7d") from None
    return datetime.now(timezone.utc) - timedelta(seconds=span)


def _brief(value: Any) -> str:
    """A detail value for one line: long lists cut to their first three items."""
    if isinstance(value, list):
        shown = ",".join(str(v) for v in value[:3])
        return f"[{shown}{f',+{len(value) - 3} more' if len(value) > 3 else ''}]"
    return str(value)


def summarize(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """One line per record, for people: time, who, what, where."""
    lines = []
    for rec in records:
        where = rec.get("repo") or ""
        if rec.get("ref"):
            where += f"@{rec['ref']}"
        if rec.get("old") or rec.get("new"):
            where += f" {(rec.get('old') or '-')[:12]}->{(rec.get('new') or '-')[:12]}"
        extra = ""
        if rec.get("scope"):
            extra += " scope=[" + "; ".join(rec["scope"]) + "]"
        if rec.get("expires"):
            extra += f" until {rec['expires']}"
        detail = rec.get("detail") or {}
        if detail:
            extra += " " + " ".join(f"{k}={_brief(v)}" for k, v in sorted(detail.items()))
        who = rec.get("principal", "?")
        if rec.get("session") not in (None, "direct", who):
            who += f"/{rec['session']}"
        lines.append(
            f"{rec.get('seq', '?'):>6} {rec.get('time', '?')[:19]} {who:<16} "
            f"{rec.get('action', '?'):<22} {where}{extra}".rstrip()
        )
    return lines
