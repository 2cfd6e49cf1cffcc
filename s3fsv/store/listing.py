"""Listing a directory at less cost than decoding it: what ``readdir`` needs of each entry.

A walk (``find``, ``ls -R``, ``os.walk``) lists every directory once and uses of each entry only
its name, type, mode, size and time, and a subdirectory's tree id. Decoding a page into
``TreeEntry`` objects checks and builds every field (content hashes, chunk lists, pack
locations): most of a warm walk's time. A page read from the local cache is listed here
straight from its JSON, checking what a listing shows (names, types, modes, sizes, times, tree
ids, the order of names) and nothing else; the rest of an entry is checked when the entry is
used (a lookup decodes its page in full, as before). A page held decoded in memory, or not in
the cache, is listed from its decoded entries.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from s3fsv.errors import CorruptObject, InvalidName
from s3fsv.store.objects import (
    Tree,
    TreeEntry,
    TreePage,
    check_sorted,
    check_target,
    entry_basics,
    is_object_id,
    parse_object,
)
from s3fsv.store.objectstore import ObjectStore

# (name, kind, mode, mtime_ns, size, tree): ``mode`` holds permission bits only; ``size`` is
# what stat shows (a symlink's target length in bytes, 0 for a directory); ``tree`` is a
# directory's tree id ("" otherwise). A plain tuple: a walk makes one per file.
Listed = tuple[str, str, int, int, int, str]


def listed(entry: TreeEntry) -> Listed:
    """The listing of a decoded entry."""
    size = len(entry.target.encode()) if entry.kind == "link" else entry.size
    return (entry.name, entry.kind, entry.mode, entry.mtime_ns, size, entry.tree)


def dir_listing(store: ObjectStore, tree_id: str) -> Iterator[Listed]:
    """Every entry of a directory in name order, as ``Listed``, one page at a time."""
    tree = store.get(tree_id, Tree)
    if not tree.paged:
        yield from map(listed, tree.entries)
        return
    for page in tree.pages:
        yield from page_listing(store, page.id)


def page_listing(store: ObjectStore, page_id: str) -> list[Listed]:
    """The entries of one page of a directory: from the local cache's bytes when the page is
    not decoded in memory already, else (or when the cache has no copy) from its decoded form."""
    decoded = store.decoded(page_id)
    if decoded is None:
        raw = store.cached_bytes(page_id)
        if raw is not None:
            return decode_listing(raw, store.key(page_id))
        decoded = store.get(page_id, TreePage)
    if not isinstance(decoded, TreePage):
        raise CorruptObject(store.key(page_id), "expected a treepage")
    return [listed(e) for e in decoded.entries]


def decode_listing(data: bytes, key: str) -> list[Listed]:
    """The listing of a tree page's bytes; ``CorruptObject`` naming ``key`` if they are not a
    page, or if what a listing shows is not valid (as ``decode`` would refuse it)."""
    raw = parse_object(data, key)
    if raw.get("type") != "page" or raw.keys() != {"type", "v", "entries"}:
        raise CorruptObject(key, "expected a treepage")
    try:
        out = [_listed_raw(e) for e in raw["entries"]]
        if not out:
            raise ValueError("empty page")
        check_sorted([e[0] for e in out])
    except InvalidName as err:
        raise CorruptObject(key, f"hostile tree entry: {err}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise CorruptObject(key, f"bad tree entry: {err}") from None
    return out


def _listed_raw(raw: Any) -> Listed:
    kind, name, mode, mtime = entry_basics(raw)
    if kind == "file":
        size = raw["size"]
        if type(size) is not int or size < 0:
            raise ValueError(f"bad size {size!r}")
        return (name, kind, mode, mtime, size, "")
    if kind == "dir":
        tree = raw["tree"]
        if not is_object_id(tree):
            raise ValueError("bad tree id")
        return (name, kind, mode, mtime, 0, tree)
    if kind == "link":
        target = check_target(raw["target"])
        return (name, kind, mode, mtime, len(target.encode()), "")
    raise ValueError(f"unknown entry type {kind!r}")
