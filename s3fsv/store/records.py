"""Small JSON records kept beside the repos, for state that is not a file tree.

A record set lives under ``STORE/_<namespace>/``; repo names start with a letter or digit, so
these prefixes never collide with a repo. Records are canonical JSON (docs/format.md, section
3) and change only by conditional writes:

- ``create`` writes a record that must not exist yet (``If-None-Match: *``): write-once slots,
  claims, and results that must be recorded exactly once;
- ``replace`` writes only over the version the caller read (``If-Match: <etag>``): a
  compare-and-swap, so two writers never both think they won.

They hold coordination state (pipeline leases and job results, lineage index entries, import
cursors): each is small, and readers verify nothing beyond JSON validity, since a record is
never the only copy of data a commit refers to.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from s3fsv.errors import AlreadyExists, CorruptObject, NotFound, PreconditionFailed
from s3fsv.store.backend.base import Backend
from s3fsv.store.objects import canonical_json, check_name
from s3fsv.store.refs import check_ref_name


@dataclass(frozen=True)
class Record:
    """A record's value and the etag to pass to ``Records.replace``."""

    value: Any
    etag: str


class Records:
    """The records of one namespace. Names are ``/``-separated, each part a valid file name
    (no ``..``, ``/`` or NUL). Thread-safe (it holds no state but the backend)."""

    def __init__(self, backend: Backend, namespace: str) -> None:
        self.backend = backend
        self.namespace = check_ref_name(namespace, "record namespace")
        self.prefix = f"_{namespace}/"

    def key(self, name: str) -> str:
        parts = name.split("/")
        for part in parts:
            check_name(part)
        return self.prefix + "/".join(parts)

    def create(self, name: str, value: Any, *, retain_until: datetime | None = None) -> str:
        """Write ``name`` only if it does not exist; ``AlreadyExists`` when it does. Returns
        the etag. With ``retain_until``, on a store that can (an S3 bucket with Object Lock),
        the record is also locked in compliance mode until then: not even the account's root
        can delete or replace it; elsewhere the write is the same write-once put."""
        data = canonical_json(value)
        put_retained = getattr(self.backend, "put_retained", None)
        try:
            if retain_until is not None and put_retained is not None:
                return str(put_retained(self.key(name), data, retain_until))
            return self.backend.put(self.key(name), data, if_none_match=True)
        except PreconditionFailed:
            raise AlreadyExists(f"record {self.namespace}:{name} exists already") from None

    def raw(self, name: str) -> bytes:
        """The stored bytes of ``name`` as they are (for hashing); ``NotFound`` when none."""
        return self.backend.get(self.key(name))

    def replace(self, name: str, value: Any, etag: str) -> str:
        """Overwrite ``name`` only if it is still at ``etag``; ``PreconditionFailed`` when
        someone else changed (or removed) it first. Returns the new etag."""
        return self.backend.put(self.key(name), canonical_json(value), if_match=etag)

    def get(self, name: str) -> Record:
        """The record ``name``; ``NotFound`` when there is none."""
        key = self.key(name)
        info = self.backend.head(key)
        data = self.backend.get(key)
        try:
            value = json.loads(data)
        except ValueError:
            raise CorruptObject(key, "record is not valid JSON") from None
        # The etag read by head may be older than the body when a writer raced us; a replace
        # with it then fails, which is the safe outcome.
        return Record(value, info.etag)

    def exists(self, name: str) -> bool:
        """Whether ``name`` has a record (one HEAD)."""
        try:
            self.backend.head(self.key(name))
        except NotFound:
            return False
        return True

    def find(self, name: str) -> Record | None:
        """The record ``name``, or None."""
        try:
            return self.get(name)
        except NotFound:
            return None

    def names(self, below: str = "") -> Iterator[str]:
        """Names of every record below ``below`` (all when empty), ascending."""
        prefix = self.key(below) + "/" if below else self.prefix
        for key in self.backend.list(prefix):
            yield key[len(self.prefix) :]

    def children(self, below: str = "") -> Iterator[str]:
        """The names directly below ``below`` that have records under them (a delimiter
        listing), without trailing slash."""
        prefix = self.key(below) + "/" if below else self.prefix
        for key in self.backend.list_prefixes(prefix):
            yield key[len(self.prefix) :].rstrip("/")

    def delete(self, name: str) -> None:
        """Remove ``name``; removing a missing record is not an error."""
        self.backend.delete(self.key(name))
