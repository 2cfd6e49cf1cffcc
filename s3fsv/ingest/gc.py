"""``s3fsv gc``: delete the store objects nothing needs, and nothing else.

**Mark.** For every repo: every commit of every branch's and tag's history (all parents) is
kept as an object, so history and ids never break; the files of a commit (its trees, pages,
chunks and packs) are kept when a tag names it or its branch's retention rule keeps it
(``retention.py``; no rule keeps everything). Objects that pipeline records refer to (logs,
outputs of jobs in flight: ``s3fsv.pipelines.references``) are kept too.

**Sweep.** Each fan-out directory ``<repo>/objects/<aa>/`` is listed with last-modified times;
an object is deleted when it is not marked and older than the grace period, or when a purge
condemned it (its tombstone names it: erasure does not wait). Nothing outside ``<repo>/objects/``
is ever deleted, except ``_probe/`` keys an interrupted ``init`` left. Imported originals live
outside the store: gc never touches them (``purge`` deletes those it must).

**Concurrent commits.** gc takes its lease (``_gc/leases/gc``) before it reads any ref, and
deletes an object only within ``SWEEP_DEADLINE_S`` of the listing that showed it old.
A commit's own new objects are younger than any grace period; an older object it refers to is
revived (touched) first, and checked after the sweep deadline while a gc runs
(``s3fsv/store/keepalive.py``). So no commit
ever loses an object, whatever the interleaving (``tests/ingest/test_gc_model.py``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from s3fsv.errors import S3fsvError, UsageError
from s3fsv.ingest.repack import PackMembers, follow_moved, live_bytes, repack, underused
from s3fsv.ingest.retention import NAMESPACE as RETENTION
from s3fsv.ingest.retention import kept_commits, read_rules, rule_for
from s3fsv.pipelines.lease import Lease
from s3fsv.pipelines.references import referenced_objects
from s3fsv.store.backend.base import KeyInfo, Sweepable
from s3fsv.store.keepalive import GC_LEASE, GC_NAMESPACE, SWEEP_DEADLINE_S
from s3fsv.store.objects import Commit, Tree, TreePage, is_object_id
from s3fsv.store.records import Records
from s3fsv.store.repo import Repository
from s3fsv.store.store import Store
from s3fsv.store.tombstones import condemned

log = logging.getLogger(__name__)

DEFAULT_GRACE_S = 24 * 3600
MIN_SAFE_GRACE_S = 3600  # writers trust their own objects for 10 minutes (FRESH_NS)
MARKER_MS = 60_000
THREADS = 16


class GcRunning(S3fsvError):
    """Another gc holds the store's gc marker."""

    exit_code = 5


@dataclass
class RepoReport:
    """One repo's numbers: objects and bytes listed, kept and deleted (or, dry, to delete)."""

    objects: int = 0
    bytes: int = 0
    live: int = 0
    young: int = 0
    deleted: int = 0
    freed: int = 0
    condemned: int = 0  # of those deleted, named by a purge's tombstone
    repacked: int = 0  # packs rewritten with their live members only
    written: int = 0  # bytes of the packs written for them
    commits: int = 0
    expired: int = 0  # commits whose files the retention rules no longer keep


@dataclass
class GcReport:
    dry_run: bool
    grace_s: float
    repos: dict[str, RepoReport] = field(default_factory=dict)
    probes: int = 0

    @property
    def deleted(self) -> int:
        return sum(r.deleted for r in self.repos.values()) + self.probes

    @property
    def freed(self) -> int:
        return sum(r.freed for r in self.repos.values())


