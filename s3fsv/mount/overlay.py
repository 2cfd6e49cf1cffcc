"""A writable branch: the branch head overlaid with this mount's staged changes.

Path arguments are branch-relative component lists. The base is the branch head as of the last
refresh (``head_tree()``); staged entries (``staging.py``) override it path by path, and a staged
directory's ``tree`` replaces the base below it. Reads of unchanged files go to the store through
the shared cache; the first write to one copies it up into a staged data file.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from s3fsv.errors import (
    AlreadyExists,
    IsADirectory,
    NotADirectory,
    NotEmpty,
    NotFound,
    NotPermitted,
    S3fsvError,
    UsageError,
)
from s3fsv.mount.hidden import HiddenFiles
from s3fsv.mount.overlay_commit import CommitOps
from s3fsv.mount.staging import Read, Staged, Staging, committed_entry, watch_sets
from s3fsv.mount.write_behind import WriteBehind
from s3fsv.store.objects import TreeEntry
from s3fsv.store.reader import ChunkReader
from s3fsv.store.repo import Repository
from s3fsv.store.tree import EMPTY_TREE, dir_entries, lookup

COPY_STEP = 8 * 1024 * 1024
HIDDEN_PREFIX = ".fuse_hidden"

log = logging.getLogger(__name__)

SEEN_MAX = 100_000  # base files opened read-only that are tracked for staleness
FOLLOW_RETRY = 5.0  # seconds before comparing again after a failure


@dataclass
class LocalHandle:
    """An open staged file: a descriptor of its data file, and its permission bits as of the
    open (what ``stat`` shows through the handle once the file has no path)."""

    path: str
    data: str
    fd: int
    append: bool
    writer: bool
    written: bool = False
    mode: int = 0o644


@dataclass(frozen=True)
class Node:
    """What is at a path: a staged entry or a base entry, and the base tree below it."""

    staged: Staged | None
    base: TreeEntry | None
    below: str | None  # base tree id for a directory's children

    @property
    def kind(self) -> str:
        return self.staged.kind if self.staged is not None else self.base.kind  # type: ignore[union-attr]


class BranchOverlay(CommitOps):
    """One writable branch of one repo in this mount. Thread-safe (one lock per branch)."""

    def __init__(
        self,
        repo: Repository,
        branch: str,
        reader: ChunkReader,
        staging: Staging,
        head: Callable[[], tuple[str, str]],
    ) -> None:
        self.repo = repo
        self.branch = branch
        self.reader = reader
        self.staging = staging
        self._head = head  # () -> (commit id, root tree id) of the branch as last refreshed
        self.lock = threading.RLock()
        self.commit_lock = threading.Lock()
        self.root_mtime = time.time_ns()  # the branch root's own times are not committed
        self._commands: set[str] = set()
        self._reads: set[Read] = set()  # recorded in staging since the last commit or discard
        self.open_data: dict[str, int] = {}  # data file name -> open handles
        self._writers: dict[str, int] = {}  # data file name -> open handles that may write
        self.hidden: HiddenFiles[Node] = HiddenFiles()  # unlinked-while-open files, see _hide
        self.last_write = 0.0
        self.early = WriteBehind(repo.objects, repo.chunk_size, staging.data_path)
        if self.staging.get_meta("base") is None or not self.staging:
            self.reset_base(head()[0])  # with nothing staged, nothing can clash
        if not self.staging:  # what an earlier mount of this slot read and ran, staging nothing
            self.forget_provenance()
        self._seen: set[str] = set()  # base files opened read-only (their content may be held)
        self._follow_retry = 0.0  # after a failed comparison, when to try again
        self._behind: tuple[str, str] | None = None  # (view head, base): the view lags us
        self.staging.collect_garbage(set())

    # -- resolution -----------------------------------------------------------------------------
    def node(self, parts: list[str]) -> Node:
        """Resolve a path; raise ``NotFound``/``NotADirectory``."""
        hidden = self.hidden.get("/".join(parts)) if self.hidden else None
        if hidden is not None:
            return hidden
        head, root_tree = self._head()
        if head != self.base_commit:
            self._follow(head)
        below: str | None = root_tree
        node = Node(None, TreeEntry("", "dir", 0o755, self.root_mtime, tree=root_tree), root_tree)
        for i, name in enumerate(parts):
            if node.kind != "dir":
                raise NotADirectory(f"not a directory: {'/'.join(parts[:i])}")
            path = "/".join(parts[: i + 1])
            staged = self.staging.get(path)
            if staged is not None:
                if staged.kind == "deleted":
                    raise NotFound(f"no such file or directory: {path}")
                below = staged.tree if staged.kind == "dir" else None
                node = Node(staged, None, below)
                continue
            entry = lookup(self.repo.objects, below, name) if below else None
            if entry is None:
                raise NotFound(f"no such file or directory: {path}")
            below = entry.tree if entry.kind == "dir" else None
            node = Node(None, entry, below)
        return node

    def _follow(self, head: str) -> None:
        """The view now shows ``head``: move the staging base there, so that what is staged
        next, made against what the view shows, is not taken for a conflict with changes the
        view already showed. Staged paths, and base files opened read-only (a program may hold
        their old content and write it back), that changed between the base and ``head`` are
        marked stale first: a commit that includes a stale path is a conflict."""
        with self.lock:
            base = self.base_commit
            if head == base or time.monotonic() < self._follow_retry:
                return
            if len(self._seen) >= SEEN_MAX or self._behind == (head, base):
                return  # too much to track (the base stays: every change is checked), or old
            try:
                if self._is_ancestor(head, base):  # a refresh older than our own commit
                    self._behind = (head, base)
                    return
                watched, ensure = watch_sets(self.staging.all())
                changed = self.repo.clashes(base, head, watched | self._seen, ensure)
            except S3fsvError as err:
                log.warning("cannot compare %s with the branch head %s: %s", base, head, err)
                self._follow_retry = time.monotonic() + FOLLOW_RETRY
                return
            if changed:
                self.staging.set_meta("stale", json.dumps(sorted(self.stale() | changed)))
            self.staging.set_meta("base", head)  # after "stale": a crash between redoes both

    def _is_ancestor(self, old: str, new: str, depth: int = 64) -> bool:
        """Whether ``old`` is among the first-parent ancestors of ``new`` (checked ``depth``
        commits deep: what a view refreshed just before this mount's commit can lag by)."""
        cid: str | None = new
        for _ in range(depth):
            parents = self.repo.commit_object(cid).parents if cid else ()
            cid = parents[0] if parents else None
            if cid is None:
                return False
            if cid == old:
                return True
        return False

    def stale(self) -> set[str]:
        """Paths another writer changed after this mount staged or read them."""
        return set(json.loads(self.staging.get_meta("stale") or "[]"))

    def reset_base(self, head: str) -> None:
        """Start over from ``head`` with nothing stale (nothing staged, or all discarded)."""
        self.staging.set_meta("stale", "[]")
        self.staging.set_meta("base", head)

    def _base_has(self, parts: list[str]) -> bool:
        """Whether the base (as seen through the parent) has something at this exact path."""
        try:
            parent = self.node(parts[:-1])
        except (NotFound, NotADirectory):
            return False
        return bool(parent.below) and lookup(self.repo.objects, parent.below, parts[-1]) is not None

    def attrs(self, node: Node) -> tuple[int, int, int, str]:
        """(mode with type bits, size, mtime_ns, kind) of a node."""
        s = node.staged
        if s is None:
            e = node.base
            assert e is not None
            size = e.size if e.kind != "link" else len(e.target.encode())
            return _type_bits(e.kind) | e.mode, size, e.mtime_ns, e.kind
        if s.kind == "file" and s.data:
            st = os.stat(self.staging.data_path(s.data))
            return stat.S_IFREG | s.mode, st.st_size, st.st_mtime_ns, "file"
        size = s.size if s.kind != "link" else len(s.target.encode())
        return _type_bits(s.kind) | s.mode, size, s.mtime_ns, s.kind

    def listdir(self, parts: list[str]) -> list[tuple[str, Node]]:
        node = self.node(parts)
        if node.kind != "dir":
            raise NotADirectory(f"not a directory: {'/'.join(parts)}")
        prefix = "/".join(parts)
        out: dict[str, Node] = {}
        if node.below:
            for e in dir_entries(self.repo.objects, node.below):
                out[e.name] = Node(None, e, e.tree if e.kind == "dir" else None)
        for name in self.staging.child_names(prefix):
            s = self.staging.get(f"{prefix}/{name}" if prefix else name)
            if s is None:
                continue
            if s.kind == "deleted":
                out.pop(name, None)
            else:
                out[name] = Node(s, None, s.tree if s.kind == "dir" else None)
        return sorted(out.items())

    # -- file contents --------------------------------------------------------------------------
    def open_local(self, parts: list[str], flags: int) -> LocalHandle | TreeEntry:
        """Open a file. Read-only opens of unchanged files return the base entry; anything that
        writes gets a staged data file (copied up from the base on first write)."""
        path = "/".join(parts)
        writing = bool(flags & (os.O_WRONLY | os.O_RDWR))
        with self.lock:
            node = self.node(parts)
            if node.kind == "dir":
                raise IsADirectory(f"is a directory: {path}")
            if node.kind == "link":
                raise UsageError(f"cannot open a symlink itself: {path}")
            if node.staged is None or not node.staged.data:
                if not writing and not flags & os.O_TRUNC:
                    if node.base is not None:
                        if len(self._seen) < SEEN_MAX:
                            self._seen.add(path)
                        return node.base
                    return self.as_entry(node.staged)
                node = self._copy_up(parts, node, truncate=bool(flags & os.O_TRUNC), writer=writing)
            elif writing:
                self._writer_opens(node.staged.data)
            staged = node.staged
            assert staged is not None and staged.data
            mode = os.O_RDWR if writing else os.O_RDONLY
            try:
                fd = os.open(self.staging.data_path(staged.data), mode | os.O_CLOEXEC)
            except BaseException:
                if writing:
                    self._writer_closes(staged.data)
                raise
            if flags & os.O_TRUNC and writing:
                self.early.will_truncate(staged.data, 0)
                os.ftruncate(fd, 0)
                self._rewritten(staged.data, fd)
                self.early.started(staged.data)
            return self._opened(
                LocalHandle(
                    path, staged.data, fd, bool(flags & os.O_APPEND), writing, mode=staged.mode
                )
            )

    def _opened(self, h: LocalHandle) -> LocalHandle:
        """Count a new handle; a writer's data file was journaled (``_writer_opens``) before
        anything changed it."""
        self.open_data[h.data] = self.open_data.get(h.data, 0) + 1
        if h.writer:
            self.last_write = time.monotonic()
        return h

    def _writer_opens(self, data: str) -> None:
        """Journal (before a writer changes it) that ``data`` has one more open writer: should
        the daemon die with it open, the next mount flags the file as possibly incomplete."""
        writers = self._writers.get(data, 0)
        if not writers:
            self.staging.writing(data, started=True)
        self._writers[data] = writers + 1

    def _writer_closes(self, data: str) -> None:
        writers = self._writers.pop(data, 1) - 1
        if writers:
            self._writers[data] = writers
        else:
            self.staging.writing(data, started=False)

    @property
    def open_writers(self) -> int:
        return sum(self._writers.values())

    def writers_left_open(self) -> None:
        """The session ended with files open for writing (SIGTERM ends it without releases):
        they count as interrupted, so no commit takes them as they are."""
        with self.lock:
            self.staging.interrupt(set(self._writers))

    def as_entry(self, s: Staged | None) -> TreeEntry:
        """The committed entry a staged entry without local data stands for."""
        assert s is not None and s.kind != "deleted"
        if s.kind == "dir":
            name = s.path.rpartition("/")[2]
            return TreeEntry(name, "dir", s.mode, s.mtime_ns, tree=s.tree or "0" * 64)
        entry = committed_entry(s)
        assert entry is not None
        return entry

    def _copy_up(self, parts: list[str], node: Node, *, truncate: bool, writer: bool) -> Node:
        source = node.base if node.base is not None else self.as_entry(node.staged)
        name, fd = self.staging.new_data()
        with open(fd, "r+b") as out:
            if not truncate:
                for off in range(0, source.size, COPY_STEP):
                    out.write(self.reader.read(source, off, COPY_STEP))
            out.flush()
            os.utime(fd, ns=(source.mtime_ns, source.mtime_ns))
        staged = Staged("/".join(parts), "file", source.mode, source.mtime_ns, data=name)
        if writer:
            self._writer_opens(name)  # before the copy is staged: a writer is about to change it
        try:
            self._put_or_rehide(staged)
        except BaseException:
            if writer:
                self._writer_closes(name)
            raise
        return Node(staged, None, None)

    def _put_or_rehide(self, staged: Staged) -> None:
        """Stage ``staged``, unless its path is a hidden (unlinked) file: that one changes in
        memory only, so that it never comes back into the branch."""
        if staged.path in self.hidden:
            self.hidden[staged.path] = Node(staged, None, None)
        else:
            self.staging.put(staged)

    def create(self, parts: list[str], mode: int, flags: int) -> LocalHandle:
        path = "/".join(parts)
        with self.lock:
            self._require_dir(parts[:-1])
            try:
                existing = self.node(parts)
            except NotFound:
                existing = None
            if existing is not None:
                if flags & os.O_EXCL:
                    raise AlreadyExists(f"file exists: {path}")
                handle = self.open_local(parts, flags | os.O_RDWR)
                assert isinstance(handle, LocalHandle)
                return handle
            name, fd = self.staging.new_data()
            self._writer_opens(name)
            try:
                self.staging.put(Staged(path, "file", mode & 0o7777, time.time_ns(), data=name))
            except BaseException:
                self._writer_closes(name)
                os.close(fd)
                raise
            self.early.started(name)
            return self._opened(
                LocalHandle(path, name, fd, bool(flags & os.O_APPEND), True, mode=mode & 0o7777)
            )

    def write(self, h: LocalHandle, data: bytes, offset: int) -> int:
        if h.append:
            offset = os.fstat(h.fd).st_size
        token = self.early.will_write(h.data, offset)
        try:
            n = os.pwrite(h.fd, data, offset)
        except BaseException:
            self.early.wrote(h.data, -1, token)
            raise
        self.early.wrote(h.data, n, token)
        if offset == 0:  # written again from the start; an append does not make it whole
            self.staging.vouch(h.data)
        h.written = True
        self.last_write = time.monotonic()
        return n

    def release(self, h: LocalHandle) -> None:
        with self.lock:
            os.close(h.fd)
            left = self.open_data.get(h.data, 1) - 1
            if left:
                self.open_data[h.data] = left
            else:
                self.open_data.pop(h.data, None)
            if h.writer:
                self._writer_closes(h.data)

    def fsync(self, h: LocalHandle) -> None:
        os.fsync(h.fd)

    def truncate(self, parts: list[str], length: int, h: LocalHandle | None) -> None:
        with self.lock:
            if h is None:
                opened = self.open_local(parts, os.O_RDWR)
                assert isinstance(opened, LocalHandle)
                try:
                    self.early.will_truncate(opened.data, length)
                    os.ftruncate(opened.fd, length)
                    self._rewritten(opened.data, opened.fd)
                finally:
                    self.release(opened)
            else:
                self.early.will_truncate(h.data, length)
                os.ftruncate(h.fd, length)
                self._rewritten(h.data, h.fd)
            self.last_write = time.monotonic()

    def _rewritten(self, data: str, fd: int) -> None:
        """A writer changed ``data`` in place: a new mtime, and a file that an earlier daemon
        left incomplete counts as whole again (its writer is at work on it)."""
        os.utime(fd)
        self.staging.vouch(data)

    # -- namespace changes ----------------------------------------------------------------------
    def _require_dir(self, parts: list[str]) -> Node:
        node = self.node(parts)
        if node.kind != "dir":
            raise NotADirectory(f"not a directory: {'/'.join(parts)}")
        return node

    def _whiteout_or_remove(self, parts: list[str]) -> None:
        path = "/".join(parts)
        for e in self.staging.below(path):
            self.staging.remove(e.path)
        if self._base_has(parts):
            self.staging.put(Staged(path, "deleted"))
        else:
            self.staging.remove(path)

    def _require_absent(self, parts: list[str]) -> None:
        """The parent must be a directory and the name free, as for mkdir, symlink, mknod."""
        self._require_dir(parts[:-1])
        try:
            self.node(parts)
        except NotFound:
            return
        raise AlreadyExists(f"file exists: {'/'.join(parts)}")

    def mkdir(self, parts: list[str], mode: int) -> None:
        path = "/".join(parts)
        with self.lock, self.staging.transaction():
            self._require_absent(parts)
            replaces = self._base_has(parts)  # recreating a deleted directory
            self.staging.put(
                Staged(path, "dir", mode & 0o7777, time.time_ns(), tree=self._empty_tree(),
                       replace=replaces)
            )  # fmt: skip
            self.last_write = time.monotonic()

    def _empty_tree(self) -> str:
        return self.repo.objects.put(EMPTY_TREE)

    def unlink(self, parts: list[str]) -> None:
        with self.lock, self.staging.transaction():
            if self.hidden.pop("/".join(parts), None) is not None:
                return  # libfuse dropping a hidden, no longer open file
            node = self.node(parts)
            if node.kind == "dir":
                raise IsADirectory(f"is a directory: {'/'.join(parts)}")
            self._whiteout_or_remove(parts)
            self.last_write = time.monotonic()

    def rmdir(self, parts: list[str]) -> None:
        if not parts:
            raise NotPermitted("cannot remove the branch root")
        with self.lock, self.staging.transaction():
            node = self.node(parts)
            if node.kind != "dir":
                raise NotADirectory(f"not a directory: {'/'.join(parts)}")
            if self.listdir(parts):  # hidden (unlinked but open) files do not count
                raise NotEmpty(f"directory not empty: {'/'.join(parts)}")
            self._whiteout_or_remove(parts)
            self.hidden.forget_below("/".join(parts))
            self.last_write = time.monotonic()

    def symlink(self, parts: list[str], target: str) -> None:
        path = "/".join(parts)
        if not target or "\0" in target:
            raise UsageError("invalid symlink target")
        with self.lock, self.staging.transaction():
            self._require_absent(parts)
            self.staging.put(Staged(path, "link", 0o777, time.time_ns(), target=target))
            self.last_write = time.monotonic()

    def rename(self, old: list[str], new: list[str], flags: int = 0) -> None:
        old_path, new_path = "/".join(old), "/".join(new)
        if not old or not new:
            raise NotPermitted("cannot rename the branch root")
        if new_path.startswith(old_path + "/"):
            raise UsageError(f"cannot move {old_path} into itself")
        if new[-1].startswith(HIDDEN_PREFIX):
            self._hide(old, new_path)
            return
        with self.lock, self.staging.transaction():
            src = self.node(old)
            self._require_dir(new[:-1])
            try:
                dst: Node | None = self.node(new)
            except NotFound:
                dst = None
            if old_path == new_path:
                return
            if dst is not None:
                if src.kind == "dir" and dst.kind != "dir":
                    raise NotADirectory(f"not a directory: {new_path}")
                if src.kind != "dir" and dst.kind == "dir":
                    raise IsADirectory(f"is a directory: {new_path}")
                if dst.kind == "dir" and self.listdir(new):
                    raise NotEmpty(f"directory not empty: {new_path}")
                for e in self.staging.below(new_path):
                    self.staging.remove(e.path)
            moved = self._as_staged(src, new_path, replace_dir=True)
            self.staging.move_below(old_path, new_path)
            self.staging.put(moved)
            self._whiteout_or_remove_exact(old)
            if src.kind == "dir":
                if dst is not None:
                    self.hidden.forget_below(new_path)  # an empty directory replaced
                self.hidden.move_below(old_path, new_path)
            self.last_write = time.monotonic()

    def _hide(self, old: list[str], hidden_path: str) -> None:
        """libfuse renames a file that is unlinked while open to ``.fuse_hidden<N>`` so the
        open descriptors keep working. For the branch that is an unlink: the file leaves the
        tree and the next commit, and lives on only in memory until libfuse removes it."""
        with self.lock, self.staging.transaction():
            node = self.node(old)
            if node.kind == "dir":
                raise IsADirectory(f"is a directory: {'/'.join(old)}")
            self.hidden[hidden_path] = node
            self._whiteout_or_remove(old)
            self.last_write = time.monotonic()

    def _in_use(self) -> set[str]:
        """Data files that must survive garbage collection: open or hidden-but-open."""
        hidden = {n.staged.data for n in self.hidden.values() if n.staged and n.staged.data}
        return set(self.open_data) | hidden

    def _whiteout_or_remove_exact(self, parts: list[str]) -> None:
        path = "/".join(parts)
        if self._base_has(parts):
            self.staging.put(Staged(path, "deleted"))
        else:
            self.staging.remove(path)

    def _as_staged(self, node: Node, path: str, *, replace_dir: bool = False) -> Staged:
        """The entry ``node`` would be if staged at ``path`` (no content is copied)."""
        if node.staged is not None:
            s = replace(node.staged, path=path)
            return replace(s, replace=True) if s.kind == "dir" and replace_dir else s
        e = node.base
        assert e is not None
        if e.kind == "file":
            return Staged(
                path, "file", e.mode, e.mtime_ns, None, e.size, e.sha256, e.chunks,
                pack=e.pack, pack_offset=e.pack_offset,
            )  # fmt: skip
        if e.kind == "link":
            return Staged(path, "link", e.mode, e.mtime_ns, target=e.target)
        return Staged(path, "dir", e.mode, e.mtime_ns, tree=e.tree, replace=replace_dir)

    def set_attrs(self, parts: list[str], mode: int | None, mtime_ns: int | None) -> None:
        if not parts:
            return  # the branch root's attributes are not recorded in a commit
        with self.lock:
            node = self.node(parts)
            staged = self._as_staged(node, "/".join(parts))
            if mode is not None:
                staged = replace(staged, mode=mode & 0o7777)
            if mtime_ns is not None:
                if staged.kind == "file" and staged.data:
                    os.utime(self.staging.data_path(staged.data), ns=(mtime_ns, mtime_ns))
                    self.staging.vouch(staged.data)  # `touch`: someone checked it
                staged = replace(staged, mtime_ns=mtime_ns)
            self._put_or_rehide(staged)
            self.last_write = time.monotonic()


def _type_bits(kind: str) -> int:
    return {"file": stat.S_IFREG, "dir": stat.S_IFDIR, "link": stat.S_IFLNK}[kind]
