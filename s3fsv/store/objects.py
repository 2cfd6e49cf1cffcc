"""Immutable object types and their canonical encoding.

Every stored object's id is the SHA-256 (lowercase hex) of its bytes. Chunks are raw file bytes.
Trees, tree pages and commits are canonical JSON: keys sorted, no insignificant whitespace, UTF-8,
integers only (no floats). ``encode`` of a decoded object gives back the same bytes, so the same
content always has the same id; ``decode`` refuses anything that is not in canonical form, so a
hostile or corrupted object cannot smuggle in a second spelling of the same content.
See ``docs/format.md`` for the byte-level description.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from s3fsv.errors import CorruptObject, InvalidName, NameTooLong
from s3fsv.store.buffers import Chunk

FORMAT_VERSION = 1
PACKED_VERSION = 2  # trees and pages holding at least one packed file entry
SOURCED_VERSION = 3  # trees and pages holding a file imported in place or with attributes
DEFAULT_CHUNK_SIZE = 8 * 1024 * 1024

Kind = Literal["file", "dir", "link"]
_HEX_DIGITS = "0123456789abcdef"
_COMMIT_PREFIX = re.compile(r"[0-9a-f]{4,64}")
_MAX_NAME_BYTES = 255
_ATTR_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
MAX_ATTR_VALUE_BYTES = 1024
MAX_ATTRS = 32


def sha256_hex(data: bytes | bytearray | memoryview | Chunk) -> str:
    return hashlib.sha256(data).hexdigest()


def is_object_id(value: object) -> bool:
    # (strip rather than a regex: a walk checks two ids per file, and this is twice as fast)
    return isinstance(value, str) and len(value) == 64 and not value.strip(_HEX_DIGITS)


def is_commit_prefix(text: str) -> bool:
    """Whether ``text`` can name a commit by (a prefix of) its id: 4 to 64 lowercase hex."""
    return _COMMIT_PREFIX.fullmatch(text) is not None


def check_name(name: object) -> str:
    """Return ``name`` if it is a valid single path component, else raise ``InvalidName``.

    Refused: non-strings, empty, ``.``, ``..``, anything containing ``/`` or NUL, and names longer
    than 255 bytes of UTF-8 (the POSIX NAME_MAX every local filesystem enforces).
    """
    if not isinstance(name, str) or name in ("", ".", ".."):
        raise InvalidName(f"invalid name {name!r}")
    if "/" in name or "\0" in name:
        raise InvalidName(f"invalid name {name!r}: contains '/' or NUL")
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidName(f"invalid name {name!r}: not valid UTF-8") from None
    if len(encoded) > _MAX_NAME_BYTES:
        raise NameTooLong(f"invalid name {name[:40]!r}...: longer than {_MAX_NAME_BYTES} bytes")
    return name


def split_path(path: str) -> list[str]:
    """Split a repo-relative path into validated components. ``""`` and ``"/"`` mean the root."""
    parts = [p for p in path.strip("/").split("/")] if path.strip("/") else []
    for part in parts:
        check_name(part)
    return parts


def join_path(parts: list[str] | tuple[str, ...]) -> str:
    return "/".join(parts)


@dataclass(frozen=True)
class Source:
    """Where an imported file's bytes stay: an object of another S3 bucket (or of this one,
    outside the store), named by ``bucket`` and ``key`` and pinned by ``version`` (its version
    id, "" when the bucket does not version objects) and ``etag`` (as S3 returned it, quotes
    included). A read that finds the object changed or gone fails; it never returns other
    bytes (docs/format.md, section 7.2)."""

    bucket: str
    key: str
    version: str
    etag: str

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def to_json(self) -> dict[str, str]:
        return {"bucket": self.bucket, "key": self.key, "version": self.version, "etag": self.etag}

    @classmethod
    def from_json(cls, raw: Any) -> Source:
        _exact_keys(raw, {"bucket", "key", "version", "etag"})
        bucket, key, version, etag = raw["bucket"], raw["key"], raw["version"], raw["etag"]
        if not all(isinstance(v, str) for v in (bucket, key, version, etag)):
            raise ValueError("source fields must be strings")
        if not bucket or "/" in bucket or not key or not etag or "\0" in key + version + etag:
            raise ValueError("bad source object")
        return cls(bucket, key, version, etag)


Attrs = tuple[tuple[str, str], ...]


def check_attrs(attrs: Any) -> Attrs:
    """File attributes as stored: sorted (name, value) pairs. Names are 1 to 64 of
    ``a-z 0-9 . _ -`` starting with a letter or digit (S3 metadata keys are lowercase);
    values are strings of at most 1024 UTF-8 bytes without NUL; at most 32 of them.
    ``ValueError`` otherwise."""
    pairs = sorted(dict(attrs).items())
    if len(pairs) > MAX_ATTRS:
        raise ValueError(f"more than {MAX_ATTRS} attributes")
    for name, value in pairs:
        if not isinstance(name, str) or not _ATTR_NAME.fullmatch(name):
            raise ValueError(f"bad attribute name {name!r}")
        if not isinstance(value, str) or "\0" in value:
            raise ValueError(f"bad value of attribute {name!r}")
        if len(value.encode("utf-8", "surrogatepass")) > MAX_ATTR_VALUE_BYTES:
            raise ValueError(f"value of attribute {name!r} is longer than 1024 bytes")
    return tuple(pairs)


@dataclass(frozen=True)
class TreeEntry:
    """One name in a directory.

    - ``file``: ``size``, ``sha256`` of the whole content, and ``chunks`` (ids of consecutive
      ``chunk_size`` pieces, the last one shorter; empty for an empty file). A small file may be
      stored as a member of a pack object instead of as its own chunk object: then ``pack`` is
      the pack's id and its one chunk is the bytes ``[pack_offset, pack_offset + size)`` of it.
      An imported file may instead stay in its original object (``source``): its chunks are
      then ranges of that object, each verified against its chunk id. ``attrs`` are a file's
      attributes (imported object metadata naming a device or a customer).
    - ``dir``: ``tree``, the id of the directory's tree object.
    - ``link``: ``target``, the symlink's target string (never interpreted by s3fsv).
    ``mode`` holds permission bits only (0o7777); ``mtime_ns`` is nanoseconds since the epoch.
    """

    name: str
    kind: Kind
    mode: int
    mtime_ns: int
    size: int = 0
    sha256: str = ""
    chunks: tuple[str, ...] = ()
    tree: str = ""
    target: str = ""
    pack: str = ""
    pack_offset: int = 0
    source: Source | None = None
    attrs: Attrs = ()

    def same_content(self, other: TreeEntry | None) -> bool:
        """Equal but for where the bytes are stored: a file re-packed elsewhere, or copied
        from its imported original into the store, is unchanged."""
        if other is None:
            return False
        if self.pack or other.pack or self.source or other.source:
            return self.stored_anywhere() == other.stored_anywhere()
        return self == other

    def stored_anywhere(self) -> TreeEntry:
        """This entry without where its bytes are (pack, source)."""
        return replace(self, pack="", pack_offset=0, source=None)

    @property
    def format_version(self) -> int:
        """The lowest object version that can hold this entry (section 12 of docs/format.md)."""
        if self.source is not None or self.attrs:
            return SOURCED_VERSION
        return PACKED_VERSION if self.pack else FORMAT_VERSION

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "type": self.kind,
            "mode": self.mode,
            "mtime": self.mtime_ns,
        }
        if self.kind == "file":
            out.update(size=self.size, sha256=self.sha256, chunks=list(self.chunks))
            if self.pack:
                out["pack"] = {"id": self.pack, "offset": self.pack_offset}
            if self.source is not None:
                out["source"] = self.source.to_json()
            if self.attrs:
                out["attrs"] = dict(self.attrs)
        elif self.kind == "dir":
            out["tree"] = self.tree
        else:
            out.update(size=self.size, target=self.target)
        return out

    @classmethod
    def from_json(cls, raw: Any, key: str) -> TreeEntry:
        try:
            kind, name, mode, mtime = entry_basics(raw)
            if kind == "file":
                # A walk decodes every entry of the tree: this path avoids building sets and
                # checks the usual one-chunk file's id once (its chunk is its content hash).
                keys = raw.keys()  # raw is a dict: JSON's lists and strings fail raw["type"]
                if not (keys >= _FILE_KEYS and keys <= _FILE_ALL_KEYS):
                    _exact_keys(raw, _FILE_KEYS | (_FILE_OPTIONAL_KEYS & keys))
                sha256 = raw["sha256"]
                chunks = tuple(raw["chunks"])
                if not is_object_id(sha256) or (
                    chunks != (sha256,) and not all(map(is_object_id, chunks))
                ):
                    raise ValueError("bad content hash")
                size = _int(raw["size"])
                if size < 0 or (size > 0) != bool(chunks):
                    raise ValueError("size and chunk list disagree")
                pack, offset = _pack_location(raw.get("pack"), chunks, sha256)
                source = Source.from_json(raw["source"]) if "source" in raw else None
                if source is not None and (pack or not chunks):
                    raise ValueError("a file kept in its source object is not packed or empty")
                attrs = check_attrs(raw["attrs"]) if "attrs" in raw else ()
                if "attrs" in raw and not attrs:
                    raise ValueError("empty attrs")
                # Positional, in field order (name ... chunks, tree, target, pack ... attrs).
                return cls(
                    name, "file", mode, mtime, size, sha256, chunks, "", "", pack, offset,
                    source, attrs,
                )  # fmt: skip
            if kind == "dir":
                _exact_keys(raw, {"name", "type", "mode", "mtime", "tree"})
                if not is_object_id(raw["tree"]):
                    raise ValueError("bad tree id")
                return cls(name, "dir", mode, mtime, tree=raw["tree"])
            if kind == "link":
                _exact_keys(raw, {"name", "type", "mode", "mtime", "size", "target"})
                target = check_target(raw["target"])
                size = _int(raw["size"])
                if size < 0:
                    raise ValueError(f"negative size {size}")
                return cls(name, "link", mode, mtime, size, target=target)
            raise ValueError(f"unknown entry type {kind!r}")
        except InvalidName as err:
            raise CorruptObject(key, f"hostile tree entry: {err}") from None
        except (KeyError, TypeError, ValueError) as err:
            raise CorruptObject(key, f"bad tree entry: {err}") from None


@dataclass(frozen=True)
class PageRef:
    """A pointer from a paged directory to one page: its first name, entry count and id."""

    first: str
    count: int
    id: str


@dataclass(frozen=True)
class Tree:
    """A directory node: either ``entries`` inline (sorted by name) or ``pages`` (sorted)."""

    entries: tuple[TreeEntry, ...] = ()
    pages: tuple[PageRef, ...] = ()

    @property
    def paged(self) -> bool:
        return bool(self.pages)


@dataclass(frozen=True)
class TreePage:
    """One page of a large directory: a sorted run of entries."""

    entries: tuple[TreeEntry, ...]


@dataclass(frozen=True)
class Commit:
    """A snapshot. ``time`` is UTC ISO-8601 with a ``Z`` suffix; ``provenance`` is free-form JSON
    (no floats) describing what was read to produce it."""

    tree: str
    parents: tuple[str, ...]
    author: str
    time: str
    message: str
    provenance: dict[str, Any] = field(default_factory=dict)

    def __hash__(self) -> int:  # provenance is a dict; identity is the encoding
        return hash(encode(self))


Object = Tree | TreePage | Commit


_FILE_KEYS = frozenset({"name", "type", "mode", "mtime", "size", "sha256", "chunks"})
_FILE_OPTIONAL_KEYS = frozenset({"pack", "source", "attrs"})
_FILE_ALL_KEYS = _FILE_KEYS | _FILE_OPTIONAL_KEYS
_PACK_KEYS = frozenset({"id", "offset"})


def entry_basics(raw: Any) -> tuple[str, str, int, int]:
    """(type, name, mode, mtime) of a tree entry's JSON, checked as every reader of entries
    checks them (``InvalidName``, ``KeyError``, ``TypeError`` or ``ValueError`` otherwise); the
    type itself is the caller's to check."""
    kind = raw["type"]
    name = check_name(raw["name"])
    mode, mtime = _int(raw["mode"], "mode"), _int(raw["mtime"], "mtime")
    if mode < 0 or mode > 0o7777:
        raise ValueError(f"bad mode {mode}")
    return kind, name, mode, mtime


