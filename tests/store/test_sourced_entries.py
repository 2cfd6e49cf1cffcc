"""Format version 3: file entries kept in an imported original (``source``) and file
attributes (``attrs``): canonical, strictly checked, and only where the version says."""

from __future__ import annotations

import json

import pytest

from s3fsv.errors import CorruptObject
from s3fsv.store.objects import Source, Tree, TreeEntry, TreePage, check_attrs, decode, encode

SHA = "ab" * 32
SOURCE = Source("cams", "incoming/h1/a.jpg", "", '"0123abcd"')


def entry(**kw: object) -> TreeEntry:
    base: dict[str, object] = dict(
        name="a.jpg", kind="file", mode=0o644, mtime_ns=1, size=5, sha256=SHA, chunks=(SHA,)
    )
    base.update(kw)
    return TreeEntry(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "item",
    [
        entry(source=SOURCE),
        entry(attrs=check_attrs({"house": "h1", "device": "cam-7"})),
        entry(source=SOURCE, attrs=check_attrs({"house": "h1"})),
    ],
)
def test_sourced_and_attributed_entries_round_trip_as_version_3(item: TreeEntry) -> None:
    for obj in (Tree(entries=(item,)), TreePage((item,))):
        data = encode(obj)
        assert json.loads(data)["v"] == 3
        assert decode(data) == obj
        for wrong in (1, 2):  # the version must be exactly the one the entries need
            with pytest.raises(CorruptObject):
                decode(data.replace(b'"v":3', f'"v":{wrong}'.encode()))


def test_other_trees_keep_their_version() -> None:
    assert json.loads(encode(Tree(entries=(entry(),))))["v"] == 1
    packed = entry(pack="cd" * 32, pack_offset=7)
    assert json.loads(encode(Tree(entries=(packed,))))["v"] == 2
    both = Tree(entries=(packed, entry(name="b.jpg", source=SOURCE)))
    assert json.loads(encode(both))["v"] == 3


def _tree_with(raw_entry: dict[str, object]) -> bytes:
    return json.dumps(
        {"entries": [raw_entry], "type": "tree", "v": 3},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()


@pytest.mark.parametrize(
    "change",
    [
        {"source": {"bucket": "cams", "key": "k"}},  # fields missing
        {"source": {"bucket": "a/b", "key": "k", "version": "", "etag": "e"}},
        {"source": {"bucket": "cams", "key": "", "version": "", "etag": "e"}},
        {"source": {"bucket": "cams", "key": "k", "version": "", "etag": ""}},
        {"source": {"bucket": "cams", "key": "k\u0000", "version": "", "etag": "e"}},
        {"source": SOURCE.to_json(), "pack": {"id": "cd" * 32, "offset": 0}},
        {"source": SOURCE.to_json(), "size": 0, "chunks": []},
        {"attrs": {}},
        {"attrs": {"House": "h1"}},
        {"attrs": {"house": 7}},
        {"attrs": {"house": "x" * 1025}},
        {"attrs": {f"a{i}": "v" for i in range(33)}},
    ],
)
def test_malformed_sources_and_attributes_are_refused(change: dict[str, object]) -> None:
    raw = {**entry().to_json(), **change}
    with pytest.raises(CorruptObject):
        decode(_tree_with(raw))


def test_where_bytes_live_is_not_a_change_of_content() -> None:
    kept = entry(source=SOURCE, attrs=check_attrs({"house": "h1"}))
    copied = entry(pack="cd" * 32, pack_offset=3, attrs=check_attrs({"house": "h1"}))
    assert kept.same_content(copied)
    assert not kept.same_content(entry(source=SOURCE))  # attributes are content
