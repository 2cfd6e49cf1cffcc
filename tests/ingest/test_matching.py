"""Which files a purge matches, and durations on the command line."""

from __future__ import annotations

import pytest

from s3fsv.errors import UsageError
from s3fsv.ingest.matching import Matcher, parse_meta
from s3fsv.store.objects import TreeEntry, check_attrs

FILE = TreeEntry("x.jpg", "file", 0o644, 0, 1, "ab" * 32, ("ab" * 32,))


@pytest.mark.parametrize(
    ("pattern", "path", "hit"),
    [
        ("houses/h1234/**", "houses/h1234/cam1/a.jpg", True),
        ("houses/h1234", "houses/h1234/cam1/a.jpg", True),  # a directory: all below it
        ("houses/h1234/**", "houses/h12345/a.jpg", False),
        ("houses/*/a.jpg", "houses/h1/a.jpg", True),
        ("houses/*/a.jpg", "houses/h1/x/a.jpg", False),  # * stays within a component
        ("**/*.json", "a/b/c.json", True),
        ("**/*.json", "c.json", True),
        ("h?/[ab].jpg", "h1/a.jpg", True),
        ("h?/[!ab].jpg", "h1/a.jpg", False),
    ],
)
def test_patterns(pattern: str, path: str, hit: bool) -> None:
    assert Matcher((pattern,)).matches(path, FILE) is hit


def test_exact_paths_match_themselves_and_what_is_below() -> None:
    exact = Matcher((), exact=frozenset({"we[ir]d*.jpg", "out/h1"}))
    assert exact.matches("we[ir]d*.jpg", FILE) and exact.matches("out/h1/a.json", FILE)
    assert not exact.matches("weid.jpg", FILE) and not exact.matches("out/h10/a.json", FILE)


def test_attributes_must_all_hold_and_directories_never_match() -> None:
    tagged = TreeEntry(
        "x.jpg", "file", 0o644, 0, 1, "ab" * 32, ("ab" * 32,),
        attrs=check_attrs({"house": "h1", "device": "c2"}),
    )  # fmt: skip
    only_meta = Matcher((), parse_meta(["house=h1"]))
    assert only_meta.matches("any/where.jpg", tagged)
    assert not only_meta.matches("any/where.jpg", FILE)
    assert not Matcher(("a",), parse_meta(["house=h1", "device=c3"])).matches("a/x", tagged)
    assert not Matcher(("a",)).matches("a", TreeEntry("a", "dir", 0o755, 0, tree="ab" * 32))


@pytest.mark.parametrize("bad", [[], [""], ["a/../b"], ["/"]])
def test_bad_purge_requests_are_usage_errors(bad: list[str]) -> None:
    with pytest.raises(UsageError):
        Matcher(tuple(bad))
    with pytest.raises(UsageError):
        parse_meta(["no-equals-sign"])
