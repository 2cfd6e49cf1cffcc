"""A committed file opened for reading: a seekable raw file over the verified chunk reader."""

from __future__ import annotations

import errno
import io
import os

from s3fsv.store.objects import TreeEntry
from s3fsv.store.reader import ChunkReader, Sequential


class RepoFile(io.RawIOBase):
    """Read-only, seekable bytes of one committed file. Each read fetches only the chunks it
    covers (through the shared disk cache, verified); a sequential reader gets read-ahead from
    the chunk reader. Wrap it in ``io.BufferedReader`` for small reads (``Repo.open`` does:
    its ``raw`` is this). ``size`` and ``sha256`` are the file's, as its commit records."""

    def __init__(self, reader: ChunkReader, entry: TreeEntry, name: str) -> None:
        super().__init__()
        self._reader = reader
        self._entry = entry
        self._pos = 0
        self._ahead = Sequential()
        self.name = name

    @property
    def size(self) -> int:
        """The file's size in bytes."""
        return self._entry.size

    @property
    def sha256(self) -> str:
        """The whole content's SHA-256, as the commit records it."""
        return self._entry.sha256

    def readable(self) -> bool:
        """True."""
        return True

    def seekable(self) -> bool:
        """True."""
        return True

    def tell(self) -> int:
        """The position the next read starts at."""
        self._checkClosed()
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """Move to ``offset`` from the start, the position or the end (``whence`` 0, 1, 2);
        return the new position. Past the end is allowed (reads there return ``b""``); before
        the start is ``OSError(EINVAL)``."""
        self._checkClosed()
        if whence == os.SEEK_SET:
            pos = offset
        elif whence == os.SEEK_CUR:
            pos = self._pos + offset
        elif whence == os.SEEK_END:
            pos = self._entry.size + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if pos < 0:
            raise OSError(errno.EINVAL, "negative seek position")
        self._pos = pos
        return pos

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        """Read up to ``len(buffer)`` bytes at the position into ``buffer``; return how many
        (0 at the end of the file). A read that ends part way into a later chunk stops at the
        start of that chunk (a short read; read on for the rest): a buffered reader asks for
        more than its caller wants, and a few bytes of a chunk are not worth fetching it."""
        self._checkClosed()
        view = memoryview(buffer).cast("B")
        end = min(self._pos + len(view), self.size)
        boundary = end - end % self._reader.chunk_size
        if boundary > self._pos:
            end = boundary
        want = max(0, end - self._pos)
        self._ahead.advise(self._reader, self._entry, self._pos, want)
        data = self._reader.read(self._entry, self._pos, want)
        n = len(data)
        view[:n] = data
        self._pos += n
        return n

    def readall(self) -> bytes:
        """Everything from the position to the end, its chunks fetched in parallel."""
        self._checkClosed()
        want = max(0, self.size - self._pos)
        self._ahead.advise(self._reader, self._entry, self._pos, want)
        data = bytes(self._reader.read(self._entry, self._pos, want))
        self._pos += len(data)
        return data
