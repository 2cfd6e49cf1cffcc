"""Uploading the finished chunks of staged files while they are still being written.

A large file written front to back (the common case: a script saving its output) has its first
chunks complete long before it is closed. Uploading each chunk as soon as the writes have moved
past it overlaps the upload with the writing, so that a commit finds most chunks already stored
(``ObjectStore`` remembers them) and only uploads the tail.

This is only an optimisation, never a source of truth: a commit still reads and hashes every
chunk of the file it records, and a chunk uploaded early counts only if its id is the one the
commit computes. So a file that was overwritten, truncated or written by two handles at once
costs at most a wasted upload, never a wrong commit. To keep that waste small, a file is
followed only while every write starts where the previous one ended, beginning at offset 0;
any other write or truncate stops early uploads of that file.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from s3fsv.objectstore import ObjectStore

log = logging.getLogger(__name__)


@dataclass
class _File:
    end: int = 0  # where the next sequential write must start
    queued: int = 0  # chunks [0, queued) are uploaded or queued
    futures: list[Future[None]] = field(default_factory=list)


class WriteBehind:
    """Follows staged data files by name. Thread-safe. ``path_of(name)`` gives a data file's
    local path; chunks are read back from it when their upload runs, so queued work holds no
    file data in memory, and at most ``threads`` chunks are in memory at once."""

    def __init__(
        self,
        objects: ObjectStore,
        chunk_size: int,
        path_of: Callable[[str], str | os.PathLike[str]],
        *,
        threads: int = 4,
    ) -> None:
        self.objects = objects
        self.chunk_size = chunk_size
        self.path_of = path_of
        self._files: dict[str, _File] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="s3fsv-early")

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def started(self, name: str) -> None:
        """Data file ``name`` is now empty and open for writing: follow it."""
        with self._lock:
            self._drop(name)
            self._files[name] = _File()

    def wrote(self, name: str, offset: int, length: int) -> None:
        """``length`` bytes were written at ``offset``; queue the chunks this completed."""
        with self._lock:
            f = self._files.get(name)
            if f is None:
                return
            if offset != f.end:
                self._drop(name)
                return
            f.end += length
            while (f.queued + 1) * self.chunk_size <= f.end:
                f.futures.append(self._pool.submit(self._upload, name, f.queued))
                f.queued += 1

    def truncated(self, name: str, length: int) -> None:
        with self._lock:
            f = self._files.get(name)
            if f is not None and length != f.end:
                self._drop(name)

    def settle(self, names: Iterable[str]) -> None:
        """Before a commit reads these files: cancel their queued uploads (the commit does
        them itself) and wait for those already running, so nothing is uploaded twice."""
        with self._lock:
            futures = []
            for name in names:
                f = self._files.get(name)
                if f is not None:
                    futures += [fut for fut in f.futures if not fut.cancel()]
                    f.futures = []
                    f.queued = f.end // self.chunk_size  # what stays queued is done or dropped
        for fut in futures:
            fut.exception()  # failures were logged; the commit uploads what is missing

    def flush(self) -> None:
        """Wait until every queued upload has run."""
        with self._lock:
            futures = [fut for f in self._files.values() for fut in f.futures]
        for fut in futures:
            if not fut.cancelled():
                fut.exception()

    def forget(self, names: Iterable[str]) -> None:
        with self._lock:
            for name in names:
                self._drop(name)

    def _drop(self, name: str) -> None:
        f = self._files.pop(name, None)
        if f is not None:
            for fut in f.futures:
                fut.cancel()

    def _upload(self, name: str, idx: int) -> None:
        try:
            with open(self.path_of(name), "rb") as fh:
                data = os.pread(fh.fileno(), self.chunk_size, idx * self.chunk_size)
            if len(data) == self.chunk_size:  # shorter: truncated meanwhile, nothing to do
                self.objects.put_bytes(data, fill_cache=False)
        except FileNotFoundError:
            pass  # committed or discarded meanwhile
        except Exception as err:
            log.warning("early upload of a chunk of a staged file failed: %s", err)
