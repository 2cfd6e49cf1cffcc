"""Uploading local files as chunks, in parallel, skipping chunks the store already has."""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from s3fsv.objects import TreeEntry, check_name
from s3fsv.objectstore import ObjectStore


@dataclass(frozen=True)
class Content:
    size: int
    sha256: str
    chunks: tuple[str, ...]

    def entry(self, name: str, mode: int, mtime_ns: int) -> TreeEntry:
        return TreeEntry(
            check_name(name), "file", mode & 0o7777, mtime_ns, self.size, self.sha256, self.chunks
        )


class Uploader:
    """Uploads chunks with a bounded pool of threads and bounded memory in flight.

    ``progress`` (optional) is called with the number of bytes just handled, from any thread.
    Use as a context manager; ``upload_file`` may be called from many threads at once.
    """

    def __init__(
        self,
        objects: ObjectStore,
        chunk_size: int,
        *,
        threads: int = 16,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        self.objects = objects
        self.chunk_size = chunk_size
        self.progress = progress
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="s3fsv-upload")
        self._in_flight = threading.BoundedSemaphore(threads * 2)

    def __enter__(self) -> Uploader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _put(self, data: bytes, oid: str | None = None) -> str:
        try:
            return self.objects.put_bytes(data, fill_cache=False, oid=oid)
        finally:
            self._in_flight.release()
            if self.progress is not None:
                self.progress(len(data))

    def _submit(self, data: bytes, oid: str | None) -> Future[str]:
        """Queue one chunk, waiting while too many are in flight (bounded memory)."""
        self._in_flight.acquire()
        try:
            return self._pool.submit(self._put, data, oid)
        except BaseException:  # the pool is shutting down: give the slot back
            self._in_flight.release()
            raise

    def upload_bytes(self, data: bytes) -> Content:
        futures: list[Future[str]] = []
        for off in range(0, len(data), self.chunk_size):
            futures.append(self._submit(data[off : off + self.chunk_size], None))
        return Content(len(data), hashlib.sha256(data).hexdigest(), _results(futures))

    def upload_file(self, path: str | os.PathLike[str]) -> Content:
        """Upload one regular file. The file must not change while it is read; if its size
        changes underneath, ``OSError`` is raised rather than recording a torn snapshot."""
        digest = hashlib.sha256()
        futures: list[Future[str]] = []
        size = 0
        with open(path, "rb") as fh:
            before = os.fstat(fh.fileno())
            if not stat.S_ISREG(before.st_mode):
                raise OSError(f"not a regular file: {path}")
            while True:
                data = fh.read(self.chunk_size)
                if not data:
                    break
                size += len(data)
                oid = None
                if size == len(data) and len(data) < self.chunk_size:
                    digest = hashlib.sha256(data)  # a one-chunk file: its hash is the chunk's id
                    oid = digest.hexdigest()
                else:
                    digest.update(data)
                futures.append(self._submit(data, oid))
            after = os.fstat(fh.fileno())
        if size != after.st_size or before.st_mtime_ns != after.st_mtime_ns:
            for f in futures:
                f.cancel()
            raise OSError(f"file changed while it was uploaded: {path}")
        return Content(size, digest.hexdigest(), _results(futures))


def _results(futures: list[Future[str]]) -> tuple[str, ...]:
    return tuple(f.result() for f in futures)
