"""The write side of the ``s3fsv://`` filesystem: changes collected into commits, fsspec
transactions, and files opened for writing.

Every change goes into an API transaction (:meth:`s3fsv.Repo.transaction`) of its branch,
held by a :class:`Batch`: the one of the open ``fs.transaction`` (one commit per branch
when it ends), or else one per filesystem call (``put`` of a tree, ``rm`` of a list, each
file closed: one commit each).
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

from fsspec.transaction import Transaction as _FsspecTransaction

from s3fsv.api import EntryInfo, Repo, Transaction
from s3fsv.errors import (
    AlreadyExists,
    IsADirectory,
    NotFound,
    NotPermitted,
    ReadOnly,
    S3fsvError,
)
from s3fsv.fsspec.errors import as_os_error
from s3fsv.fsspec.paths import Location

if TYPE_CHECKING:
    from s3fsv.fsspec.filesystem import S3fsvFileSystem

SPOOL_MEMORY = 8 * 1024 * 1024  # a file written larger than this is spooled to a temp file
DEFAULT_MESSAGE = "Write through fsspec"


class Batch:
    """Open API transactions, one per (repo, branch), each started on its first change."""

    def __init__(self, repo: Callable[[str], Repo], message: str) -> None:
        self._repo = repo
        self.message = message
        self._open: dict[tuple[str, str], Transaction] = {}
        self.commits: dict[str, str] = {}  # "repo@branch" -> the commit made

    def tx(self, loc: Location) -> Transaction:
        """The transaction of ``loc``'s branch. ``ReadOnlyRef`` (a ``PermissionError``) when
        ``loc`` names a tag, a commit or ``REF~N``; ``FileNotFound`` when nothing."""
        key = (loc.repo, loc.ref)
        tx = self._open.get(key)
        if tx is None:
            repo = self._repo(loc.repo)
            if loc.pinned:
                raise _read_only(loc)
            try:
                tx = repo.transaction(loc.ref, message=self.message)
            except NotFound:
                try:
                    repo.resolve(loc.ref)
                except S3fsvError:
                    raise NotFound(f"no branch {loc.ref!r} in repo {loc.repo!r}") from None
                raise _read_only(loc) from None
            self._open[key] = tx
        return tx

    def commit(self) -> None:
        """Commit every branch's changes (none is made for a branch whose changes leave it
        as it was). When one fails, the rest are not committed and the error is raised."""
        pending = list(self._open.items())
        self._open = {}
        try:
            while pending:
                (repo, branch), tx = pending[0]
                tx.message = self.message
                cid = tx.commit()
                pending.pop(0)
                if cid != tx.base:
                    self.commits[f"{repo}@{branch}"] = cid
        finally:
            for _, tx in pending[1:]:
                tx.abort()

    def abort(self) -> None:
        """Drop every change: nothing is committed."""
        pending, self._open = list(self._open.values()), {}
        for tx in pending:
            with contextlib.suppress(S3fsvError):
                tx.abort()


def _read_only(loc: Location) -> ReadOnly:
    what = "a past commit" if loc.pinned else "a tag or a commit"
    return ReadOnly(
        f"{loc.root} is read-only: {loc.ref!r} names {what}, and only branches can be "
        f"written (e.g. {loc.repo}@main/{loc.path or '...'})"
    )


class S3fsvTransaction(_FsspecTransaction):
    """``with fs.transaction:`` on an ``s3fsv://`` filesystem: every write, upload, copy,
    move, removal and mkdir in the block becomes one commit per branch written (usually one),
    with provenance, when the block ends without an exception, and nothing is committed when
    it raises. Set :attr:`message` inside the block to name the commit; :attr:`commits` says
    afterwards which commits were made. Reads inside the block see the branches as
    committed, not the block's own changes."""

    def __init__(self, fs: S3fsvFileSystem, **kwargs: Any) -> None:
        super().__init__(fs, **kwargs)
        self.message = DEFAULT_MESSAGE
        self._batch: Batch | None = None
        self.commits: dict[str, str] = {}

    @property
    def batch(self) -> Batch:
        if self._batch is None:
            assert self.fs is not None, "the transaction has ended"
            self._batch = Batch(self.fs._repo, self.message)
        return self._batch

    def start(self) -> None:
        super().start()
        self._batch = None
        self.commits = {}

    def complete(self, commit: bool = True) -> None:
        batch, self._batch = self._batch, None
        try:
            super().complete(commit)  # closes (or discards) the files still open
        except BaseException:
            if batch is not None:
                batch.abort()
            raise
        if batch is None:
            return
        if not commit:
            batch.abort()
            return
        batch.message = self.message
        try:
            batch.commit()
        except S3fsvError as err:
            raise as_os_error(err) from None
        self.commits = batch.commits


