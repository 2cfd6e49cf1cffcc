"""Changes to a branch collected in Python and made into one commit."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from s3fsv.errors import AlreadyExists, NotADirectory, NotFound, UsageError
from s3fsv.store.objects import TreeEntry, split_path
from s3fsv.store.provenance import command_of, provenance_context
from s3fsv.store.repo import Repository
from s3fsv.store.transfer import local_changes, scan_local
from s3fsv.store.tree import resolve
from s3fsv.store.upload import Content, Uploader

if TYPE_CHECKING:
    from s3fsv.api.store import Store

# What a path holds in the transaction: new content (uploaded, its entry made at commit), an
# existing entry carried by a rename, or None for deleted.
_Pending = tuple[Content, int, int] | TreeEntry | None


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
        *,
        allow_empty: bool = False,
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
        self.base: str = repo.branch_head(branch).commit
        self._base_tree = repo.commit_object(self.base).tree
        self._pending: dict[str, _Pending] = {}
        self._uploader = Uploader(repo.objects, repo.chunk_size, threads=8)
        self._lock = threading.Lock()
        self.commit_id: str | None = None
        self._done = False

    # -- changes ----------------------------------------------------------------------------
    def write(self, path: str, data: bytes | bytearray | memoryview, *, mode: int = 0o644) -> None:
        """Set the content of file ``path`` (made, or replaced), creating its directories."""
        path = self._path(path)
        self._check_parents(path)
        if self._kind(path) == "dir":
            raise UsageError(f"cannot write {path}: it is a directory")
        content = self._uploader.add_bytes(bytes(data))
        self._forget_below(path)
        self._pending[path] = (content, mode & 0o7777, time.time_ns())

    def upload(self, local_path: str | os.PathLike[str], path: str) -> int:
        """Upload a local file to ``path``, or a local directory's contents below ``path``
        (symlinks inside it stored as links; ``""`` or ``/`` is the root); return the number
        of files uploaded."""
        if not "/".join(split_path(path)) and Path(local_path).is_dir():
            self._path("root")  # only refuses an ended transaction
            items = scan_local(Path(local_path), "")  # the directory's contents, at the root
        else:
            path = self._path(path)
            self._check_parents(path)
            items = scan_local(Path(local_path), path)
            if items[0].kind == "dir":
                if self._kind(path) == "file":
                    raise UsageError(f"cannot upload a directory to {path}: it is a file")
            elif self._kind(path) == "dir":
                raise UsageError(f"cannot upload a file to {path}: it is a directory")
        changes = local_changes(self._repo, items, threads=8)
        for rel, entry in changes.items():
            if entry is not None and entry.kind != "dir":
                self._forget_below(rel)
            self._pending[rel] = entry
        return sum(1 for i in items if i.kind == "file")

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
        old, new = self._path(old), self._path(new)
        kind = self._kind(old)
        if kind is None:
            raise NotFound(f"cannot rename {old}: no such file or directory")
        if new == old:
            return
        if new.startswith(old + "/"):
            raise UsageError(f"cannot move {old} into itself ({new})")
        if self._kind(new) == "dir":
            raise AlreadyExists(f"cannot rename {old} to {new}: {new} is a directory")
        self._check_parents(new)
        moved = {p: v for p, v in self._pending.items() if p.startswith(old + "/")}
        carried = self._value(old)
        self._forget_below(old)
        self._forget_below(new)
        self._pending[old] = None
        self._pending[new] = carried
        for p, v in moved.items():
            self._pending[new + p[len(old) :]] = v

    # -- ending -----------------------------------------------------------------------------
    def commit(self) -> str:
        """Make the commit and return its id (the base's when nothing changed, since no
        commit is made then, unless the transaction allows empty commits). The transaction
        is over afterwards, whatever the outcome."""
        self._end()
        try:
            self._uploader.finish()
            changes: dict[str, TreeEntry | None] = {}
            for path, value in self._pending.items():
                if isinstance(value, tuple):
                    content, mode, mtime_ns = value
                    value = content.entry(path.rsplit("/", 1)[-1], mode, mtime_ns)
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

    def _value(self, path: str) -> _Pending:
        """What ``path`` itself holds in the base overlaid with this transaction, ignoring
        changes below it: new content, an entry, or None (nothing, or a directory that exists
        only through files written below it)."""
        if path in self._pending:
            return self._pending[path]
        parts = path.split("/")
        for i in range(len(parts) - 1, 0, -1):  # the nearest changed directory above decides
            above = self._pending.get("/".join(parts[:i]), _ABSENT)
            if above is _ABSENT or (isinstance(above, TreeEntry) and _ensures_dir(above)):
                continue  # (a directory an upload only makes sure of keeps what it held)
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
        prefix = path + "/"
        return any(p.startswith(prefix) and v is not None for p, v in self._pending.items())

    def _check_parents(self, path: str) -> None:
        parts = path.split("/")
        for i in range(1, len(parts)):
            above = "/".join(parts[:i])
            if self._kind(above) in ("file", "link"):
                raise UsageError(f"cannot create {path}: {above} is not a directory")

    def _forget_below(self, path: str) -> None:
        prefix = path + "/"
        for p in [p for p in self._pending if p.startswith(prefix)]:
            del self._pending[p]


_ABSENT: Any = object()


def _ensures_dir(entry: TreeEntry) -> bool:
    """An entry an upload makes for a directory: it exists, holding what it held (the commit
    merges it with the base), rather than being replaced by the tree it names."""
    return entry.kind == "dir" and not entry.tree
