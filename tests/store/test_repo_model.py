"""A stateful model test of Repository: branches, tags, commits (plain and against an older
base), and every read path, checked after every step against a dict-of-snapshots model.

The model tracks files only: deleting the last file of a directory leaves an empty directory in
s3fsv (directories are real entries), which no file-level comparison can see.
"""

from __future__ import annotations

import uuid

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from s3fsv.errors import AlreadyExists, Conflict, NotADirectory, NotFound
from s3fsv.store.objects import sha256_hex
from s3fsv.store.repo import Repository
from s3fsv.store.store import Store
from s3fsv.store.tree import Change
from s3fsv.store.upload import Uploader

CHUNK = 4096
MTIME = 1_600_000_000_000_000_000
MODE = 0o640
BRANCH_NAMES = ["dev", "feature", "fix-1", "exp"]
TAG_NAMES = ["v1", "v2", "release"]

Snapshot = dict[str, bytes]

paths = st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=3).map("/".join)


def _one_full_chunk() -> bytes:
    return b"x" * CHUNK


contents = st.one_of(
    st.binary(max_size=40),
    st.sampled_from([b"", b"same"]),
    st.builds(_one_full_chunk),
    st.binary(min_size=CHUNK - 2, max_size=CHUNK * 2 + 3),  # one to three chunks
)


def related(a: str, b: str) -> bool:
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def dict_diff(old: Snapshot, new: Snapshot) -> tuple[list[str], list[str], list[str]]:
    added = sorted(new.keys() - old.keys())
    deleted = sorted(old.keys() - new.keys())
    modified = sorted(p for p in old.keys() & new.keys() if old[p] != new[p])
    return added, modified, deleted


def dirs_of(snapshot: Snapshot) -> set[str]:
    return {"/".join(p.split("/")[:i]) for p in snapshot for i in range(1, p.count("/") + 1)}


class RepoModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.url = f"memory://repo-model-{uuid.uuid4().hex}"
        store = Store.init(self.url)
        self.repo = store.create_repo("model", chunk_size=CHUNK)
        self.uploader = Uploader(self.repo.objects, CHUNK, threads=2)
        root = self.repo.resolve("main")
        # In creation order: draws must not depend on commit ids, which embed the time.
        self.snapshots: dict[str, Snapshot] = {root: {}}
        self.parent: dict[str, str | None] = {root: None}
        self.heads: dict[str, str] = {"main": root}
        self.tags: dict[str, str] = {}
        self.checked: set[str] = set()

    def teardown(self) -> None:
        self.uploader.close()

    # -- helpers ---------------------------------------------------------------------------
    def history(self, cid: str) -> list[str]:
        """Commits reachable by first parents, newest first."""
        out: list[str] = []
        node: str | None = cid
        while node is not None:
            out.append(node)
            node = self.parent[node]
        return out

    def fresh_repo(self) -> Repository:
        """A new Store and Repository on the same URL: nothing cached from the writer."""
        return Store.open(self.url).repo("model")

    def short_id(self, cid: str) -> str:
        for n in range(8, 65):
            if sum(1 for other in self.snapshots if other.startswith(cid[:n])) == 1:
                return cid[:n]
        raise AssertionError("duplicate commit ids")

    # -- rules -----------------------------------------------------------------------------
    @rule(name=st.sampled_from(BRANCH_NAMES), data=st.data())
    def create_branch(self, name: str, data: st.DataObject) -> None:
        source_kind = data.draw(st.sampled_from(["branch", "commit", "prefix", "tag"]))
        if source_kind == "tag" and self.tags:
            tag = data.draw(st.sampled_from(sorted(self.tags)))
            ref, commit = tag, self.tags[tag]
        elif source_kind == "branch" or source_kind == "tag":
            branch = data.draw(st.sampled_from(sorted(self.heads)))
            ref, commit = branch, self.heads[branch]
        else:
            commit = data.draw(st.sampled_from(list(self.snapshots)))
            ref = commit if source_kind == "commit" else self.short_id(commit)
        if name in self.heads:
            try:
                self.repo.create_branch(name, ref)
            except AlreadyExists:
                return
            raise AssertionError(f"branch {name} created twice")
        assert self.repo.create_branch(name, ref) == commit
        self.heads[name] = commit

    @rule(name=st.sampled_from(TAG_NAMES), data=st.data())
    def create_tag(self, name: str, data: st.DataObject) -> None:
        commit = data.draw(st.sampled_from(list(self.snapshots)))
        if name in self.tags:
            try:
                self.repo.create_tag(name, commit)
            except AlreadyExists:
                return
            raise AssertionError(f"tag {name} created twice")
        assert self.repo.create_tag(name, commit) == commit
        self.tags[name] = commit

    @rule(
        puts=st.lists(st.tuples(paths, contents), max_size=5),
        n_deletes=st.integers(0, 3),
        message=st.text(max_size=20),
        data=st.data(),
    )
    def commit_on_head(
        self, puts: list[tuple[str, bytes]], n_deletes: int, message: str, data: st.DataObject
    ) -> None:
        self.commit(puts, n_deletes, False, message, data)

    @rule(
        puts=st.lists(st.tuples(paths, contents), max_size=3),
        n_deletes=st.integers(0, 2),
        message=st.text(max_size=20),
        data=st.data(),
    )
    def commit_on_older_base(
        self, puts: list[tuple[str, bytes]], n_deletes: int, message: str, data: st.DataObject
    ) -> None:
        """As if the changes were staged against an older commit while others committed."""
        self.commit(puts, n_deletes, True, message, data)

    def commit(
        self,
        puts: list[tuple[str, bytes]],
        n_deletes: int,
        use_base: bool,
        message: str,
        data: st.DataObject,
    ) -> None:
        branch = data.draw(st.sampled_from(sorted(self.heads)))
        head = self.heads[branch]
        base = data.draw(st.sampled_from(self.history(head))) if use_base else head
        base_snap, head_snap = self.snapshots[base], self.snapshots[head]
        deletable = sorted(set(base_snap) | dirs_of(base_snap))
        deletes = data.draw(
            st.lists(st.sampled_from(deletable), max_size=n_deletes) if deletable else st.just([])
        )
        theirs = set().union(*dict_diff(base_snap, head_snap))
        if theirs and data.draw(st.booleans()):  # aim at what changed since the base
            target = data.draw(st.sampled_from(sorted(theirs)))
            cut = data.draw(st.integers(1, target.count("/") + 1))
            puts = [("/".join(target.split("/")[:cut]), b"collide"), *puts]
        # One change per path, none inside another (the model's semantics of a batch).
        batch: dict[str, bytes | None] = {}
        for path, value in [(p, None) for p in deletes] + list(puts):
            if not any(related(path, other) for other in batch):
                batch[path] = value

        changes: dict[str, Change] = {}
        contents = {p: self.uploader.add_bytes(v) for p, v in batch.items() if v is not None}
        self.uploader.finish()
        for path, value in batch.items():
            if value is None:
                changes[path] = None
            else:
                content = contents[path]
                assert content.sha256 == sha256_hex(value)
                changes[path] = content.entry(path.rsplit("/", 1)[-1], MODE, MTIME)
        staged = dict(changes)

        clashes = {p for p in batch if any(related(p, q) for q in theirs)}
        blocked = any(
            "/".join(p.split("/")[:i]) in head_snap
            for p, v in batch.items()
            if v is not None
            for i in range(1, p.count("/") + 1)
        )
        try:
            cid = self.repo.commit(
                branch,
                changes,
                message,
                provenance={"rule": "commit", "n": len(batch)},
                base=base if use_base else None,
            )
        except Conflict as err:
            event("commit: conflict")
            assert clashes, f"unexpected conflict {err}"
            assert err.paths == sorted(clashes)
            assert err.branch == branch
            assert branch in str(err)
            assert changes == staged
            return
        except NotADirectory:
            event("commit: not a directory")
            assert blocked and not clashes
            assert changes == staged
            return
        event("commit: rebased onto a moved head" if base != head else "commit: plain")
        assert not clashes, f"missed conflict on {sorted(clashes)}"
        assert not blocked
        assert changes == staged
        new = dict(head_snap)
        for path, value in batch.items():
            for old in [p for p in new if p == path or p.startswith(path + "/")]:
                del new[old]
            if value is not None:
                new[path] = value
        assert cid not in self.snapshots
        self.snapshots[cid] = new
        self.parent[cid] = head
        self.heads[branch] = cid
        commit = self.repo.commit_object(cid)
        assert commit.parents == (head,)
        assert commit.message == message
        assert commit.provenance == {"rule": "commit", "n": len(batch)}

    @rule(data=st.data())
    def delete_branch(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(BRANCH_NAMES))
        if name not in self.heads:
            with pytest.raises(NotFound):
                self.repo.refs.delete_branch(name)
            return
        self.repo.refs.delete_branch(name)
        del self.heads[name]

    # -- invariants ------------------------------------------------------------------------
    @invariant()
    def refs_match(self) -> None:
        repo = self.fresh_repo()
        assert repo.refs.branches() == self.heads
        assert repo.refs.tags() == self.tags

    @invariant()
    def logs_match(self) -> None:
        repo = self.fresh_repo()
        for branch, head in self.heads.items():
            expected = self.history(head)
            got = [cid for cid, _ in repo.log(branch)]
            assert got == expected
            for newer, older in zip(expected, expected[1:], strict=False):
                diff = repo.diff(older, newer)
                want = dict_diff(self.snapshots[older], self.snapshots[newer])
                assert (diff.added, diff.modified, diff.deleted) == want
            # log restricted to a path that was only ever a file (or absent) in this history.
            snaps = [self.snapshots[c] for c in expected]
            for path in sorted({p for s in snaps for p in s})[:3]:
                if any(q.startswith(path + "/") for s in snaps for q in s):
                    continue
                want_log = [
                    c
                    for c in expected
                    if self.snapshots[c].get(path)
                    != (self.snapshots[p].get(path) if (p := self.parent[c]) else None)
                ]
                assert [c for c, _ in repo.log(branch, path)] == want_log

    @invariant()
    def contents_match(self) -> None:
        repo = self.fresh_repo()
        reachable = {c for head in self.heads.values() for c in self.history(head)}
        for cid in sorted(reachable):
            snapshot = self.snapshots[cid]
            files = {p: e for p, e in repo.walk(cid) if e.kind != "dir"}
            assert sorted(files) == sorted(snapshot)
            if cid in self.checked:
                continue  # immutable: the bytes were compared once already
            for path, entry in files.items():
                want = snapshot[path]
                assert entry.kind == "file" and entry.size == len(want)
                assert entry.sha256 == sha256_hex(want)
                assert repo.stat(cid, path) == entry
                assert repo.read_range(entry, 0, entry.size + 10) == want
                assert b"".join(repo.read_file(entry)) == want
                for offset, size in [(1, 5), (CHUNK - 3, 7), (CHUNK, CHUNK + 1), (len(want), 4)]:
                    assert repo.read_range(entry, offset, size) == want[offset : offset + size]
            self.checked.add(cid)

    @invariant()
    def ids_resolve(self) -> None:
        repo = self.fresh_repo()
        for cid in self.snapshots:
            assert repo.resolve(self.short_id(cid)) == cid
            assert repo.resolve(cid.upper()) == cid
        for name, cid in self.tags.items():
            assert repo.resolve(name) == cid


RepoModel.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestRepoModel = RepoModel.TestCase
