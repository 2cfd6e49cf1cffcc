"""An importer's cursor: which objects of a prefix are imported, kept in the store.

Records under ``STORE/_imports/<cursor>/`` (one cursor per source prefix and target):

- ``head`` (compare-and-swap): the source, the target and ``next``, the number of the next
  batch to claim (a hint: claims themselves are the truth, see below);
- ``batches/<NNNNNNNN>`` (created once, then replaced by compare-and-swap): a **claim** of
  some objects, by key and ETag, made by one importer (``owner``, ``expires_ms``) on top of
  the branch head it read (``base``); once committed, the commit id.

Exactly once. A claim is created write-once under the next free number, by an importer that
has read every earlier batch: so no object (key and ETag) is ever in two batches. The batch's
commit is made on top of the claim's ``base``: a second commit of the same paths after it
(another importer that took the claim over) is a conflict, never a second import. A claim
whose owner died (same host: at once; elsewhere: when it expires) is taken over by compare-
and-swap; the taker first looks for the batch's commit on the branch (its provenance names
the cursor and the batch), and imports the batch only when it is not there.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from s3fsv.errors import AlreadyExists, NotFound, PreconditionFailed, S3fsvError
from s3fsv.pipelines.lease import me, owner_gone
from s3fsv.store.backend.base import SourceObject
from s3fsv.store.objects import canonical_json
from s3fsv.store.records import Record, Records
from s3fsv.store.repo import utc_now

NAMESPACE = "imports"
CLAIM_MS = 60_000
RENEW_S = 10.0


class ClaimLost(S3fsvError):
    """Another importer took this batch over (this one was paused past its claim)."""

    exit_code = 5


def cursor_id(source_url: str, repo: str, branch: str, path: str) -> str:
    """The cursor of one source prefix imported into one place: a stable name."""
    digest = hashlib.sha256(canonical_json([source_url, repo, branch, path])).hexdigest()
    return f"{repo}.{branch}.{digest[:16]}"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class Claim:
    """A batch this importer holds: its number, its objects (key -> ETag), the branch head it
    is meant for, and the etag of its record (for the compare-and-swaps that follow)."""

    number: int
    objects: dict[str, str]
    base: str
    etag: str
    value: dict[str, Any] = field(default_factory=dict)
    lost: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


class Cursor:
    """One cursor's records, and what this process has read of them."""

    def __init__(self, records: Records, cid: str, about: dict[str, Any]) -> None:
        self.records = records
        self.id = cid
        self.about = about
        self.seen: dict[str, set[str]] = {}  # key -> ETags claimed by some batch
        self.open: dict[int, Record] = {}  # batches without a commit, as last read
        self.loaded = 0  # batches 0..loaded-1 have been read

    def _batch(self, n: int) -> str:
        return f"{self.id}/batches/{n:08d}"

    def _take_in(self, n: int, record: Record) -> None:
        for key, etag in record.value["objects"].items():
            self.seen.setdefault(key, set()).add(etag)
        if record.value.get("commit"):
            self.open.pop(n, None)
        else:
            self.open[n] = record

    def refresh(self) -> None:
        """Read the batches claimed since the last refresh (and re-read the open ones)."""
        head = self.records.find(f"{self.id}/head")
        if head is None:
            value = {**self.about, "next": 0, "created": utc_now()}
            with suppress(AlreadyExists):
                self.records.create(f"{self.id}/head", value)
            hint = 0
        else:
            hint = int(head.value.get("next", 0))
        for n in list(self.open):
            record = self.records.find(self._batch(n))
            if record is not None:
                self._take_in(n, record)
        while True:
            record = self.records.find(self._batch(self.loaded))
            if record is None and self.loaded >= hint:
                return
            if record is not None:
                self._take_in(self.loaded, record)
            self.loaded += 1

    def is_new(self, obj: SourceObject) -> bool:
        return obj.etag not in self.seen.get(obj.key, ())

    def claim(self, objects: list[SourceObject], base: str) -> Claim | None:
        """Claim ``objects`` (those no batch holds yet) as the next batch; None when every one
        of them turned out to be claimed by another importer meanwhile."""
        wanted = [o for o in objects if self.is_new(o)]
        while wanted:
            n = self.loaded
            value = {
                "objects": {o.key: o.etag for o in wanted},
                "owner": me(),
                "expires_ms": _now_ms() + CLAIM_MS,
                "base": base,
                "first_base": base,  # takers search the branch for its commit back to here
                "claimed": utc_now(),
                "commit": None,
            }
            try:
                etag = self.records.create(self._batch(n), value)
            except AlreadyExists:  # another importer got number n first: skip what it holds
                self._take_in(n, self.records.get(self._batch(n)))
                self.loaded = n + 1
                wanted = [o for o in wanted if self.is_new(o)]
                continue
            self.loaded = n + 1
            claim = Claim(n, value["objects"], base, etag, value)
            self._take_in(n, Record(value, etag))
            self._advance_head(n + 1)
            return claim
        return None

    def _advance_head(self, following: int) -> None:
        """Move ``head.next`` up to ``following`` (never down); a hint for readers, so losing
        the race to a newer value is fine."""
        for _ in range(10):
            head = self.records.find(f"{self.id}/head")
            if head is None or int(head.value.get("next", 0)) >= following:
                return
            try:
                value = {**head.value, "next": following}
                self.records.replace(f"{self.id}/head", value, head.etag)
                return
            except PreconditionFailed:
                continue

    def stale(self) -> Iterator[tuple[int, Record]]:
        """Open batches whose owner is gone (died on this host) or whose claim expired."""
        for n, record in sorted(self.open.items()):
            owner = record.value.get("owner", {})
            if owner == me():
                continue
            if record.value.get("expires_ms", 0) < _now_ms() or owner_gone(owner):
                yield n, record

    def take_over(self, n: int, record: Record, base: str) -> Claim | None:
        """Claim batch ``n`` from its dead or expired owner; None when someone else did."""
        value = {**record.value, "owner": me(), "expires_ms": _now_ms() + CLAIM_MS, "base": base}
        try:
            etag = self.records.replace(self._batch(n), value, record.etag)
        except (PreconditionFailed, NotFound):
            return None
        self.open[n] = Record(value, etag)
        return Claim(n, dict(value["objects"]), base, etag, value)

    def renew(self, claim: Claim) -> None:
        """Extend the claim; ``ClaimLost`` when another importer took it over."""
        with claim.lock:
            if claim.lost:
                raise ClaimLost(f"batch {claim.number} of import {self.id} was taken over")
            value = {**claim.value, "expires_ms": _now_ms() + CLAIM_MS}
            try:
                claim.etag = self.records.replace(self._batch(claim.number), value, claim.etag)
                claim.value = value
            except (PreconditionFailed, NotFound):
                claim.lost = True
                raise ClaimLost(
                    f"batch {claim.number} of import {self.id} was taken over"
                ) from None

    @contextmanager
    def holding(self, claim: Claim) -> Iterator[Claim]:
        """Keep ``claim`` alive (renewed from a thread) while the batch is worked on."""
        stop = threading.Event()

        def renew_loop() -> None:
            while not stop.wait(RENEW_S):
                try:
                    self.renew(claim)
                except ClaimLost:
                    return
                except S3fsvError:
                    continue  # the store is unreachable for now; the claim may still hold

        thread = threading.Thread(target=renew_loop, name="s3fsv-import-claim", daemon=True)
        thread.start()
        try:
            yield claim
        finally:
            stop.set()
            thread.join()

    def finish(self, claim: Claim, commit: str, imported: int, skipped: list[str]) -> None:
        """Record the batch's commit; ``ClaimLost`` when another importer took it over (its
        own record of the same commit, or of the one it found, stands)."""
        with claim.lock:
            value = {
                **claim.value,
                "commit": commit,
                "imported": imported,
                "skipped": skipped,
                "expires_ms": 0,
            }
            try:
                self.records.replace(self._batch(claim.number), value, claim.etag)
            except (PreconditionFailed, NotFound):
                claim.lost = True
                raise ClaimLost(
                    f"batch {claim.number} of import {self.id} was taken over"
                ) from None
        self.open.pop(claim.number, None)

    def batches(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """Every batch record, in order (for ``import --status`` and purges)."""
        for name in self.records.names(f"{self.id}/batches"):
            yield int(name.rsplit("/", 1)[-1]), self.records.get(name).value
