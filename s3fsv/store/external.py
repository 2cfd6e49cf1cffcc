"""Reading the originals that imported files are kept in (tree entries with a ``source``).

An import without ``--copy`` stores no bytes: each file entry names an object of a bucket
(bucket, key, version id or ETag) and the SHA-256 of every chunk of it, computed at import.
Reads fetch byte ranges of that object, pinned to its version and conditional on its ETag, and
the caller verifies them against the chunk ids like any other chunk (``ObjectStore``). A
changed or deleted original is :class:`~s3fsv.errors.SourceChanged`, never other bytes.

Buckets are reached at the store's own S3 endpoint (or ``AWS_ENDPOINT_URL``) with the same
credentials; one client per bucket, made on first use.
"""

from __future__ import annotations

import os
import threading

from s3fsv.errors import NotFound, PreconditionFailed, SourceChanged
from s3fsv.store.backend.base import Backend
from s3fsv.store.backend.s3 import S3Backend
from s3fsv.store.objects import Source


class Sources:
    """Clients for the buckets that hold imported originals. Thread-safe."""

    def __init__(self, endpoint_url: str | None = None) -> None:
        self.endpoint_url = endpoint_url
        self._buckets: dict[str, S3Backend] = {}
        self._lock = threading.Lock()

    @classmethod
    def beside(cls, backend: Backend) -> Sources:
        """Sources reached the way ``backend`` (a store's) reaches its own bucket."""
        endpoint = getattr(backend, "endpoint_url", None) or os.environ.get("AWS_ENDPOINT_URL")
        return cls(endpoint)

    def bucket(self, name: str) -> S3Backend:
        """The client of bucket ``name`` (keys are the bucket's own, no prefix)."""
        with self._lock:
            found = self._buckets.get(name)
            if found is None:
                found = self._buckets[name] = S3Backend(name, "", self.endpoint_url)
            return found

    def read(self, source: Source, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of ``source`` as it was imported; ``SourceChanged`` when it
        was overwritten or deleted since."""
        try:
            return self.bucket(source.bucket).read_object(
                source.key, start, end, version=source.version, etag=source.etag
            )
        except PreconditionFailed:
            raise SourceChanged(
                f"the original {source.url} changed after it was imported (its ETag is no "
                f"longer {source.etag}): its bytes are not served"
            ) from None
        except NotFound:
            which = f" version {source.version}" if source.version else ""
            raise SourceChanged(
                f"the original {source.url}{which} was deleted after it was imported"
            ) from None

    def close(self) -> None:
        with self._lock:
            buckets, self._buckets = list(self._buckets.values()), {}
        for backend in buckets:
            backend.close()