def check_target(target: Any) -> str:
    """A symlink entry's target: a non-empty string without NUL (``ValueError`` otherwise)."""
    if not isinstance(target, str) or not target or "\0" in target:
        raise ValueError("bad symlink target")
    return target


def _int(value: Any, field: str = "") -> int:
    if type(value) is not int:
        raise ValueError(f"{field}{': ' if field else ''}expected an integer, got {value!r}")
    return value


def _pack_location(raw: Any, chunks: tuple[str, ...], sha256: str) -> tuple[str, int]:
    """(pack id, offset) of a file entry's ``pack`` member, or ("", 0) when it has none. A packed
    file is exactly one chunk, and that chunk is the whole file."""
    if raw is None:
        return "", 0
    if type(raw) is not dict or raw.keys() != _PACK_KEYS:  # (no sets built: see from_json)
        _exact_keys(raw, set(_PACK_KEYS))
    if not is_object_id(raw["id"]) or not 0 <= _int(raw["offset"]) < 2**63:
        raise ValueError("bad pack location")
    if len(chunks) != 1 or chunks[0] != sha256:
        raise ValueError("a packed file must be one chunk equal to its content hash")
    return raw["id"], raw["offset"]


def _exact_keys(raw: dict[str, Any], keys: set[str]) -> None:
    if set(raw) != keys:
        raise ValueError(f"unexpected fields {sorted(set(raw) ^ keys)}")


