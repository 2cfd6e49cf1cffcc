"""Changes to a branch collected in Python and made into one commit."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from s3fsv.api.changes import Changes, Pending, is_ensure_dir
from s3fsv.api.refs import FileRef
from s3fsv.errors import AlreadyExists, IsADirectory, NotADirectory, NotFound, UsageError
from s3fsv.store.objects import TreeEntry, check_attrs, split_path
from s3fsv.store.provenance import command_of, provenance_context
from s3fsv.store.repo import Repository
from s3fsv.store.transfer import LocalItem, local_entry, scan_local
from s3fsv.store.tree import resolve
from s3fsv.store.upload import Uploader

if TYPE_CHECKING:
    from s3fsv.api.store import Store


class Transaction:
    """Writes, uploads, copies, deletes and renames on one branch, committed together.

    The branch head is read when the transaction starts; that is its :attr:`base`, and every
    path is looked up there (overlaid with the transaction's own changes). Content is uploaded
    as it is given, so a large transaction holds no file in memory, but nothing is visible to
    anyone until :meth:`commit`. If the branch moved meanwhile, the changes are applied on top
    of the new head when no path was changed on both sides; otherwise ``Conflict`` names the
    paths, and nothing is committed. The commit records provenance: who, where, the command
    line of this process, and every commit this store handle has read (``inputs``).

    Paths are relative to the repo's root (a leading ``/`` is ignored); ``..``, ``.``, empty
    names and NUL are refused (``InvalidName``). Writes never follow symlinks: a path below a
    file or a symlink is ``NotADirectory``. A change that is refused changes nothing.

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
        if not isinstance(message, str) or not message.strip():
            raise UsageError("a transaction needs a commit message")
        _check_text(message, "the commit message")
        if author is not None:
            _check_text(author, "the author")
        self._provenance = _plain_json(dict(provenance or {}), "provenance")
        self._store = store
        self._repo = repo
        self.branch = branch
        self.message = message
        self._author = author
        self._allow_empty = allow_empty
        self.base: str = base if base is not None else repo.branch_head(branch).commit
        self._changes = Changes(repo.objects, repo.commit_object(self.base).tree)
        self._uploader = Uploader(repo.objects, repo.chunk_size, threads=8)
        self._lock = threading.Lock()
        self._empty_tree = ""
        self.commit_id: str | None = None
        self._done = False

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
        """Set the content of file ``path`` (made, or replaced), making its directories.
        ``IsADirectory`` when ``path`` is a directory. ``mtime_ns`` defaults to now; ``attrs``
        are file attributes (lowercase names, short string values: see ``check_attrs``),
        readable as ``user.s3fsv.attr.NAME`` extended attributes on a mount."""
        path = self._path(path)
        self._check_parents(path)
        if self._changes.kind(path) == "dir":
            raise IsADirectory(f"cannot write {path}: it is a directory")
        try:
            checked = check_attrs(attrs or {})
        except ValueError as err:
            raise UsageError(f"cannot write {path}: {err}") from None
        content = self._uploader.add_bytes(bytes(data))
        self._changes.forget_below(path)
        when = time.time_ns() if mtime_ns is None else mtime_ns
        self._changes.set(path, (content, mode & 0o7777, when, checked))

    def upload(
        self, local_path: str | os.PathLike[str], path: str, *, mode: int | None = None
    ) -> int:
        """Upload a local file to ``path``, or a local directory's contents below ``path``
        (merged with what is there; symlinks inside it stored as links, not followed; ``""``
        puts a directory's contents at the root); return the number of files uploaded. A file
        onto a directory is ``IsADirectory``, a directory onto a file ``NotADirectory``, at
        ``path`` or anywhere below it, checked before anything is uploaded. Each file is read
        during the call (it may change or go afterwards) and stored with the transaction's
        other content, so small files share packs. ``mode`` sets the permission bits of the
        file(s), default the local ones."""
        if not "/".join(split_path(path)) and Path(local_path).is_dir():
            if self._done:
                raise UsageError("this transaction has ended already")
            path = ""  # the root itself is not changed: what goes below it is
        else:
            path = self._path(path)
            self._check_parents(path)
        items = sorted(scan_local(Path(local_path), path), key=_walk_order)
        for item in items:  # packed siblings end up side by side, in walk order
            self._check_upload_kind(item)
        values: list[tuple[LocalItem, Pending]] = []
        for item in items:
            if item.kind == "file":
                content = self._uploader.add_file(item.local)
                bits = item.mode if mode is None else mode
                values.append((item, (content, bits & 0o7777, item.mtime_ns, ())))
            else:
                values.append((item, local_entry(item)))
        for item, value in values:
            if item.kind == "dir":
                assert isinstance(value, TreeEntry)
                self._make_sure_of_dir(item.rel, value)
            else:
                self._changes.forget_below(item.rel)
                self._changes.set(item.rel, value)
        return sum(1 for i in items if i.kind == "file")

    def put(self, path: str, ref: FileRef) -> None:
        """Place uploaded content (``Repo.upload``, possibly by another process) at ``path``,
        made or replaced, making its directories. ``IsADirectory`` when ``path`` is a
        directory."""
        path = self._path(path)
        self._check_parents(path)
        if self._changes.kind(path) == "dir":
            raise IsADirectory(f"cannot put {path}: it is a directory")
        self._changes.forget_below(path)
        self._changes.set(path, ref.entry)

    def mkdir(self, path: str, *, mode: int = 0o755) -> bool:
        """Make an empty directory at ``path`` (and the directories above it). Return False,
        changing nothing, when a directory is there already; ``AlreadyExists`` when a file or
        symlink is."""
        path = self._path(path)
        self._check_parents(path)
        kind = self._changes.kind(path)
        if kind == "dir":
            return False
        if kind is not None:
            raise AlreadyExists(f"cannot make directory {path}: a {kind} is there")
        name = path.rsplit("/", 1)[-1]
        self._make_sure_of_dir(path, TreeEntry(name, "dir", mode & 0o7777, time.time_ns()))
        return True

    def delete(self, path: str) -> None:
        """Delete the file, symlink or directory (with everything below it) at ``path``;
        ``NotFound`` when there is none."""
        path = self._path(path)
        if self._changes.kind(path) is None:
            raise NotFound(f"cannot delete {path}: no such file or directory")
        self._changes.forget_below(path)
        self._changes.set(path, None)

    def rename(self, old: str, new: str) -> None:
        """Move ``old`` (a file, symlink or directory) to ``new``, making the directories above
        ``new``. A file or symlink at ``new`` is replaced by a file or symlink, as
        ``rename(2)`` does. ``NotFound`` when ``old`` does not exist, ``IsADirectory`` when
        ``new`` is a directory, ``NotADirectory`` for a directory onto a file or symlink, and
        ``UsageError`` for a directory into itself."""
        self._carry(old, new, keep=False)

    def copy(self, src: str, dst: str, *, ref: str | None = None) -> None:
        """Copy ``src`` (a file, symlink or directory with everything below it) to ``dst``,
        as this transaction sees it, or as commit ``ref`` of the same repo has it (any ref
        :meth:`Repo.resolve` takes: a file can be restored from an old commit this way). The
        copy shares the stored content, so no bytes are transferred. Replacing and refusals
        follow :meth:`rename`'s rules."""
        self._carry(src, dst, keep=True, ref=ref)

    def kind(self, path: str) -> str | None:
        """What ``path`` is in the base overlaid with this transaction's changes: ``"file"``,
        ``"dir"``, ``"link"``, or None when nothing is there. The root is a directory."""
        if self._done:
            raise UsageError("this transaction has ended already")
        clean = "/".join(split_path(path))
        return "dir" if not clean else self._changes.kind(clean)

    # -- ending -----------------------------------------------------------------------------
    def commit(self) -> str:
        """Make the commit and return its id. When the changes leave the branch as it is, no
        commit is made (unless the transaction allows empty commits) and the id is the branch
        head's. The transaction is over afterwards, whatever the outcome."""
        self._end()
        try:
            self._uploader.finish()
            changes: dict[str, TreeEntry | None] = {}
            for path, value in self._changes.items():
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

    def _check_parents(self, path: str) -> None:
        above = self._changes.blocking_parent(path)
        if above is not None:
            raise NotADirectory(f"cannot create {path}: {above} is not a directory")

    def _check_upload_kind(self, item: LocalItem) -> None:
        there = self._changes.kind(item.rel)
        if item.kind == "dir" and there in ("file", "link"):
            raise NotADirectory(
                f"cannot upload directory {item.local} to {item.rel}: {item.rel} is a {there}"
            )
        if item.kind != "dir" and there == "dir":
            raise IsADirectory(
                f"cannot upload {item.local} to {item.rel}: {item.rel} is a directory"
            )

    def _make_sure_of_dir(self, path: str, entry: TreeEntry) -> None:
        """Make sure ``path`` is a directory (``entry``'s mode and mtime, when it is made):
        merged with the directory there (one a rename of this transaction put there, or
        whatever is there when committing), or, where this transaction deleted something, a
        new one holding only what it puts below."""
        if not self._changes.has(path) or is_ensure_dir(self._changes.get(path)):
            self._changes.set(path, entry)  # mkdir -p, resolved when committing
        elif self._changes.get(path) is None:
            self._changes.set(path, replace(entry, tree=self._empty()))
        # else: a directory a rename put there, kept with what it holds

    def _carry(self, old: str, new: str, *, keep: bool, ref: str | None = None) -> None:
        """Put what ``old`` holds (in this transaction, or in commit ``ref``) at ``new``, with
        what is below it; with ``keep`` False, ``old`` goes (a rename)."""
        old, new = self._path(old), self._path(new)
        verb = "copy" if keep else "rename"
        moved: dict[str, Pending] = {}
        if ref is not None:
            tree = self._repo.commit_object(self._repo.resolve(ref)).tree
            try:
                carried: Pending = resolve(self._repo.objects, tree, old)
            except (NotFound, NotADirectory):
                raise NotFound(f"cannot {verb} {old}: no such file or directory in {ref}") from None
            kind: str | None = carried.kind
        else:
            kind = self._changes.kind(old)
            if kind is None:
                raise NotFound(f"cannot {verb} {old}: no such file or directory")
            if new == old:
                return
            if new.startswith(old + "/"):
                raise UsageError(f"cannot {verb} {old} into itself ({new})")
            carried = self._concrete(old)
            moved = self._changes.below(old)
        there = self._changes.kind(new)
        if there == "dir":
            raise IsADirectory(f"cannot {verb} {old} to {new}: {new} is a directory")
        self._check_parents(new)
        if kind == "dir" and there is not None:
            raise NotADirectory(f"cannot {verb} directory {old} to {new}: {new} is a {there}")
        if not keep:
            self._changes.forget_below(old)
            self._changes.set(old, None)
        self._changes.forget_below(new)
        if carried is not None:  # None: a directory that only changes below it make
            self._changes.set(new, carried)
        for p, v in moved.items():
            self._changes.set(new + p[len(old) :], v)

    def _concrete(self, path: str) -> Pending:
        """What ``path`` holds, a directory that need only exist made the one it stands for
        (an empty one): moved elsewhere, it must not pick up what is there when committing."""
        value = self._changes.value(path)
        if is_ensure_dir(value):
            assert isinstance(value, TreeEntry)
            return replace(value, tree=self._empty())
        return value

    def _empty(self) -> str:
        """The id of the empty tree, stored (once per transaction)."""
        if not self._empty_tree:
            self._empty_tree = self._repo.empty_tree()
        return self._empty_tree

    def _commit_provenance(self) -> dict[str, Any]:
        inputs = [{**read, "via": "api"} for read in self._store.commits_read()]
        command = command_of(os.getpid())
        out: dict[str, Any] = {**provenance_context(), "inputs": inputs}
        if command:
            out["commands"] = [command]
        out.update(self._provenance)
        return out


def _walk_order(item: LocalItem) -> list[str]:
    return item.rel.split("/")


def _check_text(text: object, what: str) -> None:
    if not isinstance(text, str):
        raise UsageError(f"{what} must be a string, not {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(f"{what} is not valid Unicode (a lone surrogate)") from None


def _plain_json(value: Any, where: str) -> Any:
    """``value`` as a commit can hold it (canonical JSON: no floats, string keys), tuples as
    lists; ``UsageError`` naming where anything else is."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, str):
        _check_text(value, where)
        return value
    if isinstance(value, float):
        raise UsageError(f"{where} is a float ({value!r}): a commit holds no floats; use a string")
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise UsageError(f"{where} has a key that is not a string: {key!r}")
            _check_text(key, f"a key of {where}")
            out[key] = _plain_json(item, f"{where}[{key!r}]")
        return out
    if isinstance(value, list | tuple):
        return [_plain_json(item, f"{where}[{i}]") for i, item in enumerate(value)]
    raise UsageError(f"{where} is a {type(value).__name__}, which a commit cannot hold")
