"""Canonical encoding of trees, pages and commits: round trips, determinism, and refusal of every
non-canonical or hostile spelling (each refusal is a ``CorruptObject`` naming the object's key)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3fsv.errors import CorruptObject, InvalidName
from s3fsv.store.objects import (
    Commit,
    PageRef,
    Tree,
    TreeEntry,
    TreePage,
    canonical_json,
    check_name,
    decode,
    encode,
    name_key,
    object_id,
    sha256_hex,
    split_path,
)

KEY = "repo/objects/ab/cdef-the-key-under-test"

# -- strategies ---------------------------------------------------------------------------------

# Any code point except surrogates (not encodable as UTF-8).
_chars = st.characters(blacklist_categories=("Cs",))
_name_chars = st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00")

names = st.text(_name_chars, min_size=1, max_size=80).filter(
    lambda s: s not in (".", "..") and len(s.encode("utf-8")) <= 255
) | st.sampled_from(["...", ".a", " ", "a b", "é" * 127, "x" * 255, "\U0001f600" * 63])
object_ids = st.binary(min_size=32, max_size=32).map(bytes.hex)
modes = st.integers(0, 0o7777)
mtimes = st.integers(-(2**63), 2**63)
sizes = st.integers(1, 2**50)


@st.composite
def file_entries(draw: st.DrawFn, name: str | None = None) -> TreeEntry:
    name = name if name is not None else draw(names)
    chunks = tuple(draw(st.lists(object_ids, max_size=4)))
    size = draw(sizes) if chunks else 0
    sha = draw(object_ids)
    if len(chunks) == 1 and draw(st.booleans()):  # a small file stored in a pack
        pack, offset = draw(object_ids), draw(st.integers(0, 2**40))
        chunks = (sha,)
        return TreeEntry(
            name,
            "file",
            draw(modes),
            draw(mtimes),
            size,
            sha,
            chunks,
            pack=pack,
            pack_offset=offset,
        )
    return TreeEntry(name, "file", draw(modes), draw(mtimes), size, sha, chunks)


@st.composite
def dir_entries(draw: st.DrawFn, name: str | None = None) -> TreeEntry:
    name = name if name is not None else draw(names)
    return TreeEntry(name, "dir", draw(modes), draw(mtimes), tree=draw(object_ids))


@st.composite
def link_entries(draw: st.DrawFn, name: str | None = None) -> TreeEntry:
    name = name if name is not None else draw(names)
    target = draw(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0")))
    target = target or "t"
    return TreeEntry(
        name, "link", draw(modes), draw(mtimes), len(target.encode("utf-8")), target=target
    )


entries = st.one_of(file_entries(), dir_entries(), link_entries())


def _sorted_unique(items: list[Any], name_of: Any) -> list[Any]:
    seen: dict[str, Any] = {}
    for item in items:
        seen.setdefault(name_of(item), item)
    return sorted(seen.values(), key=lambda i: name_key(name_of(i)))


entry_lists = st.lists(entries, max_size=20).map(lambda es: _sorted_unique(es, lambda e: e.name))
inline_trees = entry_lists.map(lambda es: Tree(entries=tuple(es)))
page_refs = st.builds(PageRef, names, st.integers(1, 10**6), object_ids)
paged_trees = (
    st.lists(page_refs, min_size=1, max_size=20)
    .map(lambda ps: _sorted_unique(ps, lambda p: p.first))
    .map(lambda ps: Tree(pages=tuple(ps)))
)
tree_pages = (
    st.lists(entries, min_size=1, max_size=20)
    .map(lambda es: _sorted_unique(es, lambda e: e.name))
    .map(lambda es: TreePage(tuple(es)))
)
json_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(_chars)
json_values = st.recursive(
    json_scalars,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(_chars), kids, max_size=4),
    max_leaves=20,
)
commits = st.builds(
    Commit,
    object_ids,
    st.lists(object_ids, max_size=3).map(tuple),
    st.text(_chars),
    st.text(_chars),
    st.text(_chars),
    st.dictionaries(st.text(_chars), json_values, max_size=6),
)
objects = st.one_of(inline_trees, paged_trees, tree_pages, commits)


# -- round trips and determinism ------------------------------------------------------------------


@settings(max_examples=300)
@given(objects)
def test_decode_encode_round_trip(obj: Tree | TreePage | Commit) -> None:
    data = encode(obj)
    back = decode(data, KEY)
    assert back == obj
    assert type(back) is type(obj)
    assert encode(back) == data
    assert object_id(obj) == sha256_hex(data)


@settings(max_examples=200)
@given(st.one_of(file_entries(), dir_entries(), link_entries()))
def test_every_entry_kind_round_trips(entry: TreeEntry) -> None:
    for obj in (Tree(entries=(entry,)), TreePage((entry,))):
        back = decode(encode(obj), KEY)
        assert back == obj
        (got,) = back.entries
        assert got.kind == entry.kind and got == entry


@settings(max_examples=100)
@given(objects)
def test_encode_is_canonical_json(obj: Tree | TreePage | Commit) -> None:
    data = encode(obj)
    raw = json.loads(data)
    # Re-encoding the parsed value with sorted keys and no whitespace gives the same bytes.
    assert canonical_json(raw) == data
    assert data.decode("utf-8")  # valid UTF-8
    assert b"\n" not in data  # JSON escapes newlines inside strings; none outside


@settings(max_examples=100)
@given(commits, st.randoms())
def test_encode_deterministic_whatever_the_dict_order(commit: Commit, rnd: Any) -> None:
    def shuffled(value: Any) -> Any:
        if isinstance(value, dict):
            items = list(value.items())
            rnd.shuffle(items)
            return {k: shuffled(v) for k, v in items}
        if isinstance(value, list):
            return [shuffled(v) for v in value]
        return value

    twin = Commit(
        commit.tree,
        commit.parents,
        commit.author,
        commit.time,
        commit.message,
        shuffled(commit.provenance),
    )
    assert encode(twin) == encode(commit)
    assert encode(commit) == encode(commit)
    assert object_id(twin) == object_id(commit)


def test_different_content_gives_different_ids() -> None:
    base = TreeEntry("a", "file", 0o644, 0, 1, "0" * 64, ("1" * 64,))
    other = TreeEntry("a", "file", 0o644, 1, 1, "0" * 64, ("1" * 64,))
    assert object_id(Tree(entries=(base,))) != object_id(Tree(entries=(other,)))
    assert object_id(Tree(entries=(base,))) != object_id(TreePage((base,)))


# -- refusal of non-canonical and hostile bytes --------------------------------------------------

OID = "ab" * 32
OID2 = "cd" * 32


def _file(name: str = "f", **over: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "name": name,
        "type": "file",
        "mode": 0o644,
        "mtime": 1,
        "size": 3,
        "sha256": OID,
        "chunks": [OID2],
    }
    raw.update(over)
    return raw


def _tree(*entries: dict[str, Any], **over: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {"type": "tree", "v": 1, "entries": list(entries)}
    raw.update(over)
    return raw


def _commit(**over: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "type": "commit",
        "v": 1,
        "tree": OID,
        "parents": [OID2],
        "author": "me",
        "time": "2024-01-01T00:00:00.000000Z",
        "message": "m",
        "provenance": {"cmd": ["x"], "n": 1},
    }
    raw.update(over)
    return raw


def _refused(data: bytes, *words: str) -> CorruptObject:
    with pytest.raises(CorruptObject) as info:
        decode(data, KEY)
    err = info.value
    assert err.key == KEY
    assert KEY in str(err)
    for word in words:
        assert word in str(err), str(err)
    return err


def test_valid_fixtures_decode() -> None:
    """The fixtures below are valid until each test breaks exactly one thing."""
    decode(canonical_json(_tree(_file("a"), _file("b"))), KEY)
    decode(canonical_json(_commit()), KEY)
    decode(canonical_json({"type": "page", "v": 1, "entries": [_file()]}), KEY)
    decode(
        canonical_json({"type": "tree", "v": 1, "pages": [{"first": "a", "count": 1, "id": OID}]}),
        KEY,
    )


def test_extra_whitespace_refused() -> None:
    raw = _tree(_file())
    _refused(json.dumps(raw, sort_keys=True).encode(), "canonical")
    _refused(canonical_json(raw) + b"\n", "canonical")
    _refused(b" " + canonical_json(raw), "canonical")


def test_unsorted_keys_refused() -> None:
    raw = _commit()
    data = json.dumps(dict(reversed(list(raw.items()))), separators=(",", ":")).encode()
    _refused(data, "canonical")


def test_ascii_escaped_unicode_refused() -> None:
    raw = _tree(_file("é"))
    _refused(json.dumps(raw, sort_keys=True, separators=(",", ":")).encode(), "canonical")


@pytest.mark.parametrize(
    "data",
    [
        canonical_json(_tree(_file())).replace(b'"mtime":1', b'"mtime":1.0'),
        canonical_json(_tree(_file())).replace(b'"mtime":1', b'"mtime":1e3'),
        canonical_json(_commit()).replace(b'"n":1', b'"n":0.5'),
        canonical_json(_commit()).replace(b'"n":1', b'"n":NaN'),
        canonical_json(_commit()).replace(b'"n":1', b'"n":Infinity'),
    ],
)
def test_floats_refused(data: bytes) -> None:
    _refused(data)


def test_duplicate_names_refused() -> None:
    _refused(canonical_json(_tree(_file("a"), _file("a"))), "sorted")
    _refused(canonical_json({"type": "page", "v": 1, "entries": [_file("a"), _file("a")]}))
    pages = [{"first": "a", "count": 1, "id": OID}, {"first": "a", "count": 1, "id": OID2}]
    _refused(canonical_json({"type": "tree", "v": 1, "pages": pages}), "sorted")


def test_unsorted_entries_refused() -> None:
    _refused(canonical_json(_tree(_file("b"), _file("a"))), "sorted")
    # Sorting is by UTF-8 bytes: "Z" < "a" < "é".
    _refused(canonical_json(_tree(_file("é"), _file("a"))), "sorted")
    decode(canonical_json(_tree(_file("Z"), _file("a"), _file("é"))), KEY)


def test_duplicate_json_keys_refused() -> None:
    data = canonical_json(_tree(_file())).replace(b'"mtime":1', b'"mtime":1,"mtime":1')
    _refused(data)


@pytest.mark.parametrize(
    "raw",
    [
        _tree(_file(), extra=1),
        _tree(_file(extra=1)),
        _tree(_file(tree=OID)),
        _tree({"name": "d", "type": "dir", "mode": 0o755, "mtime": 0, "tree": OID, "size": 0}),
        _commit(extra=None),
        {"type": "page", "v": 1, "entries": [_file()], "pages": []},
        {"type": "tree", "v": 1, "pages": [{"first": "a", "count": 1, "id": OID}], "entries": []},
    ],
)
def test_unknown_fields_refused(raw: dict[str, Any]) -> None:
    _refused(canonical_json(raw))


def test_missing_fields_refused() -> None:
    entry = _file()
    del entry["sha256"]
    _refused(canonical_json(_tree(entry)))
    packed = _file(chunks=[OID], pack={"id": OID2, "offset": 0})  # an optional field present
    del packed["size"]
    _refused(canonical_json({**_tree(packed), "v": 2}))
    commit = _commit()
    del commit["provenance"]
    _refused(canonical_json(commit))


@pytest.mark.parametrize("name", ["..", ".", "", "a/b", "/", "x\x00", "y" * 256])
def test_hostile_names_refused(name: str) -> None:
    err = _refused(canonical_json(_tree(_file(name))), "hostile")
    assert "invalid name" in str(err)
    _refused(canonical_json({"type": "page", "v": 1, "entries": [_file(name)]}), "hostile")
    pages = [{"first": name, "count": 1, "id": OID}]
    _refused(canonical_json({"type": "tree", "v": 1, "pages": pages}), "hostile")


@pytest.mark.parametrize(
    "bad",
    ["AB" * 32, "ab" * 31, "ab" * 33, "g" * 64, "", 7, None, "a" * 63 + "\n", " " + "a" * 63,
     "a" * 31 + " " + "a" * 32, "\u0660" * 64],
)  # fmt: skip
def test_bad_hex_ids_refused(bad: Any) -> None:
    _refused(canonical_json(_tree(_file(sha256=bad))))
    _refused(canonical_json(_tree(_file(chunks=[bad]))))
    _refused(canonical_json(_tree(_file(sha256=bad, chunks=[bad]))))  # its own content hash
    _refused(canonical_json(_tree(_file(chunks=[OID, bad]))))
    dir_raw = {"name": "d", "type": "dir", "mode": 0o755, "mtime": 0, "tree": bad}
    _refused(canonical_json(_tree(dir_raw)))
    _refused(canonical_json(_commit(tree=bad)))
    _refused(canonical_json(_commit(parents=[OID, bad])))
    pages = [{"first": "a", "count": 1, "id": bad}]
    _refused(canonical_json({"type": "tree", "v": 1, "pages": pages}))


def test_negative_or_inconsistent_sizes_refused() -> None:
    _refused(canonical_json(_tree(_file(size=-1, chunks=[]))), "size")
    _refused(canonical_json(_tree(_file(size=-3))), "size")
    _refused(canonical_json(_tree(_file(size=0))), "size")  # chunks but no bytes
    _refused(canonical_json(_tree(_file(size=5, chunks=[]))), "size")  # bytes but no chunks
    link = {"name": "l", "type": "link", "mode": 0o777, "mtime": 0, "size": -1, "target": "x"}
    _refused(canonical_json(_tree(link)), "size")
    pages = [{"first": "a", "count": 0, "id": OID}]
    _refused(canonical_json({"type": "tree", "v": 1, "pages": pages}))
    pages = [{"first": "a", "count": -1, "id": OID}]
    _refused(canonical_json({"type": "tree", "v": 1, "pages": pages}))


@pytest.mark.parametrize(
    "over",
    [
        {"mode": -1},
        {"mode": 0o10000},
        {"mode": True},
        {"mode": "420"},
        {"mtime": "1"},
        {"size": True},
        {"type": "socket"},
        {"chunks": OID2},
        {"chunks": {"a": 1}},
    ],
)
def test_bad_entry_values_refused(over: dict[str, Any]) -> None:
    _refused(canonical_json(_tree(_file(**over))))


def test_packed_file_round_trips_and_keeps_its_location() -> None:
    raw = _file(chunks=[OID], pack={"id": OID2, "offset": 7})
    _refused(canonical_json(_tree(raw)), "canonical")  # packed entries need version 2
    data = canonical_json(_tree(raw, v=2))
    tree = decode(data)
    assert isinstance(tree, Tree)
    (entry,) = tree.entries
    assert (entry.pack, entry.pack_offset, entry.chunks) == (OID2, 7, (OID,))
    assert encode(tree) == data


@pytest.mark.parametrize(
    "over",
    [
        {"pack": {"id": OID2, "offset": 0}},  # its one chunk is not the whole-file hash
        {"chunks": [OID, OID2], "pack": {"id": OID2, "offset": 0}},  # more than one chunk
        {"chunks": [OID], "pack": {"id": OID2, "offset": -1}},
        {"chunks": [OID], "pack": {"id": "x", "offset": 0}},
        {"chunks": [OID], "pack": {"id": OID2}},
        {"chunks": [OID], "pack": {"id": OID2, "offset": 0, "size": 3}},
        {"chunks": [OID], "pack": [OID2, 0]},
        {"chunks": [OID], "pack": {"id": OID2, "offset": True}},
        {"chunks": [OID], "pack": {"id": OID2, "offset": 2**63}},  # beyond a signed 64-bit int
    ],
)
def test_bad_pack_locations_refused(over: dict[str, Any]) -> None:
    _refused(canonical_json(_tree(_file(**over), v=2)))


def test_version_2_without_packed_entries_refused() -> None:
    _refused(canonical_json(_tree(_file(), v=2)), "canonical")
    _refused(canonical_json({"type": "page", "v": 2, "entries": [_file()]}), "canonical")
    _refused(canonical_json(_commit(v=2)), "canonical")


def test_same_content_ignores_where_the_bytes_are() -> None:
    plain = TreeEntry("f", "file", 0o644, 1, 3, OID, (OID,))
    packed = TreeEntry("f", "file", 0o644, 1, 3, OID, (OID,), pack=OID2, pack_offset=9)
    assert plain.same_content(packed) and packed.same_content(plain)
    assert not packed.same_content(TreeEntry("f", "file", 0o600, 1, 3, OID, (OID,)))
    assert not packed.same_content(None)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff\xfe",
        b"not json",
        b"[]",
        b"null",
        b'"tree"',
        canonical_json({"type": "tree", "v": 2, "entries": []}),
        canonical_json({"type": "tree", "v": True, "entries": []}),
        canonical_json({"type": "tree", "entries": []}),
        canonical_json({"type": "blob", "v": 1}),
        canonical_json({"type": "page", "v": 1, "entries": []}),
        canonical_json({"type": "tree", "v": 1, "pages": []}),
        canonical_json({"type": "tree", "v": 1, "entries": {}}),
        canonical_json({"type": "tree", "v": 1, "entries": ["a"]}),
        canonical_json({"type": "tree", "v": 1, "entries": [[1]]}),
        canonical_json({"type": "tree", "v": 1, "pages": [["a", 1, OID]]}),
        canonical_json(_commit(author=1)),
        canonical_json(_commit(message=None)),
        canonical_json(_commit(provenance=[])),
        canonical_json(_commit(parents=OID)),
        b"[" * 100_000 + b"]" * 100_000,
        b'{"v":1,"type":"commit","provenance":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    ],
)
def test_malformed_objects_refused(data: bytes) -> None:
    _refused(data)


def test_link_entries_need_a_target() -> None:
    base = {"name": "l", "type": "link", "mode": 0o777, "mtime": 0, "size": 1, "target": "x"}
    decode(canonical_json(_tree(base)), KEY)
    for target in ("", "a\x00b", 5, None):
        _refused(canonical_json(_tree({**base, "target": target})))


@settings(max_examples=100)
@given(objects, st.data())
def test_any_single_byte_flip_is_refused_or_another_canonical_object(
    obj: Tree | TreePage | Commit, data: st.DataObject
) -> None:
    """Corrupting a byte never decodes to a different object with the same encoding: it is either
    refused or decodes to an object whose canonical bytes are exactly the corrupted bytes."""
    raw = bytearray(encode(obj))
    pos = data.draw(st.integers(0, len(raw) - 1))
    raw[pos] ^= data.draw(st.integers(1, 255))
    try:
        back = decode(bytes(raw), KEY)
    except CorruptObject as err:
        assert err.key == KEY
    else:
        assert encode(back) == bytes(raw)


# -- names ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad", ["", ".", "..", "a/b", "/", "a\x00b", "\x00", "x" * 256, "é" * 128, "\ud800", None, 3]
)
def test_check_name_refuses(bad: Any) -> None:
    with pytest.raises(InvalidName):
        check_name(bad)


@pytest.mark.parametrize("good", ["a", "...", ".hidden", " ", "a b", "x" * 255, "é" * 127, "\\"])
def test_check_name_accepts(good: str) -> None:
    assert check_name(good) == good


@settings(max_examples=200)
@given(names)
def test_generated_names_are_valid(name: str) -> None:
    assert check_name(name) == name


@settings(max_examples=200)
@given(st.text(_chars, max_size=40))
def test_check_name_agrees_with_the_rules(name: str) -> None:
    valid = (
        name not in ("", ".", "..")
        and "/" not in name
        and "\0" not in name
        and len(name.encode("utf-8")) <= 255
    )
    if valid:
        assert check_name(name) == name
    else:
        with pytest.raises(InvalidName):
            check_name(name)


def test_split_path() -> None:
    assert split_path("") == []
    assert split_path("/") == []
    assert split_path("/a/b/") == ["a", "b"]
    for bad in ("a//b", "a/../b", "./a", "a/\x00"):
        with pytest.raises(InvalidName):
            split_path(bad)
