"""A repository: refs, commits, trees and file contents, and the commit protocol.

Commit protocol (see ARCHITECTURE.md): chunks are uploaded by the caller first (``upload.py``),
then ``commit`` writes the changed trees bottom-up, then the commit object, then moves the branch
with compare-and-swap. When the swap loses, the changes are re-applied on the new head if no path
was changed on both sides, and the swap is retried; otherwise ``Conflict`` names the paths. The
caller's change set is never modified, so nothing staged is lost either way.
"""

from __future__ import annotations

import getpass
import logging
import posixpath
import socket
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from s3fsv.errors import (
    AlreadyExists,
    Conflict,
    CorruptObject,
    InvalidName,
    IsADirectory,
    NotADirectory,
    NotFound,
    PreconditionFailed,
    UsageError,
)
from s3fsv.store.backend.base import Backend
from s3fsv.store.events import Events
from s3fsv.store.lineage import try_index_commit
from s3fsv.store.objects import Commit, Tree, TreeEntry, is_commit_prefix, is_object_id, split_path
from s3fsv.store.objectstore import ByteCache, ObjectStore
from s3fsv.store.refs import Refs, RefValue, split_ancestry
from s3fsv.store.tree import (
    EMPTY_TREE_ID,
    Change,
    apply_changes,
    dir_entries,
    resolve,
    walk,
    write_dir,
)

log = logging.getLogger(__name__)

MAX_COMMIT_ATTEMPTS = 50
MAX_LINK_HOPS = 40  # as the kernel allows


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def default_author() -> str:
    try:
        user = getpass.getuser()
    except Exception:
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


@dataclass(frozen=True)
class Diff:
    """Paths of files and symlinks that differ between two trees (and, when asked for, of
    empty directories added or removed, which no file path shows), each list sorted."""

    added: list[str] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    def paths(self) -> set[str]:
        """Every path added, modified or deleted."""
        return set(self.added) | set(self.modified) | set(self.deleted)


