"""``put`` of a local directory as a stream: trees are written while the walk goes on, so memory
stays bounded however many files there are.

The walk is depth first in name order (the order packed siblings should sit in, see
``upload``). A directory's tree is written as soon as the contents of its files are final (their
chunks or packs stored); until then its entries wait, and when more than ``PENDING_MAX`` files
wait, the uploader is flushed (its open pack sealed, every write waited for) so that they can
be resolved. What stays in memory is the entries of the directories on the current path and at
most ``PENDING_MAX`` unresolved files, never the whole listing.

A finished tree is then merged into the branch (``merge_dir``): names the upload has win,
directories on both sides are merged recursively, names only the branch has stay, which is
what ``put`` has always meant. A fresh destination costs nothing to merge.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass, field, replace
from pathlib import Path

from s3fsv.errors import InvalidName
from s3fsv.store.objects import TreeEntry, check_name
from s3fsv.store.objectstore import ObjectStore
from s3fsv.store.tree import dir_entries, write_dir
from s3fsv.store.upload import Content, Uploader

log = logging.getLogger(__name__)

PENDING_MAX = 50_000  # files whose content may wait for a flush before trees are written


@dataclass
class Counts:
    """What a streamed put found: regular files, symlinks and file bytes."""

    files: int = 0
    links: int = 0
    bytes: int = 0


@dataclass
class _File:
    name: str
    mode: int
    mtime_ns: int
    content: Content


@dataclass
class _Dir:
    """A directory whose tree is not written yet: ``items`` in name order."""

    name: str
    mode: int
    mtime_ns: int
    items: list[TreeEntry | _File | _Dir] = field(default_factory=list)


class TreeBuilder:
    """Uploads a local directory through ``up`` and writes its trees; ``build`` returns the
    directory's entries. ``counts`` tells what was found."""

    def __init__(self, objects: ObjectStore, up: Uploader) -> None:
        self.objects = objects
        self.up = up
        self.counts = Counts()
        self._pending = 0  # _File objects not resolved yet

    def build(self, source: Path) -> list[TreeEntry]:
        items = self._children(source)
        self._flush()
        return [self._resolve(item) for item in items]

    def _children(self, path: Path) -> list[TreeEntry | _File | _Dir]:
        with os.scandir(path) as it:
            children = sorted(it, key=lambda e: e.name)
        items = []
        for child in children:
            try:
                check_name(child.name)
            except InvalidName as err:
                raise InvalidName(f"cannot upload {child.path}: {err}") from None
            item = self._item(child)
            if item is not None:
                items.append(item)
        return items

    def _item(self, child: os.DirEntry[str]) -> TreeEntry | _File | _Dir | None:
        st = child.stat(follow_symlinks=False)
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISDIR(st.st_mode):
            here = _Dir(child.name, mode, st.st_mtime_ns, self._children(Path(child.path)))
            if self._pending > PENDING_MAX:
                self._flush()
            # Written now when its files are stored; else when a flush has made them so.
            return self._resolve(here) if _final(here) else here
        if stat.S_ISLNK(st.st_mode):
            target = os.readlink(child.path)
            self.counts.links += 1
            return TreeEntry(child.name, "link", 0o777, st.st_mtime_ns, len(target.encode()),
                             target=target)  # fmt: skip
        if not stat.S_ISREG(st.st_mode):
            log.warning("skipping %s: not a regular file, directory or symlink", child.path)
            return None
        content = self.up.add_file(child.path)
        self.counts.files += 1
        self.counts.bytes += content.size
        self._pending += 1
        return _File(child.name, mode, st.st_mtime_ns, content)

    def _flush(self) -> None:
        self.up.finish()

    def _resolve(self, item: TreeEntry | _File | _Dir) -> TreeEntry:
        if isinstance(item, TreeEntry):
            return item
        if isinstance(item, _File):
            self._pending -= 1
            return item.content.entry(item.name, item.mode, item.mtime_ns)
        entries = [self._resolve(i) for i in item.items]
        return TreeEntry(item.name, "dir", item.mode, item.mtime_ns,
                         tree=write_dir(self.objects, entries))  # fmt: skip


def _final(item: TreeEntry | _File | _Dir) -> bool:
    if isinstance(item, _File):
        return item.content.final
    if isinstance(item, _Dir):
        return all(_final(i) for i in item.items)
    return True


def merge_dir(objects: ObjectStore, base_tree: str | None, new: list[TreeEntry]) -> list[TreeEntry]:
    """The entries of directory ``base_tree`` with ``new`` put into it: a name in ``new``
    replaces the base's, except that two directories are merged the same way."""
    if not base_tree:
        return new
    merged = {e.name: e for e in dir_entries(objects, base_tree)}
    for entry in new:
        old = merged.get(entry.name)
        if old is not None and old.kind == "dir" and entry.kind == "dir" and old.tree:
            inner = merge_dir(objects, old.tree, list(dir_entries(objects, entry.tree)))
            entry = replace(entry, tree=write_dir(objects, inner))
        merged[entry.name] = entry
    return [merged[n] for n in sorted(merged)]
