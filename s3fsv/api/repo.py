"""A repo seen from Python: refs, history, listings, verified reads, and transactions."""

from __future__ import annotations

import copy
import io
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from s3fsv.api.files import RepoFile
from s3fsv.api.refs import FileRef
from s3fsv.api.transaction import Transaction
from s3fsv.store.objects import Commit, TreeEntry, split_path
from s3fsv.store.repo import Diff, Repository
from s3fsv.store.transfer import get, local_changes, scan_local

if TYPE_CHECKING:
    from s3fsv.api.store import Store

__all__ = ["CommitInfo", "Diff", "EntryInfo", "Repo"]


@dataclass(frozen=True)
class CommitInfo:
    """One commit. ``time`` is UTC ISO-8601 ending in ``Z``; ``provenance`` is what the commit
    records of how it was made (docs/format.md, section 11)."""

    id: str
    tree: str
    parents: tuple[str, ...]
    author: str
    time: str
    message: str
    provenance: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, cid: str, commit: Commit) -> CommitInfo:
        """The commit object ``commit`` stored under ``cid``."""
        # A copy: the decoded commit is shared, and changing it would change what this process
        # takes the commit to be.
        return cls(
            cid,
            commit.tree,
            commit.parents,
            commit.author,
            commit.time,
            commit.message,
            copy.deepcopy(commit.provenance),
        )


@dataclass(frozen=True)
class EntryInfo:
    """One file, directory or symlink of a snapshot. ``path`` is relative to the snapshot's
    root, without a leading slash (``""`` is the root); ``sha256`` is the whole content's hash
    (files only), equal to what ``sha256sum`` prints of the file; ``target`` is a symlink's;
    ``attrs`` and ``source`` are an imported file's attributes and original (``s3fsv import``)."""

    path: str
    kind: Literal["file", "dir", "link"]
    size: int
    mode: int
    mtime_ns: int
    sha256: str = ""
    target: str = ""
    tree: str = ""  # a directory's tree id: equal ids, equal contents below it
    attrs: Mapping[str, str] = field(default_factory=dict, hash=False)  # imported: house, device
    source: str = ""  # s3://BUCKET/KEY of the original an imported file is kept in

    @property
    def name(self) -> str:
        """The last part of ``path`` (``""`` for the root)."""
        return self.path.rsplit("/", 1)[-1]

    @classmethod
    def of(cls, path: str, entry: TreeEntry) -> EntryInfo:
        """The tree entry ``entry`` found at ``path``."""
        size = entry.size if entry.kind != "dir" else 0
        return cls(
            path,
            entry.kind,
            size,
            entry.mode,
            entry.mtime_ns,
            entry.sha256,
            entry.target,
            entry.tree,
            dict(entry.attrs),
            entry.source.url if entry.source is not None else "",
        )


def clean_path(path: str) -> str:
    """``path`` as the store names it: no leading or trailing slash. Refuses ``..``, ``.``,
    empty components and NUL (``InvalidName``)."""
    return "/".join(split_path(path))


