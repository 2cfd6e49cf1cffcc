"""``s3fsv import``: objects already in a bucket become commits, without copying their bytes.

Each object is fetched once and hashed (its chunk ids and whole SHA-256); its tree entry names
the object (bucket, key, version id, ETag) instead of store objects (docs/format.md, 7.2), or,
with ``copy``, holds its bytes in content-addressed objects like any upload. Object metadata
and tags that name a device or a customer become file attributes (``AttrRule``).

Batches are claimed through the import's cursor (``cursor.py``) and committed with the claim's
base, so that two importers, or one restarted after ``kill -9``, import every object exactly
once. ``--watch`` (``watch``) repeats this as objects arrive.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from s3fsv.api import FileRef, Repo, Store
from s3fsv.errors import Conflict, NotFound, S3fsvError, UsageError
from s3fsv.ingest.cursor import NAMESPACE, Claim, ClaimLost, Cursor, cursor_id
from s3fsv.ingest.source import AttrRule, Fetched, Origin, fetch
from s3fsv.store.backend.base import SourceObject
from s3fsv.store.backend.s3 import S3Backend
from s3fsv.store.objects import split_path

log = logging.getLogger(__name__)

THREADS = 16  # fetching threads: the server's CPU, not latency, bounds more (measured)
HISTORY_LOOKBACK = 10_000  # commits searched for a batch committed by an importer that died
COMMIT_ATTEMPTS = 20


@dataclass
class ImportReport:
    """What one run (or one batch) did."""

    commits: list[str] = field(default_factory=list)
    imported: int = 0
    bytes: int = 0
    skipped: int = 0  # changed or deleted between listing and reading: imported later, if new
    invalid: int = 0  # keys that cannot be paths

    def add(self, other: ImportReport) -> None:
        self.commits += other.commits
        self.imported += other.imported
        self.bytes += other.bytes
        self.skipped += other.skipped


@dataclass(frozen=True)
class ImportOptions:
    copy: bool = False
    attrs: AttrRule = AttrRule()
    threads: int = THREADS


class Importer:
    """Imports ``origin`` into ``repo@branch:path``. One per process; not for concurrent use
    from several threads (several processes, on any hosts, are the point)."""

    def __init__(
        self,
        store: Store,
        origin: Origin,
        repo: str,
        branch: str,
        path: str = "",
        options: ImportOptions = ImportOptions(),
        progress: Callable[[int], None] | None = None,
    ) -> None:
        self.store = store
        self.origin = origin
        self.repo: Repo = store.repo(repo)
        self.branch = branch
        self.path = "/".join(split_path(path))
        self.repo.resolve(branch)  # an unknown branch fails now, not after the listing
        self.options = options
        self.progress = progress
        # Every object is read once, whole: lean GETs (``s3get``) cost the client a third of
        # what boto3's get_object does, one connection per fetching thread.
        self.bucket = S3Backend(
            origin.bucket,
            "",
            store.endpoint_url,
            max_pool_connections=options.threads,
            direct_gets=True,
        )
        about = {"source": origin.url, "target": f"{repo}@{branch}:{self.path}"}
        self.cursor = Cursor(
            store.records(NAMESPACE), cursor_id(origin.url, repo, branch, self.path), about
        )
        self.chunk_size = self.repo.chunk_size
        self.invalid = 0

    # -- what is new ------------------------------------------------------------------------
    def pending(self) -> list[SourceObject]:
        """Objects of the prefix that no batch has claimed yet, by key (reads the cursor)."""
        self.cursor.refresh()
        out, invalid = [], 0
        for obj in self.bucket.list_objects(self.origin.prefix):
            if self.origin.path_of(obj.key) is None:
                invalid += 1
            elif self.cursor.is_new(obj):
                out.append(obj)
        if invalid != self.invalid:
            log.warning("%d key(s) of %s cannot be paths and are skipped", invalid, self.origin.url)
        self.invalid = invalid
        return sorted(out, key=lambda o: o.key)

    # -- running ----------------------------------------------------------------------------
    def run_once(self, batch: int | None = None) -> ImportReport:
        """Finish batches that died with their importer, then import everything pending now,
        ``batch`` objects per commit (all in one when None)."""
        report = self.recover()
        pending = self.pending()
        size = batch or max(len(pending), 1)
        for first in range(0, len(pending), size):
            report.add(self.import_objects(pending[first : first + size]))
        report.invalid = self.invalid
        return report

    def import_objects(self, objects: list[SourceObject]) -> ImportReport:
        """Claim ``objects`` (those still unclaimed) as one batch and commit it."""
        base = self.repo.resolve(self.branch)
        claim = self.cursor.claim(objects, base)
        if claim is None:
            return ImportReport()
        return self._work(claim)

    def recover(self) -> ImportReport:
        """Take over the batches of importers that died (or stalled past their claim): record
        the commit one of them made, or make it."""
        report = ImportReport()
        self.cursor.refresh()
        for n, record in list(self.cursor.stale()):
            base = self.repo.resolve(self.branch)
            claim = self.cursor.take_over(n, record, base)
            if claim is None:
                continue
            log.info("taking over batch %d of %s (its importer is gone)", n, self.cursor.id)
            found = self._committed(claim)
            if found is not None:
                self._finish(claim, found, len(claim.objects), [])
                continue
            report.add(self._work(claim))
        return report

    def _committed(self, claim: Claim) -> str | None:
        """The commit of batch ``claim`` on the branch, if an importer made it: searched from
        the head back to the head the batch was first claimed on."""
        first_base = claim.value.get("first_base", claim.base)
        for n, commit in enumerate(self.repo.log(self.branch)):
            made = commit.provenance.get("import", {})
            if made.get("cursor") == self.cursor.id and made.get("batch") == claim.number:
                return commit.id
            if commit.id == first_base or n >= HISTORY_LOOKBACK:
                return None
        return None

    def _work(self, claim: Claim) -> ImportReport:
        try:
            with self.cursor.holding(claim):
                fetched, skipped = self._fetch_all(claim)
                commit = self._commit(claim, fetched) if fetched else claim.base
        except ClaimLost:
            log.info("batch %d was taken over by another importer", claim.number)
            return ImportReport()
        if commit is None:
            return ImportReport()
        self._finish(claim, commit, len(fetched), skipped)
        made = [commit] if fetched else []
        report = ImportReport(made, len(fetched), sum(f.info.size for f in fetched))
        report.skipped = len(skipped)
        return report

    def _finish(self, claim: Claim, commit: str, imported: int, skipped: list[str]) -> None:
        try:
            self.cursor.finish(claim, commit, imported, skipped)
        except ClaimLost:
            log.info("batch %d was taken over after it was committed", claim.number)

    def _fetch_all(self, claim: Claim) -> tuple[list[Fetched], list[str]]:
        """Every object of the claim as it was claimed (same ETag); the others are skipped."""

        def one(key: str) -> Fetched | None:
            try:
                got = fetch(
                    self.bucket,
                    key,
                    self.chunk_size,
                    self.options.attrs,
                    keep_bytes=self.options.copy,
                )
            except NotFound:
                return None
            finally:
                if self.progress is not None:
                    self.progress(1)
            return got if got.info.etag == claim.objects[key] else None

        keys = sorted(claim.objects)
        with ThreadPoolExecutor(max_workers=self.options.threads) as pool:
            results = list(pool.map(one, keys))
        fetched = [f for f in results if f is not None]
        skipped = [k for k, f in zip(keys, results, strict=True) if f is None]
        return fetched, skipped

    def _commit(self, claim: Claim, fetched: list[Fetched]) -> str | None:
        """Commit the batch on top of its claim's base; None when another importer committed
        it (or took it over) first."""
        base = claim.base
        for _attempt in range(COMMIT_ATTEMPTS):
            self.cursor.renew(claim)  # a claim lost while paused must not commit
            try:
                return self._transaction(claim, fetched, base)
            except Conflict:
                found = self._committed(claim)
                if found is not None:
                    return found
                if claim.lost:
                    return None
                # The same keys changed again and another batch committed them first: this
                # batch's objects go on top (they were claimed later, so they are newer).
                base = self.repo.resolve(self.branch)
        raise UsageError(f"batch {claim.number} could not be committed: too much contention")

    def _transaction(self, claim: Claim, fetched: list[Fetched], base: str) -> str:
        provenance: dict[str, Any] = {
            "import": {
                "source": self.origin.url,
                "cursor": self.cursor.id,
                "batch": claim.number,
                "objects": len(fetched),
                "copied": self.options.copy,
            }
        }
        message = f"import {len(fetched)} object(s) from {self.origin.url}"
        with self.repo.transaction(
            self.branch, message=message, provenance=provenance, base=base
        ) as tx:
            for item in fetched:
                rel = self.origin.path_of(item.info.key)
                assert rel is not None
                path = f"{self.path}/{rel}" if self.path else rel
                name = path.rsplit("/", 1)[-1]
                if self.options.copy:
                    tx.write(
                        path,
                        item.data or b"",
                        mtime_ns=item.info.modified_ns,
                        attrs=item.attrs,
                    )
                else:
                    tx.put(path, FileRef(item.entry(self.origin, name)))
        assert tx.commit_id is not None
        return tx.commit_id


def watch(
    importer: Importer,
    *,
    interval: float,
    batch: int,
    stop: threading.Event,
    on_report: Callable[[ImportReport], None] | None = None,
    poll: float = 2.0,
) -> ImportReport:
    """Import as objects arrive until ``stop`` is set: one commit per ``batch`` objects, or of
    whatever is pending once ``interval`` seconds passed since the last commit. Store errors
    are logged and retried at the next poll (a watcher outlives outages)."""
    total = ImportReport()
    last = time.monotonic()
    while not stop.is_set():
        try:
            report = importer.recover()
            pending = importer.pending()
            if pending and (len(pending) >= batch or time.monotonic() - last >= interval):
                for first in range(0, len(pending), batch):
                    chunk = pending[first : first + batch]
                    if len(chunk) < batch and time.monotonic() - last < interval:
                        break  # a partial batch waits for the interval
                    report.add(importer.import_objects(chunk))
                    if stop.is_set():
                        break
                last = time.monotonic()
            if report.commits and on_report is not None:
                on_report(report)
            total.add(report)
        except S3fsvError as err:
            log.warning("import of %s: %s (retrying)", importer.origin.url, err)
        stop.wait(min(interval, poll))
    return total
