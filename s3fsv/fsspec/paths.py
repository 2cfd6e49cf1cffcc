"""Paths of the ``s3fsv://`` filesystem.

A path is ``REPO[@REF][/PATH]``, as the URL ``s3fsv://REPO[@REF]/PATH`` names it: ``REF`` is a
branch (default ``main``), a tag, a commit id or unique prefix of one, each optionally followed
by ``~N`` (the N-th first parent), exactly as the command line takes it. The empty path is the
store itself, whose entries are its repos. Names the filesystem returns keep the first
component as the caller wrote it (``cams`` stays ``cams``, ``cams@main`` stays ``cams@main``),
so that fsspec's own path arithmetic (copy targets, glob matches) sees the spelling it gave.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from s3fsv.errors import InvalidName, UsageError
from s3fsv.store.address import parse_address
from s3fsv.store.objects import split_path
from s3fsv.store.refs import split_ancestry

PROTOCOL = "s3fsv"
DEFAULT_REF = "main"


@dataclass(frozen=True)
class Location:
    """Where a path points: ``root`` is its first component as written (``""`` for the store
    itself), ``ref`` the ref it names (``main`` when none is written), ``path`` the place
    inside that snapshot (``""`` for its root)."""

    root: str
    repo: str
    ref: str
    path: str

    @property
    def is_store(self) -> bool:
        return not self.root

    @property
    def default_ref(self) -> bool:
        """Whether the ref was left out (so the repo's ``main`` is meant)."""
        return "@" not in self.root

    @property
    def pinned(self) -> bool:
        """Whether the ref can never be written: ``REF~N`` names a past commit."""
        return split_ancestry(self.ref)[1] > 0

    def name(self, rel: str) -> str:
        """The filesystem name of ``rel``, a path inside this snapshot."""
        return f"{self.root}/{rel}" if rel else self.root

    @property
    def full(self) -> str:
        return self.name(self.path)

    def __str__(self) -> str:
        return f"{PROTOCOL}://{self.full}"


def strip_protocol(path: str | os.PathLike[str]) -> str:
    """``path`` without ``s3fsv://`` (or ``s3fsv::``) and without slashes at either end."""
    text = os.fspath(path)
    for prefix in (f"{PROTOCOL}://", f"{PROTOCOL}::"):
        if text.startswith(prefix):
            text = text[len(prefix) :]
            break
    return text.strip("/")


def locate(path: str | os.PathLike[str]) -> Location:
    """Parse a path (with or without the protocol). ``UsageError`` for a malformed repo or
        ref, ``InvalidName`` for ``..``, ``.`` and NUL in the path (repeated slashes count as
    one, as in POSIX)."""
    text = strip_protocol(path)
    if not text:
        return Location("", "", "", "")
    root, _, rest = text.partition("/")
    if ":" in root:
        raise UsageError(
            f"bad s3fsv path {text!r}: write REPO@REF/PATH (the command line's REPO@REF:PATH "
            "is written with a slash here)"
        )
    address = parse_address(root, default_ref=DEFAULT_REF)
    try:
        inside = "/".join(split_path("/".join(p for p in rest.split("/") if p)))
    except InvalidName as err:
        raise type(err)(f"bad s3fsv path {text!r}: {err}") from None
    return Location(root, address.repo, address.ref or DEFAULT_REF, inside)


def parent_of(path: str) -> str:
    """The path above ``path`` inside its snapshot (``""`` for a top-level entry)."""
    return path.rpartition("/")[0]
