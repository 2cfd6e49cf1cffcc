"""The Backend contract: the few key/value operations s3fsv needs from a store.

Keys are ``/``-separated strings relative to the store root (no leading ``/``). Values are bytes.
Every implementation must honour these contracts, which ``tests/test_backend_contract.py`` checks
against each of them:

- ``get(key, start, end)`` returns bytes ``[start, end)`` (``end`` clamped to the size) or the whole
  value; raises :class:`~s3fsv.errors.NotFound` for a missing key.
- ``head(key)`` returns :class:`ObjectInfo`; raises ``NotFound``.
- ``put(key, data, if_none_match=True)`` writes only if the key does not exist, atomically with
  respect to every other writer; ``put(key, data, if_match=etag)`` writes only if the current etag
  is ``etag``. A lost condition raises :class:`~s3fsv.errors.PreconditionFailed` (a missing key
  under ``if_match`` also counts as lost). Returns the new etag. Readers never see partial values.
  ``content_sha256``, when given, is the hex SHA-256 of ``data`` as computed by the caller; a
  backend may hand it to the server so that the server checks the bytes it received.
- ``list(prefix)`` yields every key that starts with ``prefix``, in ascending order, fetching
  pages lazily.
- ``list_prefixes(prefix)`` yields the distinct ``prefix + name + "/"`` "directories" directly
  below ``prefix`` (a delimiter listing), in ascending order.
- ``delete(key)`` removes a key; deleting a missing key is not an error.

Optionally (:class:`Sweepable`, every backend here): ``list_info(prefix)`` yields
:class:`KeyInfo` (key, size, last-modified time) like ``list``; ``touch(key)`` makes a key's
last-modified time now without changing its value (``NotFound`` when it is missing);
``delete_many(keys)`` removes keys like ``delete``, in as few requests as the store allows.
Garbage collection needs them (``s3fsv.ingest.gc``).

Optionally (:class:`ReadsInto`), ``read_into(key, alloc)`` reads a whole value into memory the
caller provides: it calls ``alloc(size)`` once, fills the writable buffer it returns and returns
that buffer; it raises ``NotFound`` like ``get``. Large chunk bodies use it to land in aligned,
reused memory without a copy (see :mod:`s3fsv.store.buffers`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol, TypeVar, runtime_checkable

B = TypeVar("B")


@dataclass(frozen=True)
class ObjectInfo:
    """Size in bytes and an opaque etag that changes whenever the value changes."""

    size: int
    etag: str


@runtime_checkable
class Backend(Protocol):
    """See the module docstring for the contract."""

    url: str

    def get(self, key: str, start: int | None = None, end: int | None = None) -> bytes: ...

    def head(self, key: str) -> ObjectInfo: ...

    def put(
        self,
        key: str,
        data: bytes,
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
        content_sha256: str | None = None,
    ) -> str: ...

    def list(self, prefix: str = "") -> Iterator[str]: ...

    def list_prefixes(self, prefix: str = "") -> Iterator[str]: ...

    def delete(self, key: str) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class KeyInfo:
    """A listed key, its size and when it was last written (nanoseconds since the epoch, as the
    store's clock says; S3 keeps whole seconds)."""

    key: str
    size: int
    modified_ns: int


@dataclass(frozen=True)
class SourceObject:
    """An object of a bucket as an importer sees it (``S3Backend.list_objects`` and
    ``open_object``): its key (in the bucket), size, ETag (quotes included), version id ("" when
    the bucket does not version), last-modified time, user metadata (``x-amz-meta-*``, names
    lowercase) and how many tags it has (-1: not known from a listing)."""

    key: str
    size: int
    etag: str
    version: str = ""
    modified_ns: int = 0
    metadata: dict[str, str] | None = None
    tag_count: int = -1


@runtime_checkable
class Sweepable(Protocol):
    """The optional listing-with-times, ``touch`` and bulk delete; see the module docstring."""

    def list_info(self, prefix: str = "") -> Iterator[KeyInfo]: ...

    def touch(self, key: str) -> None: ...

    def delete_many(self, keys: list[str]) -> None: ...


@runtime_checkable
class ReadsInto(Protocol):
    """The optional ``read_into`` capability; see the module docstring."""

    def read_into(self, key: str, alloc: Callable[[int], B]) -> B: ...


def copy_into(data: bytes, alloc: Callable[[int], B]) -> B:
    """``read_into`` for a value already read as ``data``: one copy into ``alloc``'s buffer."""
    buf = alloc(len(data))
    memoryview(buf).cast("B")[:] = data  # type: ignore[arg-type]
    return buf


def check_key(key: str) -> str:
    """Refuse keys that could escape a prefix or a directory: empty parts, ``.``/``..``, NUL."""
    from s3fsv.errors import InvalidName

    if not key or key.startswith("/") or "\0" in key:
        raise InvalidName(f"invalid store key {key!r}")
    for part in key.split("/"):
        if part in ("", ".", ".."):
            raise InvalidName(f"invalid store key {key!r}")
    return key


def check_range(start: int | None, end: int | None) -> None:
    from s3fsv.errors import UsageError

    if start is not None and start < 0:
        raise UsageError(f"invalid range start {start}")
    if end is not None and (end < 0 or (start is not None and end < start)):
        raise UsageError(f"invalid range end {end}")
