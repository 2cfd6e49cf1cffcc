"""Listing a directory from its pages' cached bytes (s3fsv.store.listing): the same listing as
decoding the pages in full, what a listing shows checked as strictly, and where it reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3fsv.errors import CorruptObject
from s3fsv.store.backend.memory import MemoryBackend
from s3fsv.store.cache import DiskCache
from s3fsv.store.listing import decode_listing, dir_listing, listed
from s3fsv.store.objects import Tree, TreeEntry, TreePage, canonical_json, decode, encode
from s3fsv.store.objectstore import ObjectStore
from s3fsv.store.tree import apply_changes, dir_entries

KEY = "repo/objects/ab/the-page-under-test"
OID = "ab" * 32
names = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"),
                min_size=1, max_size=40).filter(lambda s: s not in (".", ".."))  # fmt: skip
ids = st.binary(min_size=32, max_size=32).map(bytes.hex)


@st.composite
def entries(draw: st.DrawFn) -> TreeEntry:
    name, mode, mtime = draw(names), draw(st.integers(0, 0o7777)), draw(st.integers(-1, 2**62))
    kind = draw(st.sampled_from(["file", "packed", "dir", "link"]))
    if kind == "dir":
        return TreeEntry(name, "dir", mode, mtime, tree=draw(ids))
    if kind == "link":
        target = draw(st.text(st.characters(blacklist_categories=("Cs",)), min_size=1))
        return TreeEntry(name, "link", mode, mtime, len(target), target=target.replace("\0", "x"))
    sha = draw(ids)
    if kind == "packed":
        return TreeEntry(name, "file", mode, mtime, 5, sha, (sha,), pack=draw(ids), pack_offset=9)
    return TreeEntry(name, "file", mode, mtime, draw(st.integers(1, 2**40)), sha, (draw(ids),))


@settings(max_examples=200)
@given(st.lists(entries(), min_size=1, max_size=20, unique_by=lambda e: e.name))
def test_listing_is_that_of_the_decoded_page(items: list[TreeEntry]) -> None:
    page = TreePage(tuple(sorted(items, key=lambda e: e.name.encode())))
    data = encode(page)
    assert decode_listing(data, KEY) == [listed(e) for e in decode(data, KEY).entries]


def _page(*raws: dict[str, Any]) -> bytes:
    return canonical_json({"type": "page", "v": 1, "entries": list(raws)})


def _file(name: str = "f", **over: Any) -> dict[str, Any]:
    raw = {"name": name, "type": "file", "mode": 0o644, "mtime": 1, "size": 3, "sha256": OID,
           "chunks": [OID]}  # fmt: skip
    return {**raw, **over}


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (_page(_file("..")), "hostile"),
        (_page(_file("a/b")), "hostile"),
        (_page(_file("b"), _file("a")), "sorted"),
        (_page(_file("a"), _file("a")), "sorted"),
        (_page(_file(mode=0o10000)), "mode"),
        (_page(_file(mode="420")), "mode"),
        (_page(_file(size=-1)), "size"),
        (_page(_file(mtime=True)), "mtime"),
        (_page({"name": "d", "type": "dir", "mode": 0o755, "mtime": 0, "tree": "AB" * 32}), "tree"),
        (
            _page(
                {"name": "l", "type": "link", "mode": 0o777, "mtime": 0, "size": 1, "target": ""}
            ),
            "target",
        ),  # fmt: skip
        (_page({"name": "x", "type": "fifo", "mode": 0, "mtime": 0}), "unknown"),
        (_page(), "empty"),
        (canonical_json({"type": "tree", "v": 1, "entries": [_file()]}), "treepage"),
        (b"{not json", "not a valid object"),
    ],
)
def test_what_a_listing_shows_is_checked(data: bytes, words: str) -> None:
    with pytest.raises(CorruptObject) as info:
        decode_listing(data, KEY)
    assert KEY in str(info.value) and words in str(info.value)


def _big_dir(store: ObjectStore, count: int) -> str:
    files = {f"d/f{i:05d}": TreeEntry(f"f{i:05d}", "file", 0o644, i, 1, OID, (OID,))
             for i in range(count)}  # fmt: skip
    root = apply_changes(store, None, files)
    (sub,) = dir_entries(store, root)
    return sub.tree


def test_a_paged_directory_lists_from_the_cache_without_decoding_its_pages(tmp_path: Path) -> None:
    backend = MemoryBackend()
    tree = _big_dir(ObjectStore(backend, "repo", DiskCache(tmp_path / "c1")), 1000)
    cache = DiskCache(tmp_path / "c2")
    store = ObjectStore(backend, "repo", cache)
    expected = [listed(e) for e in dir_entries(ObjectStore(backend, "repo"), tree)]
    assert len(expected) == 1000
    # Pages not in the cache are fetched and decoded (and cached on the way).
    assert list(dir_listing(store, tree)) == expected
    pages = store.get(tree, Tree).pages
    assert len(pages) > 1 and all(store.decoded(p.id) is not None for p in pages)
    # A fresh process on the filled cache lists the pages from their bytes: none is decoded.
    fresh = ObjectStore(backend, "repo", cache)
    assert list(dir_listing(fresh, tree)) == expected
    assert all(fresh.decoded(p.id) is None for p in pages)


def test_a_corrupt_cached_page_is_refused_by_the_listing(tmp_path: Path) -> None:
    backend, cache = MemoryBackend(), DiskCache(tmp_path / "c")
    store = ObjectStore(backend, "repo", cache)
    tree = _big_dir(store, 600)
    page = store.get(tree, Tree).pages[0].id
    cache.discard(page)
    cache.put(page, _page(_file("..")))  # bytes that are not what the id names
    with pytest.raises(CorruptObject, match="hostile"):
        list(dir_listing(ObjectStore(backend, "repo", cache), tree))
