"""gc interleaved with commits, as a hypothesis state machine over an in-memory store whose
clock the test drives.

Writers upload content (often content the store already holds, or held once: the dedupe
case), commit it, delete paths and branches; the clock jumps by seconds or by more than the
grace period; a gc is started (marked), and its fan-outs are swept one at a time, any number
of steps later, with commits in between. After every step, every object the refs reach is in
the store, and a commit either lands with all it refers to or fails without moving its
branch. After a gc that ran with nothing in between, every object left is reachable or
younger than the grace period.
"""

from __future__ import annotations

import time
import uuid

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from s3fsv.errors import MissingObject
from s3fsv.ingest.gc import Collector
from s3fsv.store.backend.memory import MemoryBackend
from s3fsv.store.objects import Commit, Tree, TreeEntry
from s3fsv.store.objectstore import Member
from s3fsv.store.repo import Repository
from s3fsv.store.store import Store
from s3fsv.store.tree import dir_entries
from s3fsv.store.upload import Uploader

GRACE_S = 3600
CHUNK = 4096
# Small files (packed) and files of two chunks (objects of their own), some the same bytes.
CONTENTS = [b"a" * 100, b"b" * 100, b"c" * 300, bytes(range(256)) * 20, b"d" * 5000]
PATHS = ["x", "y", "d/z", "d/w"]
SMALL = [b"e" * 900, b"f" * 2000]  # pack members that stay dead, bigger than the live ones


class Clock:
    """Wall and monotonic time, in nanoseconds, moved only by the test."""

    def __init__(self) -> None:
        self.ns = 1_700_000_000 * 10**9

    def now(self) -> int:
        return self.ns

    def ms(self) -> int:
        return self.ns // 10**6

    def sleep(self, seconds: float) -> None:
        self.ns += int(seconds * 10**9)


def reachable(repo: Repository) -> tuple[set[str], list[TreeEntry]]:
    """Every object the refs reach (all history: no retention rules here), walked
    independently of gc's own marking, and the packed file entries among them. A pack gc
    rewrote counts through its record: the pack its members went to is reached instead."""
    out: set[str] = set()
    packed: list[TreeEntry] = []
    commits = list(repo.refs.branches().values()) + list(repo.refs.tags().values())
    trees: list[str] = []
    while commits:
        cid = commits.pop()
        if cid not in out:
            out.add(cid)
            commit = repo.objects.get(cid, Commit)
            trees.append(commit.tree)
            commits.extend(commit.parents)
    while trees:
        tid = trees.pop()
        if tid in out:
            continue
        out.add(tid)
        out.update(page.id for page in repo.objects.get(tid, Tree).pages)
        for e in dir_entries(repo.objects, tid):
            if e.kind == "dir":
                trees.append(e.tree)
            elif e.kind == "file" and e.pack:
                packed.append(e)
                out.add(_pack_holding(repo, e.pack))
            elif e.kind == "file":
                out.update(e.chunks)
    return out, packed


def _pack_holding(repo: Repository, pack: str) -> str:
    """The pack that holds what ``pack`` held: itself, or where gc moved it."""
    for _ in range(10):
        moved = repo.objects.moved(pack)
        if moved is None or _stored_one(repo, pack):
            return pack
        pack = moved.pack
    return pack


def _stored_one(repo: Repository, oid: str) -> bool:
    return oid in stored(repo)


def stored(repo: Repository) -> dict[str, int]:
    """Object id -> last-modified time of every object of the repo in the store."""
    prefix = f"{repo.name}/objects/"
    return {
        i.key[len(prefix) :].replace("/", ""): i.modified_ns
        for i in repo.backend.list_info(prefix)  # type: ignore[attr-defined]
    }