class Repository:
    """One repo of a store. Thread-safe; share one instance between threads."""

    def __init__(
        self,
        backend: Backend,
        name: str,
        chunk_size: int,
        cache: ByteCache | None = None,
        events: Events | None = None,
    ) -> None:
        self.backend = backend
        self.name = name
        self.chunk_size = chunk_size
        self.objects = ObjectStore(backend, name, cache, chunk_size=chunk_size)
        self.refs = Refs(backend, name, events)

    def init_main(self) -> str:
        root = self.objects.put(Tree())
        commit = Commit(root, (), default_author(), utc_now(), "Create repository")
        cid = self.objects.put(commit)
        self.refs.create_branch("main", cid)
        return cid

    # -- refs -------------------------------------------------------------------------------
    def resolve(self, ref: str) -> str:
        """A commit id for a branch, a tag, a full commit id or a unique prefix (>= 4 hex),
        optionally followed by ``~N`` (the N-th first-parent ancestor; ``~`` alone is ``~1``)."""
        if not ref:
            raise UsageError("empty ref")
        base, steps = split_ancestry(ref)
        commit = self._resolve_name(base)
        for walked in range(steps):
            parents = self.commit_object(commit).parents
            if not parents:
                raise NotFound(
                    f"{ref!r} in repo {self.name!r} goes back past the first commit "
                    f"({base} has {walked} ancestors)"
                )
            commit = parents[0]
        return commit

    def _resolve_name(self, ref: str) -> str:
        if is_object_id(ref.lower()):
            # No branch or tag can have this name (creation refuses names that look like
            # commit ids), so the two ref reads it would cost are skipped: programs that pin
            # a commit resolve it on every call.
            self.commit_object(ref.lower())
            return ref.lower()
        try:
            return self.refs.branch(ref).commit
        except (NotFound, InvalidName):
            pass
        try:
            return self.refs.tag(ref)
        except (NotFound, InvalidName):
            pass
        ref = ref.lower()
        if is_commit_prefix(ref):
            matches = self._commits_with_prefix(ref)
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise UsageError(f"ambiguous commit prefix {ref!r} in repo {self.name!r}")
        raise NotFound(f"no branch, tag or commit {ref!r} in repo {self.name!r}")

    def _commits_with_prefix(self, prefix: str) -> list[str]:
        key_prefix = f"{self.name}/objects/{prefix[:2]}/{prefix[2:]}"
        out = []
        for key in self.backend.list(key_prefix):
            oid = key[-65:].replace("/", "")
            if not is_object_id(oid):
                continue
            try:
                self.commit_object(oid)
            except CorruptObject:
                continue  # a chunk or a tree: not a commit
            out.append(oid)
        return out

    def branch_head(self, branch: str) -> RefValue:
        return self.refs.branch(branch)

    def create_branch(self, name: str, from_ref: str = "main") -> str:
        self._check_unambiguous(name, "branch")
        commit = self.resolve(from_ref)
        self.refs.create_branch(name, commit)
        return commit

    def create_tag(self, name: str, ref: str) -> str:
        self._check_unambiguous(name, "tag")
        commit = self.resolve(ref)
        self.refs.create_tag(name, commit)
        return commit

    def _check_unambiguous(self, name: str, kind: str) -> None:
        """Refs resolve branch, then tag, then commit id: a new name that another kind already
        answers to would silently change what ``REPO@name`` means (a mount pinned by tag would
        start following a branch)."""
        if is_commit_prefix(name.lower()):  # resolve lowercases what it is given
            raise UsageError(f"{kind} name {name!r} looks like a commit id: choose another name")
        other = self.refs.tags() if kind == "branch" else self.refs.branches()
        if name in other:
            clash = "tag" if kind == "branch" else "branch"
            raise AlreadyExists(f"repo {self.name!r} has a {clash} named {name!r} already")

    # -- reading ----------------------------------------------------------------------------
    def commit_object(self, commit_id: str) -> Commit:
        try:
            return self.objects.get(commit_id, Commit)
        except NotFound:
            raise NotFound(f"no commit {commit_id} in repo {self.name!r}") from None

    def stat(self, commit_id: str, path: str = "") -> TreeEntry:
        return resolve(self.objects, self.commit_object(commit_id).tree, path)

    def listdir(self, commit_id: str, path: str = "") -> Iterator[TreeEntry]:
        entry = self.stat(commit_id, path)
        if entry.kind != "dir":
            raise NotADirectory(f"not a directory: {path}")
        return dir_entries(self.objects, entry.tree)

    def walk(self, commit_id: str, path: str = "") -> Iterator[tuple[str, TreeEntry]]:
        """Every entry below ``path`` (or just ``path`` when it is a file), with full paths."""
        entry = self.stat(commit_id, path)
        if entry.kind != "dir":
            yield path, entry
            return
        yield from walk(self.objects, entry.tree, path)

    def read_range(self, entry: TreeEntry, offset: int, size: int) -> bytes:
        """Bytes ``[offset, offset+size)`` of a file entry, each chunk verified."""
        if entry.kind == "dir":
            raise IsADirectory(f"is a directory: {entry.name}")
        end = min(entry.size, offset + size)
        out = bytearray()
        while offset < end:
            idx, within = divmod(offset, self.chunk_size)
            if idx >= len(entry.chunks):
                raise CorruptObject(
                    entry.name,
                    f"file entry of {entry.size} bytes lists only {len(entry.chunks)} chunks",
                )
            data = self.objects.file_chunk(entry, idx)
            # Every chunk but the last is exactly chunk_size long: a chunk of any other length
            # would make the bytes at an offset depend on how the file is read.
            expected = min(self.chunk_size, entry.size - idx * self.chunk_size)
            if len(data) != expected:
                raise CorruptObject(
                    self.objects.key(entry.chunks[idx]),
                    f"chunk {idx} of {entry.name!r} has {len(data)} bytes, "
                    f"its file entry says {expected}",
                )
            piece = data[within : within + (end - offset)]
            out += piece
            offset += len(piece)
        return bytes(out)

    def file_entry(self, commit_id: str, path: str, *, shown: str | None = None) -> TreeEntry:
        """The file at ``path``, following symlinks inside the snapshot, at any component
        (``linked-dir/img.jpg`` as well as ``link-to-file``). ``UsageError`` for a directory,
        a link that leaves the snapshot or too many links; ``shown`` is how the caller named
        the path, for those messages."""
        shown = shown or path
        root = self.commit_object(commit_id).tree
        todo, done = split_path(path), []
        entry = self.stat(commit_id)
        hops = 0
        while todo:
            here = "/".join([*done, todo.pop(0)])
            entry = resolve(self.objects, root, here)
            if entry.kind != "link":
                done = here.split("/")
                continue
            hops += 1
            if hops > MAX_LINK_HOPS:
                raise UsageError(f"{shown}: too many levels of symbolic links")
            todo = split_path(_link_target(shown, here, entry.target)) + todo
            done = []
            entry = self.stat(commit_id)
        if entry.kind != "file":
            raise UsageError(f"not a file: {shown}")
        return entry

    def read_file(self, entry: TreeEntry) -> Iterator[bytes]:
        for idx in range(len(entry.chunks)):
            yield self.objects.file_chunk(entry, idx)

    # -- history ----------------------------------------------------------------------------
    def log(self, ref: str, path: str | None = None) -> Iterator[tuple[str, Commit]]:
        """Commits reachable from ``ref`` by first parents, newest first; with ``path``, only
        those that changed what is at ``path``."""
        if path is not None:
            path = "/".join(split_path(path))
        cid: str | None = self.resolve(ref)
        while cid:
            commit = self.commit_object(cid)
            parent = commit.parents[0] if commit.parents else None
            if path is None or not _same(
                self._entry_or_none(cid, path),
                self._entry_or_none(parent, path) if parent else None,
            ):
                yield cid, commit
            cid = parent

    def _entry_or_none(self, commit_id: str, path: str) -> TreeEntry | None:
        try:
            return self.stat(commit_id, path)
        except (NotFound, NotADirectory):
            return None

    def diff(self, old_ref: str, new_ref: str, *, empty_dirs: bool = False) -> Diff:
        old = self.commit_object(self.resolve(old_ref)).tree
        new = self.commit_object(self.resolve(new_ref)).tree
        return self.diff_trees(old, new, empty_dirs=empty_dirs)

    def diff_trees(self, old_tree: str, new_tree: str, *, empty_dirs: bool = False) -> Diff:
        """What changed from ``old_tree`` to ``new_tree``. ``empty_dirs`` adds the empty
        directories created or removed (for people; conflict checks compare file paths)."""
        out = Diff()
        empty = EMPTY_TREE_ID if empty_dirs else None
        self._diff_dir(old_tree, new_tree, "", out, empty)
        for lst in (out.added, out.modified, out.deleted):
            lst.sort()
        return out

    def _diff_dir(
        self, old: str | None, new: str | None, prefix: str, out: Diff, empty: str | None
    ) -> None:
        if old == new:
            return
        olds = {e.name: e for e in dir_entries(self.objects, old)} if old else {}
        news = {e.name: e for e in dir_entries(self.objects, new)} if new else {}
        for name in sorted(olds.keys() | news.keys()):
            a, b = olds.get(name), news.get(name)
            if a is not None and a.same_content(b):
                continue
            path = f"{prefix}/{name}" if prefix else name
            a_dir = a.tree if a is not None and a.kind == "dir" else None
            b_dir = b.tree if b is not None and b.kind == "dir" else None
            if a_dir or b_dir:
                self._diff_dir(a_dir, b_dir, path, out, empty)
            if a is not None and a.kind != "dir" and b is not None and b.kind != "dir":
                out.modified.append(path)
            elif a is not None and a.kind != "dir":
                out.deleted.append(path)
            elif b is not None and b.kind != "dir":
                out.added.append(path)
            if empty is not None and b_dir == empty and a_dir is None:
                out.added.append(path)
            elif empty is not None and a_dir == empty and b_dir is None:
                out.deleted.append(path)

    # -- writing ----------------------------------------------------------------------------
    def commit(
        self,
        branch: str,
        changes: Mapping[str, Change],
        message: str,
        *,
        author: str | None = None,
        provenance: Mapping[str, Any] | None = None,
        base: str | None = None,
        missing_ok: bool = False,
        allow_empty: bool = True,
    ) -> str:
        """Commit ``changes`` (path -> entry, or None to delete) onto ``branch``; return the id.

        ``base`` is the commit the changes were made against (default: the head read now). If the
        branch has moved past ``base``, the changes go on top of the new head when no path was
        changed on both sides; otherwise ``Conflict`` is raised. Every chunk the entries refer to
        must already be stored. With ``missing_ok``, deleting a path that no longer exists (for
        instance because the concurrent winner deleted it too) is not an error. Without
        ``allow_empty``, changes that leave the tree as it is make no commit: the head's id is
        returned.
        """
        changes = {"/".join(split_path(p)): c for p, c in changes.items()}
        mine = {p for p, c in changes.items() if not _is_ensure_dir(c)}
        ensure = {p for p, c in changes.items() if _is_ensure_dir(c)}
        head = self.refs.branch(branch)
        if base is not None and base != head.commit:
            self._check_disjoint(base, head.commit, mine, ensure, branch)
        # A concurrent gc must keep what the commit refers to (s3fsv/store/keepalive.py).
        keep = self.objects.keepalive
        keep.begin()
        revived = keep.freshen(referenced(changes.values()), packed_members(changes.values()))
        for _attempt in range(MAX_COMMIT_ATTEMPTS):
            parent = self.commit_object(head.commit)
            tree = apply_changes(self.objects, parent.tree, changes, missing_ok=missing_ok)
            if not allow_empty and tree == parent.tree:
                return head.commit
            commit = Commit(
                tree,
                (head.commit,),
                author or default_author(),
                utc_now(),
                message,
                dict(provenance or {}),
            )
            cid = self.objects.put(commit)
            keep.settle(revived)
            try:
                self.refs.move_branch(branch, cid, head, {"tree": tree, "message": message})
            except PreconditionFailed:
                new_head = self.refs.branch(branch)
                # Unless our put succeeded but its response was lost and the retry saw our own
                # write as a conflict: then the branch is where we wanted it.
                if new_head.commit != cid:
                    log.info(
                        "branch %s moved to %s during commit; rebasing", branch, new_head.commit
                    )
                    self._check_disjoint(head.commit, new_head.commit, mine, ensure, branch)
                    head = new_head
                    continue
            log.info("committed %s on %s/%s", cid, self.name, branch)
            # Only now: an entry written before the move could name a commit that never lands.
            try_index_commit(self.backend, self.name, cid, commit.provenance)
            return cid
        raise Conflict(sorted(mine), branch)  # pathological contention: give up, input intact

    def clashes(self, old: str, new: str, mine: set[str], ensure: set[str] = set()) -> set[str]:  # noqa: B006
        """The paths of ``mine`` that changes from commit ``old`` to ``new`` touch (the path, a
        parent or something below it), and those of ``ensure`` (directories that need only
        exist) changed exactly."""
        theirs = self.diff_trees(self.commit_object(old).tree, self.commit_object(new).tree)
        changed = theirs.paths()
        return related_paths(mine, changed) | (ensure & changed)

    def _check_disjoint(
        self, old: str, new: str, mine: set[str], ensure: set[str], branch: str
    ) -> None:
        clashes = self.clashes(old, new, mine, ensure)
        if clashes:
            raise Conflict(clashes, branch)

    def empty_tree(self) -> str:
        return write_dir(self.objects, [])


