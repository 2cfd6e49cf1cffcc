"""Open files and reads of ``Filesystem`` (mixed into it; see ``vfs.py``): the file-handle
table, ``open``/``read``/``release``, reads without a handle on pinned mounts, the page-cache
policy of an open file, sibling prefetch, and the whole-file backing files of FUSE passthrough.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from s3fsv.errors import IsADirectory, NotFound, ReadOnly, S3fsvError
from s3fsv.mount.handles import OpenFile, OpenStaged, RepoState, Snapshot
from s3fsv.mount.overlay import LocalHandle
from s3fsv.mount.staging import Read
from s3fsv.store.reader import Bytes, Sequential
from s3fsv.store.tree import walk_after
from s3fsv.store.wholefile import WHOLE_MIN

if TYPE_CHECKING:
    import threading
    from collections.abc import Iterator

    from cachetools import LRUCache

    from s3fsv.store.cache import DiskCache
    from s3fsv.store.wholefile import WholeFiles

log = logging.getLogger(__name__)

SIBLING_LOOKAHEAD = 128  # entries looked at ahead of an opened file


class ReadOps:
    """Mixin: needs ``_locate``, ``_entry``, ``_state``, ``_overlay``, ``_ino``, ``_record``,
    ``_writable``, ``staged_handle`` and the attributes declared below."""

    _lock: threading.Lock
    _handles: dict[int, OpenFile | OpenStaged]
    _next_fh: Iterator[int]
    _sequential: LRUCache[str, Sequential]
    cache: DiskCache
    whole: WholeFiles
    read_path_mode: str

    def _add_handle(self, handle: OpenFile | OpenStaged) -> int:
        fh = next(self._next_fh)
        with self._lock:
            self._handles[fh] = handle
        return fh

    def _handle(self, fh: int) -> OpenFile | OpenStaged:
        with self._lock:
            handle = self._handles.get(fh)
        if handle is None:
            raise NotFound(f"stale file handle {fh}")
        return handle

    def open(self, path: str, flags: int) -> int:
        key, snap, inner = self._locate(path)
        if snap is None:
            raise IsADirectory(f"is a directory: {path}")
        state = self._state(snap.repo)
        ov = self._overlay(snap)
        if ov is not None:
            opened = ov.open_local(inner, flags)
            if isinstance(opened, LocalHandle):
                return self.staged_handle(ov, opened, snap, inner, flags)
            entry = opened
        else:
            # O_APPEND without write access changes nothing, as on any read-only filesystem.
            if flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC):
                raise ReadOnly(f"read-only: {path}")
            entry = self._entry(snap, inner)
            if entry.kind == "dir":
                raise IsADirectory(f"is a directory: {path}")
        self._record(Read(snap.repo, snap.commit, snap.label))
        self._prefetch_siblings(state, snap, inner)
        return self._add_handle(OpenFile(state, entry, snap, self._ino(snap, inner)))

    def caching(self, fh: int) -> str:
        """How the kernel may cache an open file: ``keep`` (immutable: keep the page cache),
        ``direct`` (a committed file of a branch: no shared page cache, so the open file keeps
        its content when the branch moves) or ``default`` (a staged file). A staged file opened
        write-only is ``direct`` too: it cannot be read or mapped through that descriptor, so
        filling the page cache with its bytes would only cost the writer new pages."""
        handle = self._handle(fh)
        if isinstance(handle, OpenStaged):
            return "direct" if handle.write_only else "default"
        return "keep" if handle.snapshot.immutable else "direct"

    def _prefetch_siblings(self, state: RepoState, snap: Snapshot, inner: list[str]) -> None:
        """Detection scripts walk directories in name order: warm the next files, continuing
        into the next directory when this one ends."""
        if not inner:
            return
        try:
            if not state.reader.lookahead_due(self._entry(snap, inner)):
                return
            trees = [self._entry(snap, inner[:-1]).tree]
            if len(inner) >= 2:
                trees.insert(0, self._entry(snap, inner[:-2]).tree)
            after, _ = walk_after(state.repo.objects, trees, inner[-2:], SIBLING_LOOKAHEAD)
            # No later open shows more than this window, so a short span held back for more
            # files to join would never grow (files under SPAN_MIN / SIBLING_LOOKAHEAD bytes
            # would all be fetched one by one): fetch what the window holds.
            state.reader.prefetch_files(after, last=True)
        except S3fsvError as err:
            log.debug("sibling prefetch skipped: %s", err)

    def read(self, fh: int, size: int, offset: int, *, borrow: bool = False) -> Bytes:
        """``borrow``: see ``ChunkReader.read`` (only for callers that copy the result at once)."""
        handle = self._handle(fh)
        if isinstance(handle, OpenStaged):
            return os.pread(handle.local.fd, size, offset)
        handle.seq.advise(handle.state.reader, handle.entry, offset, size)
        return handle.state.reader.read(handle.entry, offset, size, borrow=borrow)

    def read_path(self, path: str, size: int, offset: int, *, borrow: bool = False) -> Bytes:
        """Read without a handle (immutable mounts that skip open)."""
        _, snap, inner = self._locate(path)
        if snap is None:
            raise IsADirectory(f"is a directory: {path}")
        entry = self._entry(snap, inner)
        if entry.kind == "dir":
            raise IsADirectory(f"is a directory: {path}")
        state = self._state(snap.repo)
        if offset == 0:
            self._prefetch_siblings(state, snap, inner)
        if offset + size >= entry.size and self.read_path_mode == "passthrough":
            self.whole.schedule(entry)  # read whole: the next mount's opens pass through
        if len(entry.chunks) > 1:
            with self._lock:
                seq = self._sequential.get(path)
                if seq is None:
                    seq = self._sequential[path] = Sequential()
            seq.advise(state.reader, entry, offset, size)
        return state.reader.read(entry, offset, size, borrow=borrow)

    def backing_file(self, path: str) -> tuple[str, Path] | None:
        """(content id, whole-file cache entry) of a pinned file whose content is whole in the
        cache; else None, and the entry is made in the background if its chunks are cached."""
        _, snap, inner = self._locate(path)
        if snap is None or not snap.immutable:
            return None
        entry = self._entry(snap, inner)
        if entry.kind != "file" or entry.size < WHOLE_MIN:
            return None
        found = self.whole.find(entry)
        if found is None:
            if all(self.cache.stored(oid) for oid in entry.chunks):
                self.whole.schedule(entry)
            return None
        return entry.sha256, found

    def release(self, fh: int) -> None:
        with self._lock:
            handle = self._handles.pop(fh, None)
        if isinstance(handle, OpenStaged):
            handle.overlay.release(handle.local)

    def is_immutable_path(self, path: str) -> bool:
        _, snap, _ = self._locate(path)
        return snap is not None and snap.immutable