class GcAgainstCommits(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        url = f"memory://gc-model-{uuid.uuid4().hex}"
        MemoryBackend.clock = staticmethod(self.clock.now)  # type: ignore[method-assign]
        self.store = Store.init(url)
        self.repo = self.store.create_repo("r", chunk_size=CHUNK)
        self.fresh_writer()
        self.staged: dict[str, TreeEntry | None] = {}
        self.gc: Collector | None = None
        self.sweeps: list[str] = []

    def fresh_writer(self) -> None:
        """A new writer process: its own memory of what it wrote, on the test's clock."""
        self.writer = self.store.repo("r")
        keep = self.writer.objects.keepalive
        keep.clock, keep.wall_ms, keep.sleep = self.clock.now, self.clock.ms, self.clock.sleep

    def teardown(self) -> None:
        MemoryBackend.clock = staticmethod(time.time_ns)  # type: ignore[method-assign]

    # -- writers -------------------------------------------------------------------------------
    @rule(
        path=st.sampled_from(PATHS),
        content=st.sampled_from(CONTENTS),
        along=st.sampled_from([b"", *SMALL]),
    )
    def stage_write(self, path: str, content: bytes, along: bytes) -> None:
        """Upload ``content`` (with ``along`` in the same pack, never committed: a pack with
        dead members, which gc rewrites) and stage it at ``path``."""
        with Uploader(self.writer.objects, CHUNK, threads=2) as up:
            got = up.add_bytes(content)
            if along:
                up.add_bytes(along)
            up.finish()
        self.staged[path] = got.entry(path.rsplit("/", 1)[-1], 0o644, self.clock.ns)

    @rule(path=st.sampled_from(PATHS))
    def stage_delete(self, path: str) -> None:
        self.staged[path] = None

    @rule(branch=st.sampled_from(["main", "side"]))
    def commit(self, branch: str) -> None:
        if branch not in self.repo.refs.branches():
            self.repo.refs.create_branch(branch, self.repo.refs.branch("main").commit)
        before = self.repo.refs.branch(branch).commit
        try:
            cid = self.writer.commit(branch, self.staged, "step", missing_ok=True)
        except MissingObject:
            # Refused, never half-made: the branch did not move.
            assert self.repo.refs.branch(branch).commit == before
        else:
            assert self.repo.refs.branch(branch).commit == cid
        self.staged = {}

    @rule()
    def delete_side_branch(self) -> None:
        if "side" in self.repo.refs.branches():
            self.repo.refs.delete_branch("side")

    @rule()
    def restart_writer(self) -> None:
        self.fresh_writer()

    @rule(seconds=st.sampled_from([1, 30, 700, GRACE_S + 10]))
    def wait(self, seconds: int) -> None:
        self.clock.sleep(seconds)

    # -- gc ------------------------------------------------------------------------------------
    # Rules that do not apply return at once rather than carrying a precondition: how many
    # sweep steps a gc takes depends on object ids, and hypothesis needs the set of enabled
    # rules to follow from its draws alone.
    @rule()
    def gc_start(self) -> None:
        if self.gc is not None:
            return
        self.gc = Collector(self.store, grace_s=GRACE_S, clock=self.clock.now, threads=2)
        self.gc.mark()
        self.sweeps = self.gc.fanouts("r")

    @rule()
    def gc_sweep_step(self) -> None:
        if self.gc is None:
            return
        if self.sweeps:
            self.gc.sweep("r", self.sweeps.pop())
        if not self.sweeps:
            self.gc.finish()
            self.gc = None

    @rule()
    def gc_alone(self) -> None:
        """A gc with nothing in between: whatever is unreachable and old is gone after it."""
        if self.gc is not None:
            return
        started = self.clock.ns
        Collector(self.store, grace_s=GRACE_S, clock=self.clock.now, threads=2).run()
        live, _ = reachable(self.repo)
        for oid, modified in stored(self.repo).items():
            assert oid in live or modified >= started - GRACE_S * 10**9, oid

    # -- what must always hold -----------------------------------------------------------------
    @invariant()
    def every_reachable_object_is_stored(self) -> None:
        live, packed = reachable(self.repo)
        missing = live - set(stored(self.repo))
        assert not missing, f"gc deleted reachable objects: {sorted(missing)[:3]}"
        fresh = self.store.repo("r")  # no cache: packed files read where they are now
        for entry in packed:
            assert fresh.objects.get_member(Member.of(entry)) is not None


GcAgainstCommits.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_gc_against_commits = GcAgainstCommits.TestCase