def _link_target(shown: str, path: str, target: str) -> str:
    """The snapshot path a symlink at ``path`` points to; links leaving the snapshot are refused."""
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
    if target.startswith("/") or joined == ".." or joined.startswith("../"):
        raise UsageError(f"{shown} is a link to {target!r}, outside the snapshot")
    return "" if joined == "." else joined


def _same(a: TreeEntry | None, b: TreeEntry | None) -> bool:
    return a is b or (a is not None and a.same_content(b))


def related_paths(mine: Iterable[str], theirs: Iterable[str]) -> set[str]:
    """The paths of ``mine`` that are a path of ``theirs``, above one or below one."""
    exact = set(theirs)
    above = {t[:i] for t in exact for i, c in enumerate(t) if c == "/"}
    found = set()
    for p in mine:
        if p in exact or p in above or any(p[:i] in exact for i, c in enumerate(p) if c == "/"):
            found.add(p)
    return found


def referenced(changes: Iterable[Change]) -> set[str]:
    """The store objects that the entries of ``changes`` refer to directly: a file's chunks or
    pack (not an imported original, which is no store object), a directory's tree."""
    out: set[str] = set()
    for entry in changes:
        if entry is None or entry.source is not None:
            continue
        if entry.kind == "file":
            out.update((entry.pack,) if entry.pack else entry.chunks)
        elif entry.kind == "dir" and entry.tree:
            out.add(entry.tree)
    return out


def packed_members(changes: Iterable[Change]) -> dict[str, set[int]]:
    """Pack -> offsets of the members the entries of ``changes`` are."""
    out: dict[str, set[int]] = {}
    for entry in changes:
        if entry is not None and entry.kind == "file" and entry.pack:
            out.setdefault(entry.pack, set()).add(entry.pack_offset)
    return out


def _is_ensure_dir(change: Change) -> bool:
    return change is not None and change.kind == "dir" and not change.tree
