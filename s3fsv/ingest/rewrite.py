"""History without some files: the scan and the rewrite a purge makes of one repo.

``scan`` walks every commit reachable from the given heads (all parents) and every tree of
them once per path, and finds the files to purge: their chunks (to evict from caches and to
delete), their originals (imported files) and the packs they share with other files.
``relocate`` copies the other members of those packs into new packs, so that the old packs
can be deleted whole. ``rewrite`` then gives each commit a new one whose tree lacks the purged
files (a directory left empty by them goes too) and points at the new packs, with rewritten
parents; a commit with nothing to change keeps its id. Author, time and message are kept;
provenance gains ``purge`` (the tombstone and the commit replaced).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

from s3fsv.errors import CorruptObject
from s3fsv.ingest.matching import Matcher
from s3fsv.store.objects import Commit, Object, Source, Tree, TreeEntry, object_id
from s3fsv.store.objectstore import Member
from s3fsv.store.repo import Repository
from s3fsv.store.tree import dir_entries, write_dir
from s3fsv.store.upload import Uploader


class _IdsOnly:
    """Stands in for an object store in a dry run: ids are computed, nothing is written."""

    def put(self, obj: Object) -> str:
        return object_id(obj)


@dataclass
class Found:
    """What a scan found (paths stay in memory: the tombstone holds only counts)."""

    paths: set[str] = field(default_factory=set)
    contents: set[str] = field(default_factory=set)  # sha256 of purged files
    bytes: int = 0
    evict: set[str] = field(default_factory=set)  # chunk ids of purged files
    objects: set[str] = field(default_factory=set)  # store objects holding purged bytes
    tainted: set[str] = field(default_factory=set)  # packs with a purged member
    originals: dict[tuple[str, str, str], Source] = field(default_factory=dict)
    # pack -> member content id -> (offset, size), for files that stay
    members: dict[str, dict[str, tuple[int, int]]] = field(default_factory=dict)


class HistoryRewrite:
    """The purge of one repo's history. Not thread-safe."""

    def __init__(self, repo: Repository, matcher: Matcher, *, dry_run: bool, tag: str) -> None:
        self.repo = repo
        self.matcher = matcher
        self.dry_run = dry_run
        self.tag = tag  # the tombstone id recorded in rewritten commits
        self.found = Found()
        self.commits: dict[str, Commit] = {}
        self.moved: dict[str, tuple[str, int]] = {}  # member content id -> (new pack, offset)
        self.new_ids: dict[str, str] = {}
        self._scanned: set[tuple[str, str]] = set()
        self._trees: dict[tuple[str, str], str] = {}
        self._writer: Any = _IdsOnly() if dry_run else repo.objects
        self._by_path = bool(matcher.patterns)

    # -- scan --------------------------------------------------------------------------------
    def scan(self, heads: list[str]) -> None:
        """Find everything to purge in the history of ``heads`` (commits already scanned are
        skipped, so a second call covers only what is new)."""
        pending = [h for h in heads if h not in self.commits]
        while pending:
            cid = pending.pop()
            if cid in self.commits:
                continue
            commit = self.repo.commit_object(cid)
            self.commits[cid] = commit
            self._scan_tree(commit.tree, "")
            pending.extend(p for p in commit.parents if p not in self.commits)

    def _key(self, tree: str, path: str) -> tuple[str, str]:
        return (tree, path if self._by_path else "")

    def _scan_tree(self, root: str, where: str) -> None:
        stack = [(root, where)]
        found = self.found
        while stack:
            tree, path = stack.pop()
            key = self._key(tree, path)
            if key in self._scanned:
                continue
            self._scanned.add(key)
            for e in dir_entries(self.repo.objects, tree):
                full = f"{path}/{e.name}" if path else e.name
                if e.kind == "dir":
                    stack.append((e.tree, full))
                elif self.matcher.matches(full, e):
                    found.paths.add(full)
                    if e.kind != "file":
                        continue
                    if e.sha256 not in found.contents:
                        found.contents.add(e.sha256)
                        found.bytes += e.size
                    found.evict.update(e.chunks)
                    if e.source is not None:
                        s = e.source
                        found.originals[(s.bucket, s.key, s.version or s.etag)] = s
                    elif e.pack:
                        found.tainted.add(e.pack)
                        found.objects.add(e.pack)
                    else:
                        found.objects.update(e.chunks)
                elif e.kind == "file" and e.pack:
                    found.members.setdefault(e.pack, {})[e.chunks[0]] = (e.pack_offset, e.size)

    # -- relocation --------------------------------------------------------------------------
    def relocate(self) -> int:
        """Copy the files that stay out of packs that held purged files; return how many."""
        survivors = [
            (pack, oid, where)
            for pack in sorted(self.found.tainted)
            for oid, where in sorted(self.found.members.get(pack, {}).items())
            if oid not in self.moved
        ]
        if self.dry_run:  # a stand-in pack id: the trees change as they would
            for pack, oid, (offset, _) in survivors:
                self.moved[oid] = (hashlib.sha256(pack.encode()).hexdigest(), offset)
            return len(survivors)
        # A store of its own, so that the uploader does not reuse the old packs it just read.
        fresh = Repository(self.repo.backend, self.repo.name, self.repo.chunk_size)
        contents = {}
        with Uploader(fresh.objects, fresh.chunk_size, threads=8) as up:
            for pack, oid, (offset, size) in survivors:
                data = self.repo.objects.get_member(Member(oid, pack, offset, size))
                if len(data) != size:
                    raise CorruptObject(oid, "packed file shorter than its entry says")
                contents[oid] = up.add_bytes(data)
            up.finish()
        for oid, content in contents.items():
            entry = content.entry("x", 0o644, 0)
            self.moved[oid] = (entry.pack, entry.pack_offset)
        return len(survivors)

    # -- rewrite -----------------------------------------------------------------------------
    def rewrite(self, head: str) -> str:
        """The id of ``head`` rewritten (its own when nothing in its history changes)."""
        order: list[str] = []
        stack: list[tuple[str, bool]] = [(head, False)]
        while stack:  # post-order: parents before children
            cid, ready = stack.pop()
            if cid in self.new_ids:
                continue
            if ready:
                order.append(cid)
                continue
            stack.append((cid, True))
            stack.extend((p, False) for p in self.commits[cid].parents if p not in self.new_ids)
        for cid in order:
            if cid not in self.new_ids:
                self.new_ids[cid] = self._rewrite_commit(cid)
        return self.new_ids[head]

    def _rewrite_commit(self, cid: str) -> str:
        commit = self.commits[cid]
        tree = self._rewrite_tree(commit.tree, "")
        parents = tuple(self.new_ids[p] for p in commit.parents)
        if tree == commit.tree and parents == commit.parents:
            return cid
        provenance = {**commit.provenance, "purge": {"tombstone": self.tag, "replaces": cid}}
        new = replace(commit, tree=tree, parents=parents, provenance=provenance)
        return self._writer.put(new)

    def _rewrite_tree(self, tree: str, path: str) -> str:
        key = self._key(tree, path)
        done = self._trees.get(key)
        if done is not None:
            return done
        entries = list(dir_entries(self.repo.objects, tree))
        out: list[TreeEntry] = []
        for e in entries:
            full = f"{path}/{e.name}" if path else e.name
            if e.kind == "dir":
                sub = self._rewrite_tree(e.tree, full)
                if sub != e.tree and sub == _EMPTY:
                    continue  # emptied by the purge: its name goes too
                out.append(replace(e, tree=sub) if sub != e.tree else e)
            elif self.matcher.matches(full, e):
                continue
            elif e.kind == "file" and e.pack in self.found.tainted:
                pack, offset = self.moved[e.chunks[0]]
                out.append(replace(e, pack=pack, pack_offset=offset))
            else:
                out.append(e)
        new = tree if out == entries else write_dir(self._writer, out)
        self._trees[key] = new
        return new


_EMPTY = object_id(Tree())
