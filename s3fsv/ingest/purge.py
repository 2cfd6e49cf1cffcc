"""``s3fsv purge``: erase matching files from every commit of a repo, and their originals.

In order: scan every branch's and tag's history (``rewrite.py``); refuse, before changing
anything, when a tag would have to move and ``include_tags`` is not given; copy the files that
stay out of packs shared with purged files; write the rewritten commits; publish the tombstone
(``state: started``); move each branch (and tag) by compare-and-swap, rewriting again what was
committed meanwhile; delete the imported originals of purged files; cascade to pipeline
outputs; evict this machine's cache (chunks, and the whole-file entries FUSE passthrough
serves); mark the tombstone ``done``. ``gc`` then deletes the old objects that held purged
bytes (the tombstone names them) without waiting for its grace period. A purge interrupted
after the tombstone is visible as ``started``: run it again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from s3fsv.api import Store as ApiStore
from s3fsv.errors import NotFound, PreconditionFailed, S3fsvError, UsageError
from s3fsv.ingest import tombstones
from s3fsv.ingest.cascade import Downstream, downstream
from s3fsv.ingest.matching import Matcher
from s3fsv.ingest.rewrite import HistoryRewrite
from s3fsv.store import wholefile
from s3fsv.store.cache import DiskCache
from s3fsv.store.events import Event
from s3fsv.store.external import Sources
from s3fsv.store.objects import Source
from s3fsv.store.repo import Repository, utc_now
from s3fsv.store.store import Store

log = logging.getLogger(__name__)

CAS_ATTEMPTS = 20


class TagsAffected(S3fsvError):
    """A purge would rewrite tagged commits and was not allowed to (``--include-tags``)."""

    exit_code = 2


@dataclass
class PurgeResult:
    """What a purge did (or, dry, would do). ``files`` and ``originals`` are for the person
    running it; the tombstone keeps only counts."""

    repo: str
    tombstone: dict[str, Any]
    files: list[str] = field(default_factory=list)
    originals: list[str] = field(default_factory=list)
    downstream: list[Downstream] = field(default_factory=list)
    cascaded: list[PurgeResult] = field(default_factory=list)


@dataclass(frozen=True)
class PurgeRequest:
    matcher: Matcher
    reason: str
    by: str
    dry_run: bool = False
    include_tags: bool = False
    cascade: bool = False
    parent: str | None = None  # the tombstone of the purge this one cascades from
    described: tuple[str, ...] | None = None  # what the tombstone says was matched, if not
    # the patterns themselves (a cascade matches exact output paths, which it does not keep)


def purge(store: Store, repo_name: str, request: PurgeRequest, cache: DiskCache) -> PurgeResult:
    """Purge ``request.matcher`` from repo ``repo_name`` of ``store`` (see the module doc)."""
    if not request.reason.strip():
        raise UsageError("a purge needs a --reason")
    repo = store.repo(repo_name)
    tid = tombstones.new_id()
    branches = {name: repo.refs.branch(name) for name in repo.refs.branches()}
    tags = {name: repo.refs.tag_ref(name) for name in repo.refs.tags()}
    rw = HistoryRewrite(repo, request.matcher, dry_run=request.dry_run, tag=tid)
    rw.scan([r.commit for r in (*branches.values(), *tags.values())])
    relocated = rw.relocate()
    new_branches = {n: rw.rewrite(r.commit) for n, r in branches.items()}
    new_tags = {n: rw.rewrite(r.commit) for n, r in tags.items()}
    moved_tags = sorted(n for n, c in new_tags.items() if c != tags[n].commit)
    if moved_tags and not request.include_tags:
        shown = ", ".join(moved_tags[:10])
        raise TagsAffected(
            f"the purge would rewrite the commits of tag(s) {shown} of {repo_name}: nothing "
            "was changed; add --include-tags to rewrite them too"
        )
    changed = {old for old, new in rw.new_ids.items() if old != new}
    found = rw.found
    below = downstream(ApiStore(store, cache), repo_name, changed, found.paths)
    value: dict[str, Any] = {
        "id": tid,
        "repo": repo_name,
        "state": "planned" if request.dry_run else "started",
        "started": utc_now(),
        "by": request.by,
        "reason": request.reason,
        "match": list(request.described or request.matcher.patterns),
        "meta": dict(request.matcher.meta),
        "parent": request.parent,
        "counts": {
            "files": len(found.paths),
            "contents": len(found.contents),
            "bytes": found.bytes,
            "commits": len(changed),
            "relocated": relocated,
            "originals": len(found.originals),
        },
        "branches": sorted(n for n, c in new_branches.items() if c != branches[n].commit),
        "tags": moved_tags,
        "downstream": [
            {"pipeline": d.pipeline, "repo": d.repo, "commits": list(d.commits)} for d in below
        ],
        "cascade": [],
        "rewritten": {old: rw.new_ids[old] for old in sorted(changed)},
        "evict": sorted(found.evict),
        "objects": sorted(found.objects),
    }
    result = PurgeResult(
        repo_name,
        value,
        sorted(found.paths),
        sorted(_shown(s) for s in found.originals.values()),
        below,
    )
    if request.dry_run:
        return result
    records = tombstones.records(store.backend)
    record = tombstones.publish(records, tid, value, None)
    _move_refs(repo, rw, branches, tags if request.include_tags else {}, value)
    deleted, left = _delete_originals(store, list(found.originals.values()))
    value["counts"].update(originals=deleted, originals_left=left)
    if request.cascade:
        for d in below:
            sub = PurgeRequest(
                Matcher((), exact=frozenset(d.outputs)),
                f"cascade of purge {tid} of {repo_name}: {request.reason}",
                request.by,
                include_tags=request.include_tags,
                cascade=True,
                parent=tid,
                described=(f"the outputs pipeline {d.pipeline} made from the files purged",),
            )
            child = purge(store, d.repo, sub, cache)
            result.cascaded.append(child)
            value["cascade"].append(child.tombstone["id"])
    evict(cache, found.evict, found.contents)
    value.update(state="done", finished=utc_now())
    value["counts"].update(files=len(found.paths), commits=len(value["rewritten"]))
    value["evict"], value["objects"] = sorted(found.evict), sorted(found.objects)
    tombstones.publish(records, tid, value, record.etag)
    # The audit trail, when one is attached, records the purge (patterns and counts only).
    store.events.emit(Event("purge", repo_name, detail=tombstones.summary(value)))
    return result


def _move_refs(
    repo: Repository,
    rw: HistoryRewrite,
    branches: dict[str, Any],
    tags: dict[str, Any],
    value: dict[str, Any],
) -> None:
    """Compare-and-swap each branch (and tag) to its rewritten head; a branch that moved
    meanwhile has its new commits scanned and rewritten too, then the swap is retried."""
    for name, expected in branches.items():
        for _ in range(CAS_ATTEMPTS):
            new = rw.rewrite(expected.commit)
            if new == expected.commit:
                break
            try:
                repo.refs.move_branch(name, new, expected, {"purge": value["id"]})
                break
            except PreconditionFailed:
                try:
                    expected = repo.refs.branch(name)
                except NotFound:
                    break  # deleted meanwhile: nothing left to rewrite
                rw.scan([expected.commit])
                rw.relocate()
        else:
            raise PreconditionFailed(f"branch {name} kept moving: run the purge again")
    for name, expected in tags.items():
        new = rw.rewrite(expected.commit)
        if new != expected.commit:
            repo.refs.move_tag(name, new, expected)
    value["rewritten"] = {old: new for old, new in sorted(rw.new_ids.items()) if old != new}


def _delete_originals(store: Store, originals: list[Source]) -> tuple[int, int]:
    """Delete the imported originals of purged files: a version for good when the import
    pinned one, else the key while it still holds what was imported. Returns (deleted, left:
    overwritten since, so not what was imported)."""
    if not originals:
        return 0, 0
    sources = Sources.beside(store.backend)
    deleted = left = 0
    try:
        for source in originals:
            bucket = sources.bucket(source.bucket)
            try:
                if not source.version and bucket.head_object(source.key).etag != source.etag:
                    log.warning("%s changed since it was imported: left in place", source.url)
                    left += 1
                    continue
                bucket.delete_object(source.key, source.version)
            except NotFound:
                pass  # gone already
            deleted += 1
    finally:
        sources.close()
    return deleted, left


def _shown(source: Source) -> str:
    return source.url + (f" (version {source.version})" if source.version else "")


def evict(cache: DiskCache, oids: Iterable[str], contents: Iterable[str] = ()) -> int:
    """Delete this machine's cache entries of chunks ``oids`` and the whole-file entries
    (served by FUSE passthrough) of file contents ``contents``; return how many were there."""
    gone = sum(1 for oid in oids if cache.discard(oid))
    return gone + sum(1 for sha256 in contents if wholefile.discard(cache, sha256))
