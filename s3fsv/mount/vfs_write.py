"""Write operations and commits of ``Filesystem`` (mixed into it; see ``vfs.py``).

Every write lands in the staging overlay of a writable branch view; anywhere else it fails with
``EROFS``. Operations s3fsv does not support fail with the errno documented in
``docs/semantics.md``: hard links ``EPERM``, renames across branches or views ``EXDEV``,
special files ``EPERM``, ownership changes to another user ``EPERM``.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cachetools import TTLCache

from s3fsv.errors import (
    Conflict,
    CrossDevice,
    NotFound,
    NotPermitted,
    NotSupported,
    ReadOnly,
    UsageError,
)
from s3fsv.mount.handles import OpenStaged, Snapshot, write_only
from s3fsv.store.provenance import command_of, provenance_context

if TYPE_CHECKING:
    from s3fsv.mount.overlay import BranchOverlay, LocalHandle

log = logging.getLogger(__name__)


_UTIME_NOW, _UTIME_OMIT = (1 << 30) - 1, (1 << 30) - 2  # utimensat(2)'s special tv_nsec values
# Command lines by pid, read once per process (a TTL, because pids are reused).
_COMMANDS: TTLCache[int, str] = TTLCache(maxsize=1024, ttl=60)


class WriteOps:
    """Mixin: needs ``_locate``, ``_overlay``, ``_add_handle``, ``_handle``, ``branch_moved``."""

    def _writable_path(
        self, path: str | None, *, new: bool = False
    ) -> tuple[BranchOverlay, list[str], Snapshot]:
        """The branch overlay that ``path`` is in, and the path inside it; ``ReadOnly`` when
        ``path`` is not in a writable branch. ``new``: ``path`` is a name being created, so a
        new name among the read-only virtual directories (a repo, a ref, a commit id) is
        ``ReadOnly`` too, not ``NotFound`` (its parent must exist)."""
        try:
            _, snap, inner = self._locate(path)  # type: ignore[attr-defined]
        except NotFound:
            if not new or path is None or not path.strip("/"):
                raise
            self._locate(path.rstrip("/").rsplit("/", 1)[0] or "/")  # type: ignore[attr-defined]
            raise ReadOnly(f"read-only: {path}") from None
        ov = self._overlay(snap) if snap is not None else None  # type: ignore[attr-defined]
        if ov is None or snap is None:
            raise ReadOnly(f"read-only: {path}")
        return ov, inner, snap

    def create(self, path: str, mode: int, flags: int) -> int:
        ov, inner, snap = self._writable_path(path, new=True)
        if not inner:
            raise UsageError("cannot create the branch root")
        return self.staged_handle(ov, ov.create(inner, mode, flags), snap, inner, flags)

    def staged_handle(
        self, ov: BranchOverlay, local: LocalHandle, snap: Snapshot, inner: list[str], flags: int
    ) -> int:
        """A file handle for the staged file ``local``; should that fail, ``local`` is released
        (an open writer left counted would hold the file back from commits)."""
        try:
            command = self.note_writer(ov) if local.writer else None
            ino = self._ino(snap, inner)  # type: ignore[attr-defined]
            handle = OpenStaged(ov, local, ino, write_only(flags), command)
            return self._add_handle(handle)  # type: ignore[attr-defined]
        except BaseException:
            ov.release(local)
            raise

    #: Returns the pid of the process making the current call (set by the FUSE adapter).
    caller_pid: Callable[[], int] | None = None

    def note_writer(self, ov: BranchOverlay) -> str | None:
        """Record the command line of the process writing to ``ov`` for provenance; return
        it (None when it cannot be known)."""
        if self.caller_pid is None:
            return None
        try:
            pid = self.caller_pid()
        except (OSError, ValueError):
            return None
        command = _COMMANDS.get(pid)
        if command is None:
            command = _COMMANDS[pid] = command_of(pid)
        if not command:
            return None
        ov.record_command(command)
        return command

    def write(self, fh: int, data: bytes, offset: int) -> int:
        handle = self._handle(fh)  # type: ignore[attr-defined]
        if not isinstance(handle, OpenStaged) or not handle.local.writer:
            raise ReadOnly("file is not open for writing")
        if handle.command is not None:  # again after a commit, if still writing then
            handle.overlay.record_command(handle.command)
        return handle.overlay.write(handle.local, data, offset)

    def truncate(self, path: str | None, length: int, fh: int | None) -> None:
        """Truncate the open file ``fh`` when given (``ftruncate``, even once the file has no
        path), else the file at ``path``."""
        handle = self._handle(fh) if fh else None  # type: ignore[attr-defined]
        if isinstance(handle, OpenStaged):
            handle.overlay.truncate([], length, handle.local)
            return
        ov, inner, _ = self._writable_path(path)
        ov.truncate(inner, length, None)
        self.note_writer(ov)  # after success: failed calls change nothing

    def fsync(self, fh: int | None) -> None:
        handle = self._handle(fh) if fh is not None else None  # type: ignore[attr-defined]
        if isinstance(handle, OpenStaged):
            handle.overlay.fsync(handle.local)

    def mkdir(self, path: str, mode: int) -> None:
        ov, inner, _ = self._writable_path(path, new=True)
        ov.mkdir(inner, mode)
        self.note_writer(ov)  # after success: failed calls change nothing

    def unlink(self, path: str) -> None:
        ov, inner, _ = self._writable_path(path)
        ov.unlink(inner)
        self.note_writer(ov)  # after success: failed calls change nothing

    def rmdir(self, path: str) -> None:
        ov, inner, _ = self._writable_path(path)
        ov.rmdir(inner)
        self.note_writer(ov)  # after success: failed calls change nothing

    def rename(self, old: str, new: str) -> None:
        try:
            ov, old_inner, _ = self._writable_path(old)
        except ReadOnly:
            self._writable_path(new, new=True)  # both read-only: EROFS
            # From a snapshot into a branch: EXDEV makes mv copy, as from a read-only disk.
            raise CrossDevice(f"cannot rename across views: {old} -> {new}") from None
        if not old_inner:  # before the target is looked at: EXDEV would make mv copy a branch
            raise NotPermitted(f"a branch root cannot be renamed: {old}")
        try:
            ov2, new_inner, _ = self._writable_path(new, new=True)
        except ReadOnly:
            raise CrossDevice(f"cannot rename across views: {old} -> {new}") from None
        if ov2 is not ov:
            raise CrossDevice(f"cannot rename across branches: {old} -> {new}")
        ov.rename(old_inner, new_inner)
        self.note_writer(ov)

    def symlink(self, path: str, target: str) -> None:
        ov, inner, _ = self._writable_path(path, new=True)
        ov.symlink(inner, target)
        self.note_writer(ov)  # after success: failed calls change nothing

    def link(self, path: str, existing: str) -> None:
        self._writable_path(path, new=True)
        raise NotPermitted(f"hard links are not supported: {path}")

    def mknod(self, path: str, mode: int, *_: object) -> None:
        self._writable_path(path, new=True)
        raise NotPermitted(f"special files are not supported: {path}")

    def chmod(self, path: str, mode: int) -> None:
        ov, inner, _ = self._writable_path(path)
        ov.set_attrs(inner, stat.S_IMODE(mode), None)
        self.note_writer(ov)  # after success: failed calls change nothing

    def chown(self, path: str, uid: int, gid: int) -> None:
        self._writable_path(path)
        if uid not in (-1, os.getuid()) or gid not in (-1, os.getgid()):
            raise NotPermitted("ownership is not recorded in commits")

    def utimens(self, path: str, times: tuple[int, int] | None = None) -> None:
        """Set the mtime (atime is not recorded). libfuse passes ``touch``'s "now" and "leave
        unchanged" as the kernel's UTIME_NOW / UTIME_OMIT markers, not as times."""
        ov, inner, _ = self._writable_path(path)
        mtime = times[1] if times else _UTIME_NOW
        if mtime == _UTIME_OMIT:
            return
        ov.set_attrs(inner, None, time.time_ns() if mtime == _UTIME_NOW else mtime)
        self.note_writer(ov)  # after success: failed calls change nothing

    def setxattr(self, path: str, name: str, value: bytes | None) -> None:
        self._writable_path(path)
        # "Not supported" (not EPERM): cp -a, cp -p and mv then copy without complaint.
        raise NotSupported("extended attributes are not recorded in commits")

    # -- commits --------------------------------------------------------------------------------
    def _branch_overlay(self, path: str) -> BranchOverlay:
        try:
            ov, _, _ = self._writable_path(path)
        except NotFound:
            raise NotFound(f"{path} does not exist (no such branch or directory)") from None
        except ReadOnly:
            raise UsageError(f"{path} is not inside a writable branch of this mount") from None
        return ov

    def commit(
        self, path: str, message: str, author: str | None = None, *, overwrite: bool = False
    ) -> str | None:
        ov = self._branch_overlay(path)
        return self._commit_overlay(ov, message, author, overwrite)

    def _commit_overlay(
        self, ov: BranchOverlay, message: str, author: str | None, overwrite: bool = False
    ) -> str | None:
        metrics = self.metrics  # type: ignore[attr-defined]
        start = time.monotonic()
        try:
            cid = ov.commit(message, author, provenance_context(), overwrite=overwrite)
        except Conflict as err:
            if metrics is not None:
                metrics.commit("conflict", time.monotonic() - start)
            # The mount shows the branch as the store has it now, so the advice below can be
            # followed at once (and replaces what the user was just told about).
            self.branch_moved(ov.repo.name, ov.branch, None)  # type: ignore[attr-defined]
            if overwrite:  # theirs was newer than this mount's view: it cannot replace it unseen
                hint = (
                    "the branch moved after this mount's view of it, which is now refreshed: retry"
                )
            else:
                hint = (
                    "`s3fsv commit --overwrite` replaces their versions with yours, "
                    "`s3fsv discard` drops yours"
                )
            err.args = (f"{err}. Everything stays staged: {hint}",)
            raise
        except BaseException:
            if metrics is not None:
                metrics.commit("failed", time.monotonic() - start)
            raise
        if metrics is not None:
            metrics.commit("committed" if cid else "nothing", time.monotonic() - start)
        if cid is not None:
            self.branch_moved(ov.repo.name, ov.branch, cid)  # type: ignore[attr-defined]
        return cid

    def status(self, path: str) -> dict[str, Any]:
        return self._branch_overlay(path).status()

    def discard(self, path: str) -> int:
        return self._branch_overlay(path).discard()

    def open_leftover_staging(self) -> list[tuple[str, str]]:
        """Open now, not at first use, the staging of the branches this mount writes that
        earlier mounts left staged writes in: so that --commit-on and the unmount report see
        them on a node whose jobs never touch those branches again. Returns (repo, branch)."""
        from s3fsv.mount.staging import leftover_staging

        spec = self.spec  # type: ignore[attr-defined]
        root = self.staging_root()  # type: ignore[attr-defined]
        opened = []
        for repo, branch, _ in leftover_staging(root, self.store.url, spec.repo):  # type: ignore[attr-defined]
            if spec.ref is not None and branch != spec.ref:
                continue
            section = "@" if spec.ref is not None else "branch"
            try:
                snap = self._snapshot(repo, section, branch)  # type: ignore[attr-defined]
                # None for a view this mount may not write (--read-only, no --rw).
                overlay = self._overlay(snap)  # type: ignore[attr-defined]
                if overlay is not None and overlay.staging:  # (another mount may have won them)
                    opened.append((repo, branch))
            except Exception as err:  # a branch deleted since, a slot in use: they wait there
                log.warning("staged writes of %s@%s stay in their slot: %s", repo, branch, err)
        return opened

    def writers_left_open(self) -> None:
        """For after the FUSE session: files still open for writing then (SIGTERM ends a
        session without releases) count as interrupted, so no commit takes them as they are."""
        for ov in list(self._overlays.values()):  # type: ignore[attr-defined]
            ov.writers_left_open()

    def staged_branches(self) -> list[tuple[str, str]]:
        overlays = dict(self._overlays)  # type: ignore[attr-defined]
        return [key for key, ov in overlays.items() if ov.staging]

    def staged_summary(self) -> list[dict[str, Any]]:
        """Per branch this mount has staged writes on: repo, branch, paths, bytes of staged
        file data, and files held back as possibly incomplete (for status and metrics)."""
        overlays = dict(self._overlays)  # type: ignore[attr-defined]
        return [
            {
                "repo": repo,
                "branch": branch,
                "paths": len(ov.staging),
                "bytes": ov.staging.data_bytes(),
                "interrupted": len(ov.staging.interrupted()),
            }
            for (repo, branch), ov in sorted(overlays.items())
            if ov.staging
        ]

    def staged_count(self, repo: str, branch: str) -> tuple[int, int]:
        """How many paths ``repo@branch`` has staged in this mount, and how many of them are
        files held back as possibly incomplete (interrupted)."""
        ov = self._overlays.get((repo, branch))  # type: ignore[attr-defined]
        if ov is None:
            return 0, 0
        return len(ov.staging), len(ov.staging.interrupted())

    def idle_seconds(self, repo: str, branch: str) -> float:
        ov = self._overlays.get((repo, branch))  # type: ignore[attr-defined]
        if ov is None or not ov.last_write:
            return float("inf")
        return time.monotonic() - ov.last_write

    def has_open_writers(self, repo: str, branch: str) -> bool:
        ov = self._overlays.get((repo, branch))  # type: ignore[attr-defined]
        return ov is not None and ov.open_writers > 0

    def commit_branch(self, repo: str, branch: str, message: str) -> str | None:
        ov = self._overlays.get((repo, branch))  # type: ignore[attr-defined]
        return None if ov is None else self._commit_overlay(ov, message, None)