class WriteFile(io.RawIOBase):
    """A file opened for writing (``wb``, ``xb`` or ``ab``). What is written is spooled
    locally (in memory, then a private temp file) and handed to the transaction of its
    branch on :meth:`close`; outside ``fs.transaction`` that makes one commit per file. Until
    then the file is random access like a local one (seek, read back, truncate), so writers
    such as HDF5's can write into it. Leaving a ``with`` block by an exception discards the
    file instead: a half-written file is never committed."""

    def __init__(
        self,
        fs: S3fsvFileSystem,
        loc: Location,
        mode: str,
        batch: Batch,
        *,
        own: bool,
        initial: bytes = b"",
    ) -> None:
        super().__init__()
        self.fs = fs
        self.path = loc.full
        self.mode = mode
        self._loc = loc
        self._batch = batch
        self._own = own  # commit on close (no fs.transaction is open)
        self._spool: IO[bytes] = io.BytesIO(initial)
        self._spool.seek(0, io.SEEK_END)
        self._spool_path = ""  # set once the spool moved to a temp file
        self._discarded = False

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        self._checkClosed()
        return self._spool.tell()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._checkClosed()
        return self._spool.seek(offset, whence)

    def truncate(self, size: int | None = None) -> int:
        self._checkClosed()
        return self._spool.truncate(size)

    def readinto(self, buffer: Any) -> int:
        self._checkClosed()
        return self._spool.readinto(buffer)  # type: ignore[attr-defined,no-any-return]

    def write(self, data: Any) -> int:  # type: ignore[override]
        self._checkClosed()
        view = memoryview(data).cast("B")
        if not self._spool_path and self._spool.tell() + len(view) > SPOOL_MEMORY:
            self._to_disk()
        return self._spool.write(view)

    def _to_disk(self) -> None:
        memory = self._spool
        assert isinstance(memory, io.BytesIO)
        fd, self._spool_path = tempfile.mkstemp(prefix="s3fsv-fsspec-")  # 0600
        self._spool = os.fdopen(fd, "w+b")
        self._spool.write(memory.getbuffer())
        self._spool.seek(memory.tell())

    def commit(self) -> None:
        """fsspec's end of a transaction: a file still open is closed (and so handed over)."""
        self.close()

    def discard(self) -> None:
        """Drop what was written; nothing of this file is committed."""
        self._discarded = True
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        try:
            if not self._discarded:
                self._hand_over()
            elif self._own:
                self._batch.abort()
        except S3fsvError as err:
            raise as_os_error(err) from None
        finally:
            self._drop_spool()
            super().close()

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is not None:
            self.discard()
        else:
            self.close()

    def _hand_over(self) -> None:
        try:
            tx = self._batch.tx(self._loc)
            if isinstance(self._spool, io.BytesIO):
                tx.write(self._loc.path, self._spool.getbuffer())
            else:
                self._spool.flush()
                tx.upload(self._spool_path, self._loc.path, mode=0o644)
        except BaseException:
            if self._own:
                self._batch.abort()
            raise
        if self._own:
            self._batch.commit()

    def _drop_spool(self) -> None:
        self._spool.close()
        if self._spool_path:
            with contextlib.suppress(OSError):
                os.unlink(self._spool_path)


def open_for_writing(
    fs: S3fsvFileSystem, loc: Location, mode: str, batch: Batch, own: bool
) -> WriteFile:
    """Open ``loc`` for writing in ``mode`` (``wb``, ``xb`` or ``ab``), checking at once that
    it is on a branch, that it is not a directory, and for ``xb`` that nothing is there."""
    try:
        tx = file_target(batch, loc)
        kind = tx.kind(loc.path)
        if mode.startswith("x") and kind is not None:
            raise AlreadyExists(f"cannot create {loc.full}: it exists")
        initial = b""
        if mode.startswith("a") and kind is not None:
            initial = fs._repo(loc.repo).read_bytes(tx.base, loc.path)
    except BaseException:
        if own:
            batch.abort()
        raise
    return WriteFile(fs, loc, mode, batch, own=own, initial=initial)


def changeable(batch: Batch, loc: Location) -> Transaction:
    """The transaction that can change ``loc`` (anything but a repo's root)."""
    if not loc.path:
        raise NotPermitted(
            f"cannot remove {loc.full or 'the store'}: remove what it holds instead "
            f"(fs.rm(fs.ls({loc.full!r}, detail=False), recursive=True))"
        )
    return batch.tx(loc)


def file_target(batch: Batch, loc: Location) -> Transaction:
    """The transaction to write file ``loc`` in; ``IsADir`` when a directory is there."""
    if not loc.path:
        raise IsADirectory(f"cannot write {loc.full or 'the store'}: it is a directory")
    tx = batch.tx(loc)
    if tx.kind(loc.path) == "dir":
        raise IsADirectory(f"cannot write {loc.full}: it is a directory")
    return tx


def copy_bytes(repo: Repo, cid: str, entry: EntryInfo, tx: Transaction, dst: str) -> None:
    """Copy a file to another repo: its bytes are read and stored again there."""
    mode = entry.mode if entry.kind == "file" else 0o644
    if entry.size <= SPOOL_MEMORY:
        tx.write(dst, repo.read_bytes(cid, entry.path), mode=mode)
        return
    fd, spool = tempfile.mkstemp(prefix="s3fsv-fsspec-")
    try:
        with os.fdopen(fd, "wb") as out, repo.open(cid, entry.path) as src:
            shutil.copyfileobj(src, out, 8 * 1024 * 1024)
        tx.upload(spool, dst, mode=mode)
    finally:
        os.unlink(spool)
