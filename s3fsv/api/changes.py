"""The changes a transaction holds, and what each path holds once they are applied to the base.

Paths map to new content, an existing entry (carried by a rename), or None (deleted). A ``dir``
entry whose ``tree`` is ``""`` is a directory to make sure of (``mkdir -p``): it keeps what the
directory holds when one is there already, at commit time as here (``s3fsv.store.tree``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

from s3fsv.errors import NotADirectory, NotFound
from s3fsv.store.objects import Attrs, TreeEntry
from s3fsv.store.objectstore import ObjectStore
from s3fsv.store.tree import lookup
from s3fsv.store.upload import Content

# New content (uploaded; its entry is made at commit, once its chunks are stored), with the
# file's mode, mtime and attributes; an entry; or None for deleted.
Pending = tuple[Content, int, int, Attrs] | TreeEntry | None

_ABSENT: Any = object()


def is_ensure_dir(value: Pending) -> bool:
    """Whether ``value`` only makes sure a directory exists (keeping what it holds)."""
    return isinstance(value, TreeEntry) and value.kind == "dir" and not value.tree


def _ancestors(path: str) -> Iterator[str]:
    """``a/b`` and ``a`` for ``a/b/c``."""
    end = path.rfind("/")
    while end > 0:
        yield path[:end]
        end = path.rfind("/", 0, end)


class Changes:
    """Path -> :data:`Pending` over a base tree. Every path is clean (no leading or trailing
    slash, valid names). Finding whether anything is changed below a path costs O(depth), not
    O(changes), so a transaction of many files stays linear."""

    def __init__(self, objects: ObjectStore, base_tree: str) -> None:
        self._objects = objects
        self._base_tree = base_tree
        self._pending: dict[str, Pending] = {}
        self._below: Counter[str] = Counter()  # directory -> changes below it

    def items(self) -> Iterator[tuple[str, Pending]]:
        return iter(self._pending.items())

    def has(self, path: str) -> bool:
        """Whether ``path`` itself is changed."""
        return path in self._pending

    def get(self, path: str) -> Pending:
        """The change at ``path`` itself (None when there is none: see :meth:`has`)."""
        return self._pending.get(path)

    def set(self, path: str, value: Pending) -> None:
        if path not in self._pending:
            for above in _ancestors(path):
                self._below[above] += 1
        self._pending[path] = value

    def _remove(self, path: str) -> None:
        del self._pending[path]
        for above in _ancestors(path):
            self._below[above] -= 1

    def below(self, path: str) -> dict[str, Pending]:
        """The changes strictly below ``path``."""
        if not self._below[path]:
            return {}
        prefix = path + "/"
        return {p: v for p, v in self._pending.items() if p.startswith(prefix)}

    def forget_below(self, path: str) -> None:
        """Drop every change strictly below ``path``."""
        for p in self.below(path):
            self._remove(p)

    # -- what a path holds --------------------------------------------------------------------
    def value(self, path: str) -> Pending:
        """What ``path`` itself holds in the base overlaid with the changes: new content, an
        entry, or None (nothing there, or a directory made by changes below it). A
        directory made sure of where one was already is that directory's entry."""
        value = self._pending.get(path, _ABSENT)
        if value is not _ABSENT and not is_ensure_dir(value):
            return value
        inherited = self._inherited(path)
        if value is _ABSENT or (isinstance(inherited, TreeEntry) and inherited.kind == "dir"):
            return inherited
        return value

    def _inherited(self, path: str) -> TreeEntry | None:
        """What the directory above ``path``, as overlaid, holds under ``path``'s name."""
        parent, _, name = path.rpartition("/")
        if parent:
            above = self.value(parent)
            if not isinstance(above, TreeEntry) or above.kind != "dir" or not above.tree:
                return None
            tree = above.tree
        else:
            tree = self._base_tree
        try:
            return lookup(self._objects, tree, name)
        except (NotFound, NotADirectory):
            return None

    def kind(self, path: str) -> str | None:
        """``file``, ``dir``, ``link`` or None: what ``path`` is once the changes are applied.
        Any change below a path makes it a directory, a delete too: the directories above
        what a transaction wrote stay when it is removed again, as ``mkdir -p a/b; rmdir
        a/b`` leaves ``a``, and committing makes them (``apply_changes``)."""
        if self._below[path]:
            return "dir"
        value = self.value(path)
        if value is None:
            return None
        return "file" if isinstance(value, tuple) else value.kind

    def blocking_parent(self, path: str) -> str | None:
        """The first directory above ``path``, from the root down, that is a file or a
        symlink, if any."""
        parts = path.split("/")
        for i in range(1, len(parts)):
            above = "/".join(parts[:i])
            if self.kind(above) in ("file", "link"):
                return above
        return None
