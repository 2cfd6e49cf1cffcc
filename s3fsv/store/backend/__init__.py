"""Store backends and the one function that turns a store URL into a backend."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from s3fsv.errors import UsageError
from s3fsv.store.backend.base import Backend, ObjectInfo

__all__ = ["Backend", "ObjectInfo", "open_backend"]


def open_backend(url: str, *, endpoint_url: str | None = None, **s3_options: Any) -> Backend:
    """Open ``memory://[name]``, ``file:///abs/path`` or ``s3://bucket[/prefix]``.

    Raises :class:`UsageError` for anything else. Opening does no I/O for S3: errors about
    credentials or reachability surface on first use, already translated. ``s3_options`` go to
    ``S3Backend`` (timeouts, attempts) and are ignored by the other backends.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "memory":
        from s3fsv.store.backend.memory import MemoryBackend

        return MemoryBackend((parts.netloc + parts.path).strip("/"))
    if scheme == "file":
        from s3fsv.store.backend.file import FileBackend

        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise UsageError(f"bad file URL {url!r}: use file:///absolute/path")
        return FileBackend(parts.path)
    if scheme == "s3":
        from s3fsv.store.backend.s3 import S3Backend

        if not parts.netloc:
            raise UsageError(f"bad S3 URL {url!r}: use s3://bucket/prefix")
        return S3Backend(
            parts.netloc, parts.path.strip("/"), endpoint_url=endpoint_url, **s3_options
        )
    raise UsageError(f"unsupported store URL {url!r}: use s3://, file:// or memory://")
