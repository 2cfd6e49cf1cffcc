"""What an import reads: the objects below ``s3://BUCKET/PREFIX/``, each fetched once, hashed
chunk by chunk, and turned into a tree entry that keeps the bytes where they are (or copied).

A key becomes a path by dropping the prefix; each ``/``-separated part must be a valid name
(docs/format.md, section 5). Keys that are not (``a//b``, ``..``, a trailing ``/`` folder
marker) are skipped and counted, never imported under another name.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from urllib.parse import urlsplit

from s3fsv.errors import InvalidName, StoreUnavailable, UsageError
from s3fsv.store.backend.base import SourceObject
from s3fsv.store.backend.s3 import S3Backend
from s3fsv.store.objects import Source, TreeEntry, check_attrs, check_name

log = logging.getLogger(__name__)

# Metadata and tag names an import keeps as file attributes by default: those that name a
# device or a customer. ``--attrs NAME,...`` chooses others; ``--attrs '*'`` keeps them all.
DEFAULT_ATTRS = ("camera", "customer", "device", "house", "site")
FILE_MODE = 0o644


@dataclass(frozen=True)
class Origin:
    """``s3://BUCKET/PREFIX/``: where an import reads. ``prefix`` is "" or ends with ``/``."""

    bucket: str
    prefix: str

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def path_of(self, key: str) -> str | None:
        """The repo path (below the import's target) of ``key``, or None when the key cannot
        be a path."""
        rest = key[len(self.prefix) :] if key.startswith(self.prefix) else None
        if not rest or rest.endswith("/"):
            return None
        try:
            return "/".join(check_name(part) for part in rest.split("/"))
        except InvalidName:
            return None


def parse_origin(text: str) -> Origin:
    """``s3://bucket[/prefix[/]]`` -> Origin; ``UsageError`` for anything else."""
    parts = urlsplit(text)
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise UsageError(f"import reads s3://BUCKET/PREFIX/, not {text!r}")
    prefix = parts.path.lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return Origin(parts.netloc, prefix)


@dataclass(frozen=True)
class AttrRule:
    """Which object metadata and tags become file attributes."""

    names: frozenset[str] | None = frozenset(DEFAULT_ATTRS)  # None: all
    tags: bool = True

    @classmethod
    def parse(cls, text: str | None, *, tags: bool = True) -> AttrRule:
        if text is None:
            return cls(tags=tags)
        if text.strip() == "*":
            return cls(None, tags)
        names = frozenset(n.strip().lower() for n in text.split(",") if n.strip())
        return cls(names, tags)

    def keep(self, found: dict[str, str]) -> dict[str, str]:
        """The attributes to keep of ``found`` (metadata and tags, lowercased names); those that
        cannot be attributes (bad names, long values) are dropped with a debug line."""
        out: dict[str, str] = {}
        for name, value in found.items():
            name = name.lower()
            if self.names is not None and name not in self.names:
                continue
            try:
                check_attrs({name: value})
            except ValueError as err:
                log.debug("attribute %s not kept: %s", name, err)
                continue
            out[name] = value
        return out


@dataclass
class Fetched:
    """An object as fetched once: what it was, its chunk ids and whole SHA-256, its attributes,
    and (for ``--copy``) its bytes."""

    info: SourceObject
    sha256: str
    chunks: tuple[str, ...]
    attrs: dict[str, str]
    data: bytes | None = None

    def entry(self, origin: Origin, name: str) -> TreeEntry:
        """The tree entry that keeps this object where it is (an empty object has no bytes to
        keep: it is an empty file)."""
        info = self.info
        source = Source(origin.bucket, info.key, info.version, info.etag) if info.size else None
        return TreeEntry(
            name,
            "file",
            FILE_MODE,
            info.modified_ns,
            info.size,
            self.sha256,
            self.chunks if info.size else (),
            source=source,
            attrs=check_attrs(self.attrs),
        )


def fetch(
    bucket: S3Backend, key: str, chunk_size: int, rule: AttrRule, *, keep_bytes: bool
) -> Fetched:
    """Read object ``key`` once: hash each ``chunk_size`` piece and the whole, collect its
    attributes (tags cost one more request, only when it has tags and tags are wanted)."""
    info, pieces = bucket.open_object(key, chunk_size)
    whole = hashlib.sha256()
    chunks: list[str] = []
    kept: list[bytes] = []
    pending = b""
    total = 0

    def seal(chunk: bytes) -> None:
        chunks.append(hashlib.sha256(chunk).hexdigest())
        whole.update(chunk)
        if keep_bytes:
            kept.append(chunk)

    for piece in pieces:
        total += len(piece)
        pending = pending + piece if pending else piece
        while len(pending) >= chunk_size:
            seal(pending[:chunk_size])
            pending = pending[chunk_size:]
    if pending:
        seal(pending)
    if total != info.size:
        raise StoreUnavailable(f"read {total} of {info.size} bytes of s3://{bucket.bucket}/{key}")
    found = dict(info.metadata or {})
    if rule.tags and info.tag_count > 0:
        found.update(bucket.object_tags(key, info.version))
    data = b"".join(kept) if keep_bytes else None
    return Fetched(info, whole.hexdigest(), tuple(chunks), rule.keep(found), data)
