"""Reading purge tombstones (``STORE/_purges/<id>``): what mounts and ``gc`` act on.

``s3fsv purge`` (``s3fsv.ingest.purge``) writes them; the format is in docs/ingest.md. Here:
listing them in order, the commit each rewritten commit became, and the store objects they
condemn.
"""

from __future__ import annotations

from collections.abc import Container, Iterator
from typing import Any

from s3fsv.store.backend.base import Backend
from s3fsv.store.objects import is_object_id
from s3fsv.store.records import Records

NAMESPACE = "purges"


def records(backend: Backend) -> Records:
    return Records(backend, NAMESPACE)


def tombstones(backend: Backend, skip: Container[str] = ()) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every tombstone (id, value), oldest first, but those in ``skip`` (not read)."""
    store = records(backend)
    for name in store.names():
        if name not in skip:
            found = store.find(name)
            if found is not None and isinstance(found.value, dict):
                yield name, found.value


def condemned(backend: Backend) -> dict[str, set[str]]:
    """Repo -> store objects purges named as holding purged bytes (for ``gc``)."""
    out: dict[str, set[str]] = {}
    for _, value in tombstones(backend):
        ids = {o for o in value.get("objects", ()) if is_object_id(o)}
        out.setdefault(str(value.get("repo", "")), set()).update(ids)
    return out


def rewritten(value: dict[str, Any]) -> dict[str, str]:
    """Old commit -> new commit, as one tombstone records them (valid ids only)."""
    found = value.get("rewritten", {})
    if not isinstance(found, dict):
        return {}
    return {o: n for o, n in found.items() if is_object_id(o) and is_object_id(n)}
