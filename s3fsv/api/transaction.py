"""Changes to a branch collected in Python and made into one commit."""

from __future__ import annotations

import bisect
import os
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from s3fsv.api.refs import FileRef
from s3fsv.errors import AlreadyExists, NotADirectory, NotFound, UsageError
from s3fsv.store.objects import Attrs, TreeEntry, check_attrs, split_path
from s3fsv.store.provenance import command_of, provenance_context
from s3fsv.store.repo import Repository
from s3fsv.store.transfer import LocalItem, local_entry, scan_local
from s3fsv.store.tree import resolve
from s3fsv.store.upload import Content, Uploader

if TYPE_CHECKING:
    from s3fsv.api.store import Store

# What a path holds in the transaction: new content (uploaded, its entry made at commit: mode,
# mtime, attributes), an existing entry carried by a rename, or None for deleted.
_Pending = tuple[Content, int, int, Attrs] | TreeEntry | None


class Transaction:
    """Writes, uploads, deletes and renames on one branch, committed together.

    The branch head is read when the transaction starts; that is its :attr:`base`, and every
    path is looked up there (overlaid with the transaction's own changes). Content is uploaded
    as it is given, so a large transaction holds no file in memory, but nothing is visible to
    anyone until :meth:`commit`. If the branch moved meanwhile, the changes are applied on top
    of the new head when no path was changed on both sides; otherwise ``Conflict`` names the
    paths, and nothing is committed. The commit records provenance: who, where, the command
    line of this process, and every commit this store handle has read (``inputs``).

    Not for concurrent use from several threads.
    """

    def __init__(
        self,
        store: Store,
        repo: Repository,
        branch: str,
        message: str,
        author: str | None,
        provenance: Mapping[str, Any] | None,
        allow_empty: bool = False,
        base: str | None = None,
    ) -> None:
        if not message or not message.strip():
            raise UsageError("a transaction needs a commit message")
        self._store = store
        self._repo = repo
        self.branch = branch
        self.message = message
        self._author = author
        self._provenance = dict(provenance or {})
        self._allow_empty = allow_empty
        self.base: str = base if base is not None else repo.branch_head(branch).commit
        self._base_tree = repo.commit_object(self.base).tree
        self._pending = _Paths()
        self._uploader = Uploader(repo.objects, repo.chunk_size, threads=8)
        self._lock = threading.Lock()
        self.commit_id: str | None = None
        self._done = False
        self._empty_tree: str | None = None

    # -- changes ----------------------------------------------------------------------------
    def write(
        self,
        path: str,
        data: bytes | bytearray | memoryview,
        *,
        mode: int = 0o644,
        mtime_ns: int | None = None,
        attrs: Mapping[str, str] | None = None,
    ) -> None:
        """Set the content of file ``path`` (made, or replaced), creating its directories.
        ``mtime_ns`` defaults to now; ``attrs`` are file attributes (lowercase names, short
        string values: see ``check_attrs``), readable as ``user.s3fsv.attr.NAME`` xattrs."""
        path = self._path(path)
        self._check_parents(path)
        if self._kind(path) == "dir":
            raise UsageError(f"cannot write {path}: it is a directory")
        try:
            checked = check_attrs(attrs or {})
        except ValueError as err:
            raise UsageError(f"cannot write {path}: {err}") from None
        content = self._uploader.add_bytes(bytes(data))
        self._forget_below(path)
        when = time.time_ns() if mtime_ns is None else mtime_ns
        self._pending[path] = (content, mode & 0o7777, when, checked)

    def upload(
        self, local_path: str | os.PathLike[str], path: str, *, mode: int | None = None
    ) -> int:
        """Upload a local file to ``path``, or a local directory's contents below ``path``
        (symlinks inside it stored as links); return the number of files uploaded. Each file
        is read during the call (it may change or go afterwards) and stored with the
        transaction's other content, so small files share packs. ``mode`` sets the
        permission bits of the file(s), default the local ones."""
        path = self._path(path)
        self._check_parents(path)
        items = scan_local(Path(local_path), path)
        if items[0].kind == "dir":
            if self._kind(path) == "file":
                raise UsageError(f"cannot upload a directory to {path}: it is a file")
        elif self._kind(path) == "dir":
            raise UsageError(f"cannot upload a file to {path}: it is a directory")
        for item in sorted(items, key=_walk_order):  # packed siblings end up side by side
            if item.kind == "dir":
                self._ensure_dir(item)
                continue
            if item.kind == "file":
                content = self._uploader.add_file(item.local)
                bits = item.mode if mode is None else mode
                value: _Pending = (content, bits & 0o7777, item.mtime_ns, ())
            else:
                value = local_entry(item)
            self._forget_below(item.rel)
            self._pending[item.rel] = value
        return sum(1 for i in items if i.kind == "file")

    def put(self, path: str, ref: FileRef) -> None:
        """Place uploaded content (``Repo.upload``, possibly by another process) at ``path``,
        made or replaced, creating its directories."""
        path = self._path(path)
        self._check_parents(path)
        if self._kind(path) == "dir":
            raise UsageError(f"cannot put {path}: it is a directory")
        self._forget_below(path)
        self._pending[path] = ref.entry

    def mkdir(self, path: str, *, mode: int = 0o755) -> bool:
        """Make an empty directory at ``path`` (and the directories above it). Return False,
        changing nothing, when a directory is there already; ``AlreadyExists`` when a file or
        symlink is."""
        path = self._path(path)
        self._check_parents(path)
        kind = self._kind(path)
        if kind == "dir":
            return False
        if kind is not None:
            raise AlreadyExists(f"cannot make directory {path}: a {kind} is there")
        name = path.rsplit("/", 1)[-1]
        self._pending[path] = TreeEntry(
            name, "dir", mode & 0o7777, time.time_ns(), tree=self._empty()
        )
        return True

    def delete(self, path: str) -> None:
        """Delete the file, symlink or directory (with everything below it) at ``path``;
        ``NotFound`` when there is none."""
        path = self._path(path)
        if self._kind(path) is None:
            raise NotFound(f"cannot delete {path}: no such file or directory")
        self._forget_below(path)
        self._pending[path] = None

    def rename(self, old: str, new: str) -> None:
        """Move ``old`` (a file, symlink or directory) to ``new``. A file or symlink at ``new``
        is replaced; a directory there is refused with ``AlreadyExists``."""
        self._carry(old, new, keep=False)

    def copy(self, src: str, dst: str, *, ref: str | None = None) -> None:
        """Copy ``src`` (a file, symlink or directory with everything below it) to ``dst``,
        as this transaction sees it, or as commit ``ref`` of the same repo has it (any ref
        :meth:`Repo.resolve` takes: a file can be restored from an old commit this way). The
        copy shares the stored content, so no bytes are transferred. Replacing follows
        :meth:`rename`'s rules."""
        self._carry(src, dst, keep=True, ref=ref)

    def kind(self, path: str) -> str | None:
        """What ``path`` is in the base overlaid with this transaction's changes: ``"file"``,
        ``"dir"``, ``"link"``, or None when nothing is there. The root is a directory."""
        if self._done:
            raise UsageError("this transaction has ended already")
        clean = "/".join(split_path(path))
        return "dir" if not clean else self._kind(clean)

    # -- ending -----------------------------------------------------------------------------
    def commit(self) -> str:
        """Make the commit and return its id (the base's when nothing changed, since no
        commit is made then). The transaction is over afterwards, whatever the outcome."""
        self._end()
        try:
            self._uploader.finish()
            changes: dict[str, TreeEntry | None] = {}
            for path, value in self._pending.items():
                if isinstance(value, tuple):
                    content, mode, mtime_ns, attrs = value
                    entry = content.entry(path.rsplit("/", 1)[-1], mode, mtime_ns)
                    value = replace(entry, attrs=attrs) if attrs else entry
                changes[path] = value
            self.commit_id = self._repo.commit(
                self.branch,
                changes,
                self.message,
                author=self._author,
                provenance=self._commit_provenance(),
                base=self.base,
                allow_empty=self._allow_empty,
                missing_ok=True,  # a rename deletes its source whether or not it existed
            )
            return self.commit_id
        finally:
            self._uploader.close()

    def abort(self) -> None:
        """End the transaction without committing. What was uploaded stays unreferenced in
        the store until garbage collection."""
        self._end()
        self._uploader.close()

    def __enter__(self) -> Transaction:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if self._done:
            return
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    # -- helpers ----------------------------------------------------------------------------
    def _end(self) -> None:
        with self._lock:
            if self._done:
                raise UsageError("this transaction has ended already")
            self._done = True

    def _path(self, path: str) -> str:
        if self._done:
            raise UsageError("this transaction has ended already")
        clean = "/".join(split_path(path))
        if not clean:
            raise UsageError("a transaction cannot change the root directory itself")
        return clean

    def _commit_provenance(self) -> dict[str, Any]:
        inputs = [{**read, "via": "api"} for read in self._store.commits_read()]
        command = command_of(os.getpid())
        out: dict[str, Any] = {**provenance_context(), "inputs": inputs}
        if command:
            out["commands"] = [command]
        out.update(self._provenance)
        return out

    def _carry(self, old: str, new: str, *, keep: bool, ref: str | None = None) -> None:
        """Put what ``old`` holds (in this transaction, or in commit ``ref``) at ``new``; with
        ``keep`` False, ``old`` goes (a rename)."""
        old, new = self._path(old), self._path(new)
        verb = "copy" if keep else "rename"
        if ref is not None:
            entry = self._lookup(self._repo.commit_object(self._repo.resolve(ref)).tree, old)
            if entry is None:
                raise NotFound(f"cannot {verb} {old}: no such file or directory in {ref}")
            carried: _Pending = entry
            moved: dict[str, _Pending] = {}
        else:
            if self._kind(old) is None:
                raise NotFound(f"cannot {verb} {old}: no such file or directory")
            if new == old:
                return
            carried = self._concrete(old)
            moved = {p: self._pending[p] for p in self._pending.below(old)}
        if ref is None and new.startswith(old + "/"):
            raise UsageError(f"cannot {verb} {old} into itself ({new})")
        if self._kind(new) == "dir":
            raise AlreadyExists(f"cannot {verb} {old} to {new}: {new} is a directory")
        self._check_parents(new)
        if not keep:
            self._forget_below(old)
            self._pending[old] = None
        self._forget_below(new)
        self._pending[new] = carried
        for p, v in moved.items():
            self._pending[new + p[len(old) :]] = v

    def _ensure_dir(self, item: LocalItem) -> None:
        """Make sure a directory is at ``item.rel`` (mkdir -p), keeping what is there."""
        current = self._pending.get(item.rel, _ABSENT)
        if current is _ABSENT:  # the base's directory, if any, stays with its contents
            self._pending[item.rel] = local_entry(item)
        elif not (isinstance(current, TreeEntry) and current.kind == "dir"):
            # Deleted or replaced in this transaction: the base's contents must not return.
            self._pending[item.rel] = replace(local_entry(item), tree=self._empty())

    def _concrete(self, path: str) -> _Pending:
        """``_value(path)``, with a directory that need only exist made the one it stands
        for (the base's, or an empty one): moved elsewhere, it must not pick up what is there."""
        value = self._value(path)
        if not _is_ensure_dir(value):
            return value
        assert isinstance(value, TreeEntry)
        del self._pending[path]
        try:
            under = self._value(path)
        finally:
            self._pending[path] = value
        tree = under.tree if isinstance(under, TreeEntry) and under.kind == "dir" else ""
        return replace(value, tree=tree or self._empty())

    def _empty(self) -> str:
        """The id of the empty tree, stored (once per transaction)."""
        if self._empty_tree is None:
            self._empty_tree = self._repo.empty_tree()
        return self._empty_tree

    def _value(self, path: str) -> _Pending:
        """What ``path`` itself holds in the base overlaid with this transaction, ignoring
        changes below it: new content, an entry, or None (nothing, or a directory that exists
        only through files written below it)."""
        if path in self._pending:
            return self._pending[path]
        parts = path.split("/")
        for i in range(len(parts) - 1, 0, -1):  # the nearest changed directory above decides
            above = self._pending.get("/".join(parts[:i]), _ABSENT)
            if above is _ABSENT:
                continue
            if _is_ensure_dir(above):
                continue  # a directory that need only exist: what is below it is the base's
            if isinstance(above, TreeEntry) and above.kind == "dir":
                return self._lookup(above.tree, "/".join(parts[i:]))
            return None
        return self._lookup(self._base_tree, path)

    def _lookup(self, tree: str, path: str) -> TreeEntry | None:
        try:
            return resolve(self._repo.objects, tree, path)
        except (NotFound, NotADirectory):
            return None

    def _kind(self, path: str) -> str | None:
        """What ``path`` is in the base overlaid with this transaction: file, dir, link or
        None."""
        if self._has_pending_below(path):
            return "dir"
        value = self._value(path)
        if value is None:
            return None
        return "file" if isinstance(value, tuple) else value.kind

    def _has_pending_below(self, path: str) -> bool:
        return self._pending.holds_below(path)

    def _check_parents(self, path: str) -> None:
        parts = path.split("/")
        for i in range(1, len(parts)):
            above = "/".join(parts[:i])
            if self._kind(above) in ("file", "link"):
                raise UsageError(f"cannot create {path}: {above} is not a directory")

    def _forget_below(self, path: str) -> None:
        for p in self._pending.below(path):
            del self._pending[p]