class Collector:
    """One gc run over a store (store-layer ``Store``). ``mark`` then ``sweep`` each fan-out
    (``run`` does both); the steps are separate so tests can interleave commits with them."""

    def __init__(
        self,
        store: Store,
        *,
        grace_s: float = DEFAULT_GRACE_S,
        dry_run: bool = False,
        clock: Callable[[], int] = time.time_ns,
        threads: int = THREADS,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        if not isinstance(store.backend, Sweepable):
            raise UsageError(f"{store.url}: this store cannot be garbage-collected")
        self.store = store
        self.backend = store.backend
        self.grace_ns = int(grace_s * 10**9)
        self.dry_run = dry_run
        self.clock = clock
        self.threads = threads
        self.progress = progress
        self.report = GcReport(dry_run, grace_s)
        self.live: dict[str, set[str]] = {}
        self.packs: dict[str, PackMembers] = {}  # repo -> reachable members of each pack
        self.moved: dict[str, set[str]] = {}  # repo -> moved-pack records still needed
        self.kept_anywhere: set[str] = set()  # named by pipeline records: kept in every repo
        self.doomed: dict[str, set[str]] = {}
        self.started_ns = 0
        self._repos: dict[str, Repository] = {}
        self._marker = Lease(Records(self.backend, GC_NAMESPACE), GC_LEASE, MARKER_MS)

    # -- mark --------------------------------------------------------------------------------
    def mark(self) -> None:
        """Take the marker (unless dry), then find every live object of every repo."""
        if not self.dry_run and not self._marker.try_acquire():
            held = self._marker.records.find(self._marker.name)
            owner = held.value.get("owner", {}) if held is not None else {}
            raise GcRunning(
                f"another gc is running (pid {owner.get('pid')} on {owner.get('host')})"
            )
        self.started_ns = self.clock()
        self.kept_anywhere = referenced_objects(Records(self.backend, "pipelines"))
        self.doomed = condemned(self.backend)
        retention = Records(self.backend, RETENTION)
        for name in self.store.repos():
            self.report.repos[name] = RepoReport()
            self._repos[name] = self.store.repo(name)
            self.live[name] = self._mark_repo(self._repos[name], read_rules(retention, name))

    def _mark_repo(self, repo: Repository, rules: dict[str, int | None]) -> set[str]:
        report = self.report.repos[repo.name]
        commits: dict[str, tuple[Commit, bool]] = {}
        heads = [(c, rule_for(rules, b)) for b, c in repo.refs.branches().items()]
        heads += [(c, None) for c in repo.refs.tags().values()]
        for head, days in heads:
            for cid, (commit, keep) in kept_commits(repo, head, days).items():
                known = commits.get(cid)
                commits[cid] = (commit, keep or (known is not None and known[1]))
        live = set(commits)
        report.commits = len(commits)
        report.expired = sum(1 for _, keep in commits.values() if not keep)
        trees = {c.tree for c, keep in commits.values() if keep}
        packs: PackMembers = {}
        self._walk_trees(repo, trees, live, packs)
        self.moved[repo.name] = follow_moved(repo, packs, live)
        self.packs[repo.name] = packs
        return live

    def _walk_trees(
        self, repo: Repository, roots: Iterable[str], live: set[str], packs: PackMembers
    ) -> None:
        """Add every tree, page, chunk and pack below ``roots`` to ``live`` (and the packed
        members to ``packs``), level by level, fetching each level's directories in
        parallel."""
        level = [(t, Tree) for t in set(roots) if t not in live]
        live.update(t for t, _ in level)
        with ThreadPoolExecutor(max_workers=self.threads) as pool:
            while level:
                following: list[tuple[str, type[Tree] | type[TreePage]]] = []
                for nodes, leaves, members in pool.map(lambda n: _children(repo, *n), level):
                    live.update(leaves)
                    for pack, offset, size, oid in members:
                        packs.setdefault(pack, {})[offset] = (size, oid)
                    for node in nodes:
                        if node[0] not in live:
                            live.add(node[0])
                            following.append(node)
                level = following

    # -- sweep -------------------------------------------------------------------------------
    def fanouts(self, repo: str) -> list[str]:
        return list(self.backend.list_prefixes(f"{repo}/objects/"))

    def sweep(self, repo: str, prefix: str) -> None:
        """Rewrite the underused packs and delete what is dead below one fan-out ``prefix``,
        deciding from a listing at most ``SWEEP_DEADLINE_S`` old when the deletes are sent
        (else it lists again: packs rewritten already are not rewritten twice)."""
        report = self.report.repos[repo]
        cutoff = self.started_ns - self.grace_ns
        live, packs = self.live[repo], self.packs[repo]
        doomed = self.doomed.get(repo, set())
        while True:
            listed = time.monotonic()
            infos = list(self.backend.list_info(prefix))
            dead: list[KeyInfo] = []
            young = written = repacked = 0
            for info in infos:
                oid = info.key[len(f"{repo}/objects/") :].replace("/", "")
                if not is_object_id(oid) or oid in self.kept_anywhere:
                    continue
                if oid in live:
                    old = info.modified_ns < cutoff and oid not in doomed
                    if old and oid in packs and underused(info.size, packs[oid]):
                        done = live_bytes(packs[oid]) if self.dry_run else self._repack(repo, oid)
                        if done is not None:
                            dead.append(info)
                            written += done
                            repacked += 1
                    continue
                if oid in doomed or info.modified_ns < cutoff:
                    dead.append(info)
                else:
                    young += 1
            if self.dry_run or not dead or time.monotonic() - listed < SWEEP_DEADLINE_S:
                break
        if not self.dry_run and dead:
            self.backend.delete_many([i.key for i in dead])
        report.objects += len(infos)
        report.bytes += sum(i.size for i in infos)
        report.live += len(infos) - len(dead) - young
        report.young += young
        report.deleted += len(dead)
        report.freed += sum(i.size for i in dead)
        report.condemned += sum(1 for i in dead if i.key.replace("/", "")[-64:] in doomed)
        report.repacked += repacked
        report.written += written
        if self.progress is not None:
            self.progress(len(infos))

    def _repack(self, repo: str, pack: str) -> int | None:
        objects = self._repos[repo].objects
        done = repack(objects, pack, self.packs[repo][pack])
        if done is not None:
            moved = objects.moved(pack)
            if moved is not None:
                self.live[repo].add(moved.pack)  # young anyway; never swept as dead
                # Reachable trees name the old pack: its record stays, whatever its time says
                # (a file's mtime is coarser than the clock, so "younger than this gc" is not
                # a safe test with no grace period).
                self.moved.setdefault(repo, set()).add(objects.moved_key(pack))
        return done

    def sweep_moved(self, repo: str) -> None:
        """Delete moved-pack records no reachable tree needs any more."""
        cutoff = self.started_ns - self.grace_ns
        keep = self.moved.get(repo, set())
        stale = [
            i.key
            for i in self.backend.list_info(f"{repo}/moved/")
            if i.key not in keep and i.modified_ns < cutoff
        ]
        if stale and not self.dry_run:
            self.backend.delete_many(stale)

    def sweep_probes(self) -> None:
        """Keys of conditional-write probes an interrupted ``init`` left behind."""
        cutoff = self.started_ns - self.grace_ns
        old = [i.key for i in self.backend.list_info("_probe/") if i.modified_ns < cutoff]
        if old and not self.dry_run:
            self.backend.delete_many(old)
        self.report.probes = len(old)

    def finish(self) -> None:
        """Release the gc lease: committers stop waiting for this gc."""
        if not self.dry_run:
            self._marker.release()

    def run(self) -> GcReport:
        """Mark, then sweep every fan-out of every repo; release the lease."""
        try:
            self.mark()
            jobs = [(repo, p) for repo in self.live for p in self.fanouts(repo)]
            with ThreadPoolExecutor(max_workers=max(1, self.threads // 2)) as pool:
                list(pool.map(lambda job: self.sweep(*job), jobs))
            for repo in self.live:
                self.sweep_moved(repo)
            self.sweep_probes()
        finally:
            self.finish()
        return self.report


def _children(
    repo: Repository, oid: str, kind: type[Tree] | type[TreePage]
) -> tuple[
    list[tuple[str, type[Tree] | type[TreePage]]], list[str], list[tuple[str, int, int, str]]
]:
    """What one tree or page refers to: the directories and pages to open next, the chunk
    and pack ids of its files (an imported original is no store object), and its packed
    members (pack, offset, size, content id)."""
    node = repo.objects.get(oid, kind)
    nodes: list[tuple[str, type[Tree] | type[TreePage]]] = []
    if isinstance(node, Tree):
        nodes.extend((p.id, TreePage) for p in node.pages)
    leaves: list[str] = []
    members: list[tuple[str, int, int, str]] = []
    for e in node.entries:
        if e.kind == "dir":
            nodes.append((e.tree, Tree))
        elif e.kind == "file" and e.source is None:
            leaves.extend((e.pack,) if e.pack else e.chunks)
            if e.pack:
                members.append((e.pack, e.pack_offset, e.size, e.chunks[0]))
    return nodes, leaves, members
