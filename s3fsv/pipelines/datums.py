"""Datums: the units a pipeline processes, found by its glob, and the outputs each one made.

A glob has one pattern per path component (``fnmatch`` rules: ``*``, ``?``, ``[...]``); each
path it matches is a datum, a file or a whole directory. The empty glob (spelled ``/``) makes
the whole commit one datum, with the path ``""``.

**Attribution** (docs/pipelines.md): a batch runs many datums in one process, so its outputs
are given to datums by their paths. An output belongs to the datum whose path ends with the
output's leading part: the output path, or the part of it before a ``.`` or ``/`` boundary,
is equal to the datum's path or to a tail of it (its last components). ``detect.py`` reads
``images/a.png`` and writes ``a.png.json``: the leading part ``a.png`` is the tail of
``images/a.png``. When several datums match, the longest matching tail wins; a tie between
two datums is an error that names both. An output that matches no datum is a batch artifact
(``summary.json``). Everything belongs to the whole-commit datum.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass

from s3fsv.api import Repo
from s3fsv.errors import S3fsvError


@dataclass(frozen=True, order=True)
class Datum:
    """One datum of an input commit: its path, kind, and a content id that changes whenever
    anything in it changes (a file's SHA-256, a directory's tree id)."""

    path: str
    kind: str
    content: str


class AttributionError(S3fsvError):
    """Two datums claim the same output."""

    exit_code = 6


def find_datums(repo: Repo, commit: str, glob: str) -> list[Datum]:
    """The datums ``glob`` matches in ``commit``, sorted by path."""
    if not glob:
        return [Datum("", "dir", repo.commit(commit).tree)]
    patterns = glob.split("/")
    found: list[Datum] = []
    frontier = [""]
    for depth, pattern in enumerate(patterns):
        last = depth == len(patterns) - 1
        following: list[str] = []
        for parent in frontier:
            for entry in repo.ls(commit, parent):
                if not fnmatch.fnmatchcase(entry.name, pattern):
                    continue
                if last:
                    content = entry.tree if entry.kind == "dir" else entry.sha256 or entry.target
                    found.append(Datum(entry.path, entry.kind, content))
                elif entry.kind == "dir":
                    following.append(entry.path)
        frontier = following
    return sorted(found)


class Attributor:
    """Gives output paths to the datums of one batch (or job), by the rule above."""

    def __init__(self, datums: Iterable[str]) -> None:
        self._whole = False
        self._tails: dict[str, set[str]] = {}
        for datum in datums:
            if datum == "":
                self._whole = True
                continue
            parts = datum.split("/")
            for i in range(len(parts)):
                self._tails.setdefault("/".join(parts[i:]), set()).add(datum)

    def datum_of(self, output: str) -> str | None:
        """The datum ``output`` belongs to, or None for a batch artifact."""
        if self._whole:
            return ""
        best: set[str] = set()
        for end in _boundaries(output):
            owners = self._tails.get(output[:end])
            if owners:
                best = owners  # a longer leading part replaces a shorter one
        if len(best) > 1:
            a, b = sorted(best)[:2]
            raise AttributionError(f"output {output} could come from datum {a} or {b}")
        return next(iter(best), None)


def _boundaries(path: str) -> list[int]:
    """End offsets of the leading parts of ``path``: before each ``.`` or ``/``, and its end."""
    ends = [i for i, c in enumerate(path) if c in "./" and i > 0]
    ends.append(len(path))
    return ends