_ABSENT: Any = object()


class _Paths(dict[str, _Pending]):
    """Pending changes by path, the paths also kept sorted: finding those below a directory
    is a binary search, not a scan of all (an import puts many thousands in one commit)."""

    def __init__(self) -> None:
        super().__init__()
        self._sorted: list[str] = []

    def __setitem__(self, path: str, value: _Pending) -> None:
        if path not in self:
            bisect.insort(self._sorted, path)
        super().__setitem__(path, value)

    def __delitem__(self, path: str) -> None:
        super().__delitem__(path)
        del self._sorted[bisect.bisect_left(self._sorted, path)]

    def _from(self, path: str) -> Iterator[str]:
        prefix = path + "/"
        for i in range(bisect.bisect_left(self._sorted, prefix), len(self._sorted)):
            if not self._sorted[i].startswith(prefix):
                return
            yield self._sorted[i]

    def below(self, path: str) -> list[str]:
        """The paths below directory ``path`` (contiguous in sorted order)."""
        return list(self._from(path))

    def holds_below(self, path: str) -> bool:
        """Whether something (not a deletion) is pending below directory ``path``."""
        return any(self[p] is not None for p in self._from(path))


def _is_ensure_dir(value: object) -> bool:
    """A pending directory entry without a tree: "make sure a directory is here", keeping
    what the base has there (as ``Repository.commit`` applies it)."""
    return isinstance(value, TreeEntry) and value.kind == "dir" and not value.tree


def _walk_order(item: LocalItem) -> list[str]:
    return item.rel.split("/")