def _no_float(text: str) -> Any:
    raise ValueError("floats are not allowed")


def _refuse_floats(value: Any) -> None:
    if isinstance(value, float):
        raise ValueError(f"floats are not allowed in s3fsv objects: {value!r}")
    if isinstance(value, dict):
        for item in value.values():
            _refuse_floats(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _refuse_floats(item)


def canonical_json(value: Any) -> bytes:
    """Canonical UTF-8 JSON. Raises ``ValueError`` for floats, which readers refuse."""
    _refuse_floats(value)
    return _dumps(value)


def _dumps(value: Any) -> bytes:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def encode(obj: Object) -> bytes:
    """Canonical bytes of a tree, page or commit."""
    if isinstance(obj, Tree):
        body: dict[str, Any] = {"type": "tree", "v": FORMAT_VERSION}
        if obj.pages:
            body["pages"] = [{"first": p.first, "count": p.count, "id": p.id} for p in obj.pages]
        else:
            body["entries"] = [e.to_json() for e in obj.entries]
            body["v"] = _entries_version(obj.entries)
    elif isinstance(obj, TreePage):
        body = {
            "type": "page",
            "v": _entries_version(obj.entries),
            "entries": [e.to_json() for e in obj.entries],
        }
    elif isinstance(obj, Commit):
        body = {
            "type": "commit",
            "v": FORMAT_VERSION,
            "tree": obj.tree,
            "parents": list(obj.parents),
            "author": obj.author,
            "time": obj.time,
            "message": obj.message,
            "provenance": obj.provenance,
        }
        _refuse_floats(obj.provenance)  # the only free-form part of any object
    else:
        raise TypeError(f"cannot encode {type(obj).__name__}")
    return _dumps(body)


def _entries_version(entries: tuple[TreeEntry, ...]) -> int:
    """Trees and pages with packed files are version 2, those with files kept in their source
    object or with attributes version 3, so that a reader that predates them refuses them with
    a clear error instead of misreading them."""
    return max((e.format_version for e in entries), default=FORMAT_VERSION)


def object_id(obj: Object) -> str:
    return sha256_hex(encode(obj))


_VERSIONS = (FORMAT_VERSION, PACKED_VERSION, SOURCED_VERSION)


def decode(data: bytes, key: str = "?", *, canonical: bool = True) -> Object:
    """Parse canonical bytes back into an object; raise ``CorruptObject`` naming ``key`` if the
    bytes are not valid, not canonical, or not a known object type. ``canonical=False`` skips
    only the check of canonical form (re-encoding), for bytes that passed it when they were
    fetched (the local cache's)."""
    obj = _decode_body(parse_object(data, key), key)
    # Also enforces the version rule: "v" is the highest version any entry of a tree needs.
    if canonical and encode(obj) != data:
        raise CorruptObject(key, "object is not in canonical form")
    return obj


def parse_object(data: bytes, key: str = "?") -> dict[str, Any]:
    """The JSON of an object's bytes, of a known version; ``CorruptObject`` naming ``key`` if
    it is not one. Its body is not checked (``decode`` does that)."""
    try:
        raw = json.loads(data.decode("utf-8"), parse_float=_no_float, parse_constant=_no_float)
    except (UnicodeDecodeError, ValueError) as err:
        raise CorruptObject(key, f"not a valid object ({err})") from None
    except RecursionError:  # hostile nesting: refuse it rather than crash the reader
        raise CorruptObject(key, "not a valid object (nested too deeply)") from None
    if not isinstance(raw, dict) or raw.get("v") not in _VERSIONS:
        raise CorruptObject(key, "not a version-1, -2 or -3 s3fsv object")
    return raw


def _decode_body(raw: dict[str, Any], key: str) -> Object:
    kind = raw.get("type")
    try:
        if kind == "tree" and "pages" in raw:
            _exact_keys(raw, {"type", "v", "pages"})
            pages = tuple(
                PageRef(check_name(p["first"]), _int(p["count"]), p["id"]) for p in raw["pages"]
            )
            if not pages or not all(is_object_id(p.id) and p.count > 0 for p in pages):
                raise ValueError("bad page list")
            check_sorted([p.first for p in pages])
            return Tree(pages=pages)
        if kind in ("tree", "page"):
            _exact_keys(raw, {"type", "v", "entries"})
            entries = tuple(TreeEntry.from_json(e, key) for e in raw["entries"])
            check_sorted([e.name for e in entries])
            if kind == "page":
                if not entries:
                    raise ValueError("empty page")
                return TreePage(entries)
            return Tree(entries=entries)
        if kind == "commit":
            _exact_keys(
                raw, {"type", "v", "tree", "parents", "author", "time", "message", "provenance"}
            )
            parents = tuple(raw["parents"])
            if not is_object_id(raw["tree"]) or not all(map(is_object_id, parents)):
                raise ValueError("bad tree or parent id")
            for name in ("author", "time", "message"):
                if not isinstance(raw[name], str):
                    raise ValueError(f"{name} is not a string")
            if not isinstance(raw["provenance"], dict):
                raise ValueError("provenance is not an object")
            return Commit(
                raw["tree"], parents, raw["author"], raw["time"], raw["message"], raw["provenance"]
            )
    except InvalidName as err:
        raise CorruptObject(key, f"hostile tree entry: {err}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise CorruptObject(key, f"malformed {kind}: {err}") from None
    raise CorruptObject(key, f"unknown object type {kind!r}")


def check_sorted(names: list[str]) -> None:
    """ValueError unless ``names`` are strictly increasing (by ``name_key``)."""
    keys = [n.encode("utf-8") for n in names]
    if any(a >= b for a, b in zip(keys, keys[1:], strict=False)):
        raise ValueError("names are not strictly sorted (duplicate or out of order)")


def name_key(name: str) -> bytes:
    """Sort key for names: UTF-8 bytes, so every reader in any language sorts the same way."""
    return name.encode("utf-8")
