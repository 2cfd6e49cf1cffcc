"""A hash chain of write-once JSON records: the form of both the grant history
(``STORE/_access/log/``) and the audit trail (``STORE/_audit/log/``).

Record ``n`` lives in its own slot ``<below>/<n as 12 digits>`` of a records namespace and is
written once, with ``If-None-Match: *`` (and, where the store can, under Object Lock). It is
canonical JSON holding ``seq`` (= n) and ``prev_hash``, the SHA-256 of the stored bytes of
record ``n - 1`` (64 zeros for record 0). So a record cannot be edited, removed, reordered or
overwritten without :meth:`Chain.verify` finding the first broken link.

Appending needs no lock: a writer puts the next free slot; when another writer took it first
(the put's condition fails), it reads that record, chains onto it and tries the slot after.
The tail is found by galloping over slots (``O(log n)`` HEADs) and remembered in-process.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from s3fsv.errors import AlreadyExists, NotFound
from s3fsv.store.objects import canonical_json
from s3fsv.store.records import Records

ZERO_HASH = "0" * 64
SLOT_DIGITS = 12
MAX_APPEND_ATTEMPTS = 100


def record_hash(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


@dataclass(frozen=True)
class Verdict:
    """What :meth:`Chain.verify` found: ``count`` records checked in order; ``broken_at``
    the first slot that breaks the chain (None when whole) and ``reason`` why; ``head`` the
    hash of the last good record."""

    count: int
    head: str
    broken_at: int | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.broken_at is None


class Chain:
    """The chain below ``below`` in ``records``. Thread-safe."""

    def __init__(self, records: Records, below: str) -> None:
        self.records = records
        self.below = below
        self._tail: tuple[int, str] | None = None  # (seq, hash) of the last record seen
        self._lock = threading.Lock()

    def slot(self, seq: int) -> str:
        return f"{self.below}/{seq:0{SLOT_DIGITS}d}"

    # -- writing ----------------------------------------------------------------------------
    def append(
        self, body: Mapping[str, Any], *, retain_until: datetime | None = None
    ) -> dict[str, Any]:
        """Add ``body`` (without ``seq``/``prev_hash``) as the next record; return it whole."""
        with self._lock:
            seq, prev = self._tail if self._tail is not None else self.find_tail()
            for _ in range(MAX_APPEND_ATTEMPTS):
                record = {**body, "seq": seq + 1, "prev_hash": prev}
                try:
                    self.records.create(self.slot(seq + 1), record, retain_until=retain_until)
                except AlreadyExists:
                    seq, prev = seq + 1, record_hash(self.records.raw(self.slot(seq + 1)))
                    continue
                self._tail = (seq + 1, record_hash(canonical_json(record)))
                return record
        raise AlreadyExists(f"could not append to {self.records.prefix}{self.below}: contention")

    def find_tail(self) -> tuple[int, str]:
        """(seq, hash) of the last record, (-1, zeros) for an empty chain."""
        exists = self.exists
        if not exists(0):
            return -1, ZERO_HASH
        lo = self._tail[0] if self._tail is not None and exists(self._tail[0]) else 0
        step, hi = 1, lo + 1
        while exists(hi):
            lo, step = hi, step * 2
            hi = lo + step
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if exists(mid) else (lo, mid)
        return lo, record_hash(self.records.raw(self.slot(lo)))

    def exists(self, seq: int) -> bool:
        return self.records.exists(self.slot(seq))

    # -- reading ----------------------------------------------------------------------------
    def read(self, seq: int) -> dict[str, Any]:
        """Record ``seq``; ``NotFound`` when the slot is empty."""
        return dict(json.loads(self.records.raw(self.slot(seq))))

    def seqs(self) -> list[int]:
        """The slots that hold something, ascending (foreign names are skipped)."""
        out = []
        for name in self.records.names(self.below):
            tail = name[len(self.below) + 1 :]
            if tail.isdigit() and len(tail) == SLOT_DIGITS:
                out.append(int(tail))
        return sorted(out)

    def since(self, seq: int) -> Iterator[dict[str, Any]]:
        """Records ``seq``, ``seq + 1``, ... up to the first empty slot (one GET each): how a
        reader that knows the chain up to ``seq - 1`` catches up."""
        while True:
            try:
                yield self.read(seq)
            except NotFound:
                return
            seq += 1

    def all(self, threads: int = 16) -> list[dict[str, Any]]:
        """Every record, in slot order (fetched in parallel)."""
        seqs = self.seqs()
        with ThreadPoolExecutor(max_workers=threads) as pool:
            return list(pool.map(self.read, seqs))

    def verify(self, threads: int = 16, expect: tuple[int, str] | None = None) -> Verdict:
        """Check every link: slots 0..n with no gap, each record canonical JSON whose
        ``seq`` is its slot and whose ``prev_hash`` is the previous record's hash. ``expect``,
        a (seq, hash) noted earlier outside the store, must still be in the chain (which
        catches records removed from the end)."""
        seqs = self.seqs()
        with ThreadPoolExecutor(max_workers=threads) as pool:
            raws = pool.map(self._raw_or_none, seqs)
            prev, count = ZERO_HASH, 0
            for expected, (seq, raw) in enumerate(zip(seqs, raws, strict=True)):
                if seq != expected:
                    return Verdict(count, prev, expected, f"record {expected} is missing")
                why = _link_problem(raw, seq, prev)
                if why:
                    return Verdict(count, prev, seq, why)
                assert raw is not None
                prev, count = record_hash(raw), count + 1
                if expect is not None and seq == expect[0] and prev != expect[1]:
                    return Verdict(count - 1, prev, seq, "differs from the hash noted earlier")
        if expect is not None and expect[0] >= count:
            return Verdict(count, prev, count, f"ends before record {expect[0]} noted earlier")
        rewritten = self._rewritten()
        if rewritten:
            first = rewritten[0]
            return Verdict(
                first,
                prev,
                first,
                f"record {first} was overwritten or deleted after it was written (the "
                "store keeps every version: list them to see the original)",
            )
        return Verdict(count, prev)

    def _rewritten(self) -> list[int]:
        """Slots that have more than one version, where the store keeps versions (a write-once
        slot has exactly one: any other was an overwrite or a delete)."""
        versions = getattr(self.records.backend, "key_versions", None)
        if versions is None:
            return []
        base = self.records.key(self.below) + "/"
        found = []
        for key, count in versions(base).items():
            tail = key[len(base) :]
            if count > 1 and tail.isdigit():
                found.append(int(tail))
        return sorted(found)

    def _raw_or_none(self, seq: int) -> bytes | None:
        try:
            return self.records.raw(self.slot(seq))
        except NotFound:
            return None


def _link_problem(raw: bytes | None, seq: int, prev: str) -> str:
    if raw is None:
        return f"record {seq} vanished while being read"
    try:
        value = json.loads(raw)
    except ValueError:
        return f"record {seq} is not JSON"
    if not isinstance(value, dict):
        return f"record {seq} is not a JSON object"
    try:
        canonical = canonical_json(value) == raw
    except ValueError:
        canonical = False
    if not canonical:
        return f"record {seq} is not in canonical form (edited)"
    if value.get("seq") != seq:
        return f"record {seq} says it is record {value.get('seq')!r} (moved)"
    if value.get("prev_hash") != prev:
        return f"record {seq} does not chain onto record {seq - 1} (edited or reordered)"
    return ""
