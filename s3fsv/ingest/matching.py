"""Which files a purge erases: path patterns and attribute conditions.

A pattern is matched against a file's path and each directory above it, component by
component: ``*`` and ``?`` never cross a ``/``, ``[...]`` is a character class, and a whole
component ``**`` matches any number of components. So ``houses/h1234/**`` and ``houses/h1234``
both match every file below ``houses/h1234``. ``--meta house=h1234`` matches files whose
attribute ``house`` is ``h1234`` (every condition must hold). A file is purged when it matches
some pattern (or no pattern is given) and every condition.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from s3fsv.errors import UsageError
from s3fsv.store.objects import TreeEntry


def check_pattern(pattern: str) -> tuple[str, ...]:
    """The components of a path pattern; ``UsageError`` for an empty one or ``.``/``..``."""
    parts = tuple(pattern.strip("/").split("/"))
    if not pattern.strip("/") or any(p in ("", ".", "..") for p in parts):
        raise UsageError(f"bad path pattern {pattern!r}")
    return parts


def _match(pattern: tuple[str, ...], path: list[str]) -> bool:
    """Whether the components ``path`` match ``pattern`` exactly."""
    if not pattern:
        return not path
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return any(_match(rest, path[i:]) for i in range(len(path) + 1))
    return bool(path) and fnmatch.fnmatchcase(path[0], head) and _match(rest, path[1:])


@dataclass(frozen=True)
class Matcher:
    """``patterns`` (globs), or ``exact`` paths (a cascade's: matched by lookup, however many),
    and ``meta`` conditions."""

    patterns: tuple[str, ...]
    meta: tuple[tuple[str, str], ...] = ()
    exact: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not self.patterns and not self.meta and not self.exact:
            raise UsageError("a purge needs --match PATTERN or --meta NAME=VALUE")
        parsed = tuple(check_pattern(p) for p in self.patterns)
        object.__setattr__(self, "_parsed", parsed)

    def path_matches(self, path: str) -> bool:
        """Whether ``path`` or a directory above it matches (True with no pattern or path)."""
        if not self.patterns and not self.exact:
            return True
        parts = path.split("/")
        if self.exact and any("/".join(parts[:n]) in self.exact for n in range(1, len(parts) + 1)):
            return True
        parsed: tuple[tuple[str, ...], ...] = self._parsed  # type: ignore[attr-defined]
        return any(_match(p, parts[:n]) for p in parsed for n in range(1, len(parts) + 1))

    def matches(self, path: str, entry: TreeEntry) -> bool:
        """Whether the file (or symlink) ``entry`` at ``path`` is to be purged."""
        if entry.kind == "dir":
            return False
        if self.meta:
            attrs = dict(entry.attrs)
            if any(attrs.get(k) != v for k, v in self.meta):
                return False
        return self.path_matches(path)


def parse_meta(items: list[str]) -> tuple[tuple[str, str], ...]:
    """``["house=h1234"]`` -> ``(("house", "h1234"),)``; ``UsageError`` without ``=``."""
    out = []
    for item in items:
        name, eq, value = item.partition("=")
        if not eq or not name.strip():
            raise UsageError(f"--meta takes NAME=VALUE, not {item!r}")
        out.append((name.strip().lower(), value))
    return tuple(sorted(out))