class Repo:
    """One repo of an open :class:`Store`. Thread-safe.

    Every method taking ``ref`` accepts a branch, a tag, a full commit id or a unique prefix of
    one, and ``REF~N`` for the N-th parent. Reads of a branch see its head at the time of the
    call; pin a commit id (:meth:`resolve`) to read one snapshot across several calls.
    """

    def __init__(self, store: Store, inner: Repository) -> None:
        self._store = store
        self._inner = inner

    @property
    def name(self) -> str:
        """The repo's name."""
        return self._inner.name

    @property
    def chunk_size(self) -> int:
        """Bytes per chunk of this repo's files (docs/format.md, section 7)."""
        return self._inner.chunk_size

    def __repr__(self) -> str:
        return f"<s3fsv.Repo {self.name} of {self._store.url}>"

    # -- refs and history -------------------------------------------------------------------
    def resolve(self, ref: str = "main") -> str:
        """The full commit id ``ref`` names now; ``NotFound`` when it names none. A full id
        costs no request once its commit is cached."""
        return self._inner.resolve(ref)

    def branches(self) -> dict[str, str]:
        """Branch name -> head commit id."""
        return self._inner.refs.branches()

    def tags(self) -> dict[str, str]:
        """Tag name -> commit id."""
        return self._inner.refs.tags()

    def create_branch(self, name: str, from_ref: str = "main") -> str:
        """Create branch ``name`` at ``from_ref``; return its commit id."""
        return self._inner.create_branch(name, from_ref)

    def delete_branch(self, name: str) -> None:
        """Delete branch ``name`` (its commits stay reachable by id until garbage-collected)."""
        self._inner.refs.delete_branch(name)

    def create_tag(self, name: str, ref: str) -> str:
        """Create tag ``name`` at ``ref`` (tags never move); return its commit id."""
        return self._inner.create_tag(name, ref)

    def commit(self, ref: str = "main") -> CommitInfo:
        """The commit ``ref`` names."""
        cid = self.resolve(ref)
        return CommitInfo.of(cid, self._inner.commit_object(cid))

    def log(
        self, ref: str = "main", path: str | None = None, *, limit: int | None = None
    ) -> Iterator[CommitInfo]:
        """Commits reachable from ``ref``, newest first (first parents), only those that changed
        ``path`` when it is given; at most ``limit`` of them."""
        if path is not None:
            path = clean_path(path)
        for n, (cid, commit) in enumerate(self._inner.log(ref, path)):
            if limit is not None and n >= limit:
                return
            yield CommitInfo.of(cid, commit)

    def diff(self, a: str, b: str) -> Diff:
        """Paths of files and symlinks added, modified and deleted from ``a`` to ``b``."""
        return self._inner.diff(a, b)

    # -- reading ----------------------------------------------------------------------------
    def stat(self, ref: str, path: str = "") -> EntryInfo:
        """The entry at ``path``; ``NotFound`` when there is none."""
        path = clean_path(path)
        return EntryInfo.of(path, self._inner.stat(self.resolve(ref), path))

    def ls(self, ref: str, path: str = "") -> list[EntryInfo]:
        """The entries of directory ``path``, sorted by name (a file lists as itself)."""
        path = clean_path(path)
        cid = self.resolve(ref)
        entry = self._inner.stat(cid, path)
        if entry.kind != "dir":
            return [EntryInfo.of(path, entry)]
        prefix = f"{path}/" if path else ""
        return [EntryInfo.of(prefix + e.name, e) for e in self._inner.listdir(cid, path)]

    def walk(self, ref: str, path: str = "") -> Iterator[EntryInfo]:
        """Every entry below ``path`` at any depth, directories before what they hold, in
        name order (just ``path`` when it is a file)."""
        path = clean_path(path)
        for p, entry in self._inner.walk(self.resolve(ref), path):
            yield EntryInfo.of(p, entry)

    def read_bytes(self, ref: str, path: str) -> bytes:
        """The whole content of the file at ``path`` (a symlink there followed to its target in
        the snapshot), every chunk verified against its hash; ``UsageError`` for a directory."""
        with self.open(ref, path) as fh:
            return fh.read()

    def open(self, ref: str, path: str, *, buffering: int = 1024 * 1024) -> io.BufferedReader:
        """The file at ``path`` as a seekable, read-only binary file. Reads fetch only the
        chunks they need, through the shared disk cache, and are verified against their hash;
        bytes that do not match are ``CorruptObject``, never data."""
        cid = self.resolve(ref)
        entry = self._inner.file_entry(cid, clean_path(path), shown=f"{self.name}@{ref}:{path}")
        self._store._note_read(self.name, cid)
        raw = RepoFile(self._store._reader(self._inner), entry, f"{self.name}@{cid[:12]}:{path}")
        return io.BufferedReader(raw, buffer_size=max(buffering, io.DEFAULT_BUFFER_SIZE))

    def read_many(self, ref: str, paths: list[str]) -> dict[str, bytes]:
        """The contents of many files of one snapshot, verified, in one pass that fetches
        neighbouring small files together (one ranged read per pack span, as the mount's
        look-ahead does). Every path must name a file (or a link to one)."""
        cid = self.resolve(ref)
        self._store._note_read(self.name, cid)
        reader = self._store._reader(self._inner)
        wanted = [
            (p, self._inner.file_entry(cid, clean_path(p), shown=f"{self.name}@{ref}:{p}"))
            for p in paths
        ]
        out: dict[str, bytes] = {}
        for i, (path, entry) in enumerate(wanted):
            if reader.lookahead_due(entry):
                reader.prefetch_files((e for _, e in wanted[i:]), last=True)
            out[path] = bytes(reader.read(entry, 0, entry.size))
        return out

    def read_ref(self, ref: FileRef) -> bytes:
        """The content of an uploaded file (see :meth:`upload`), verified."""
        if ref.kind == "link":
            return ref.entry.target.encode()
        reader = self._store._reader(self._inner)
        return bytes(reader.read(ref.entry, 0, ref.size))

    def download(
        self,
        ref: str,
        path: str,
        dest: str | os.PathLike[str],
        *,
        threads: int = 16,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Download the file or directory at ``path`` to ``dest`` (a directory's contents go
        below ``dest``; a file goes to ``dest``, or into it when it is a directory), each file
        checked against its SHA-256 before it appears under its name. Returns the number of
        files written; ``progress`` is called with byte counts as they arrive."""
        cid = self.resolve(ref)
        self._store._note_read(self.name, cid)
        return get(self._inner, cid, clean_path(path), Path(dest), threads=threads,
                   progress=progress)  # fmt: skip

    # -- writing ----------------------------------------------------------------------------
    def upload(self, local_path: str | os.PathLike[str], path: str = "") -> dict[str, FileRef]:
        """Store the content of a local file, or of every file and symlink below a local
        directory, without committing it; return the refs keyed by repo path (``path`` joined
        with the path below ``local_path``). Needs write access to objects only, never to a
        branch: place the refs with ``Transaction.put``."""
        items = scan_local(Path(local_path), clean_path(path))
        changes = local_changes(self._inner, items, threads=8)
        return {p: FileRef(e) for p, e in changes.items() if e is not None and e.kind != "dir"}

    def transaction(
        self,
        branch: str = "main",
        *,
        message: str,
        author: str | None = None,
        provenance: Mapping[str, Any] | None = None,
        allow_empty: bool = False,
        base: str | None = None,
    ) -> Transaction:
        """Changes to ``branch`` that become one commit. Use as a context manager: the commit is
        made when the block exits without an exception, and nothing is committed when it raises.
        See :class:`Transaction`. Changes that leave the tree as it was make no commit, unless
        ``allow_empty``. ``base``: the commit the changes are meant for (a full id of the
        branch's history; default its head now): a path that changed on the branch since then
        is a ``Conflict`` at commit time, not overwritten."""
        return Transaction(
            self._store, self._inner, branch, message, author, provenance, allow_empty, base
        )
