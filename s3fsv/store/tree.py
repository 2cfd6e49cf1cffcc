"""Reading and rewriting Merkle trees, with history-independent paging of large directories.

A directory with at most ``PAGE_THRESHOLD`` entries is one ``Tree`` with its entries inline.
A larger one is a ``Tree`` of ``PageRef``\\ s to ``TreePage``\\ s. A page ends after every name
whose SHA-256 starts with a byte ``< 256 / PAGE_FANOUT`` (and at the directory's end), so the page
boundaries depend only on the set of names: the same directory content always gives the same
tree id, whatever order it was built in, and inserting or deleting one name rewrites one page
(two when it removes a boundary) plus the small page index.

``apply_changes`` rewrites only the directories on the paths of the changes: a commit of k
changed files in a repo of n files writes O(k * depth) objects.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace

from s3fsv.errors import InvalidName, NotADirectory, NotFound
from s3fsv.store.objects import PageRef, Tree, TreeEntry, TreePage, object_id, split_path
from s3fsv.store.objectstore import ObjectStore

PAGE_THRESHOLD = 256
PAGE_FANOUT = 64
DEFAULT_DIR_MODE = 0o755

EMPTY_TREE = Tree()
EMPTY_TREE_ID = object_id(EMPTY_TREE)

# A change at a path: an entry to put there (replacing what was there), or None to delete the
# path (a file, link or whole directory). A ``dir`` entry whose ``tree`` is "" means "make sure a
# directory exists here, keeping its contents if it already does" (mkdir -p semantics).
Change = TreeEntry | None


def _first(page: PageRef) -> str:
    return page.first


def _name(entry: TreeEntry) -> str:
    return entry.name


def is_boundary(name: str) -> bool:
    return hashlib.sha256(name.encode("utf-8")).digest()[0] < 256 // PAGE_FANOUT


def dir_entries(store: ObjectStore, tree_id: str) -> Iterator[TreeEntry]:
    """Every entry of a directory in name order, loading its pages one at a time."""
    tree = store.get(tree_id, Tree)
    if not tree.paged:
        yield from tree.entries
        return
    for page in tree.pages:
        yield from store.get(page.id, TreePage).entries


def lookup(store: ObjectStore, tree_id: str, name: str) -> TreeEntry | None:
    """The entry called ``name`` in a directory, reading at most one page."""
    tree = store.get(tree_id, Tree)
    if tree.paged:
        idx = bisect.bisect_right(tree.pages, name, key=_first) - 1
        if idx < 0:
            return None
        entries = store.get(tree.pages[idx].id, TreePage).entries
    else:
        entries = tree.entries
    i = bisect.bisect_left(entries, name, key=_name)
    if i < len(entries) and entries[i].name == name:
        return entries[i]
    return None


def entries_after(store: ObjectStore, tree_id: str, name: str, limit: int) -> list[TreeEntry]:
    """Up to ``limit`` entries of a directory that sort after ``name``, reading only the pages
    that hold them (O(log n) to find the place, not a scan)."""
    tree = store.get(tree_id, Tree)
    if not tree.paged:
        i = bisect.bisect_right(tree.entries, name, key=_name)
        return list(tree.entries[i : i + limit])
    out: list[TreeEntry] = []
    page = max(bisect.bisect_right(tree.pages, name, key=_first) - 1, 0)
    for ref in tree.pages[page:]:
        entries = store.get(ref.id, TreePage).entries
        i = bisect.bisect_right(entries, name, key=_name)
        out.extend(entries[i : i + limit - len(out)])
        if len(out) >= limit:
            break
    return out


def walk_after(
    store: ObjectStore, trees: list[str], names: list[str], limit: int
) -> tuple[list[TreeEntry], bool]:
    """Up to ``limit`` entries that follow a file in a depth-first walk in name order: those
    after ``names[-1]`` in directory ``trees[-1]``, then, when given the grandparent directory
    ``trees[0]`` and the parent's name ``names[0]``, the entries of the next subdirectory of the
    grandparent. Also says whether the walk ended before ``limit`` (nothing more follows)."""
    after = entries_after(store, trees[-1], names[-1], limit)
    if len(after) >= limit or len(trees) < 2:
        return after, len(after) < limit
    for uncle in entries_after(store, trees[0], names[0], 4):
        if uncle.kind == "dir":
            want = limit - len(after)
            more = entries_after(store, uncle.tree, "", want)
            return after + more, len(more) < want
    return after, True


def root_entry(tree_id: str) -> TreeEntry:
    return TreeEntry("", "dir", DEFAULT_DIR_MODE, 0, tree=tree_id)


def resolve(store: ObjectStore, root_id: str, path: str) -> TreeEntry:
    """The entry at ``path`` (``""`` is the root). Raises ``NotFound`` / ``NotADirectory``."""
    entry = root_entry(root_id)
    walked: list[str] = []
    for part in split_path(path):
        if entry.kind != "dir":
            raise NotADirectory(f"not a directory: {'/'.join(walked)}")
        found = lookup(store, entry.tree, part)
        walked.append(part)
        if found is None:
            raise NotFound(f"no such file or directory: {'/'.join(walked)}")
        entry = found
    return entry


def walk(store: ObjectStore, tree_id: str, prefix: str = "") -> Iterator[tuple[str, TreeEntry]]:
    """Every entry below a directory, depth first in name order, with repo-relative paths."""
    for entry in dir_entries(store, tree_id):
        path = f"{prefix}/{entry.name}" if prefix else entry.name
        yield path, entry
        if entry.kind == "dir":
            yield from walk(store, entry.tree, path)


# -- writing --------------------------------------------------------------------------------------


def write_dir(store: ObjectStore, entries: list[TreeEntry]) -> str:
    """Write a directory from its complete, sorted entry list; returns the tree id."""
    if len(entries) <= PAGE_THRESHOLD:
        return store.put(Tree(entries=tuple(entries)))
    return store.put(Tree(pages=tuple(_write_pages(store, entries))))


def _write_pages(store: ObjectStore, entries: list[TreeEntry]) -> list[PageRef]:
    pages: list[PageRef] = []
    start = 0
    for i, entry in enumerate(entries):
        if is_boundary(entry.name) or i == len(entries) - 1:
            run = tuple(entries[start : i + 1])
            pages.append(PageRef(run[0].name, len(run), store.put(TreePage(run))))
            start = i + 1
    return pages


def _update_dir(store: ObjectStore, tree_id: str | None, updates: Mapping[str, Change]) -> str:
    """Apply name -> entry/None updates to one directory, touching only the affected pages."""
    tree = store.get(tree_id, Tree) if tree_id else EMPTY_TREE
    if not tree.paged:
        merged = {e.name: e for e in tree.entries}
        _merge(merged, updates)
        return write_dir(store, [merged[n] for n in sorted(merged)])
    firsts = [p.first for p in tree.pages]
    by_page: dict[int, dict[str, Change]] = {}
    for name, change in updates.items():
        by_page.setdefault(max(bisect.bisect_right(firsts, name) - 1, 0), {})[name] = change
    # Every page but the last ends on a boundary name. A run of consecutive pages, starting after
    # such a page, can be re-paged on its own once it ends (after its updates) on a boundary name,
    # is empty, or reaches the directory's end: re-paging it alone then gives exactly the pages of
    # the whole directory. So a touched page is extended with the next page only when its last
    # name is no longer a boundary (the boundary was deleted, or a name was added after it);
    # changing or inserting a name inside a page reads and writes that page alone.
    pages: list[PageRef] = []
    i = 0
    while i < len(tree.pages):
        if i not in by_page:
            pages.append(tree.pages[i])
            i += 1
            continue
        run: dict[str, TreeEntry] = {}
        while True:
            run.update((e.name, e) for e in store.get(tree.pages[i].id, TreePage).entries)
            _merge(run, by_page.get(i, {}))
            i += 1
            if i == len(tree.pages) or not run or is_boundary(max(run)):
                break
        if run:
            pages.extend(_write_pages(store, [run[n] for n in sorted(run)]))
    new_total = sum(p.count for p in pages)
    if new_total <= PAGE_THRESHOLD:
        return write_dir(store, [e for p in pages for e in store.get(p.id, TreePage).entries])
    return store.put(Tree(pages=tuple(pages)))


def _merge(entries: dict[str, TreeEntry], updates: Mapping[str, Change]) -> None:
    for name, change in updates.items():
        if change is None:
            entries.pop(name, None)
        else:
            entries[name] = change


@dataclass
class _Node:
    """Changes grouped by directory: the change at this name, and changes below it."""

    change: Change | None = None
    has_change: bool = False
    children: dict[str, _Node] = field(default_factory=dict)


def _group(changes: Mapping[str, Change]) -> _Node:
    root = _Node()
    for path, change in changes.items():
        parts = split_path(path)
        if not parts:
            raise InvalidName("cannot replace the repository root itself")
        node = root
        for part in parts:
            node = node.children.setdefault(part, _Node())
        node.change, node.has_change = change, True
    return root


def _max_mtime(node: _Node) -> int:
    best = node.change.mtime_ns if node.change is not None else 0
    for child in node.children.values():
        best = max(best, _max_mtime(child))
    return best


def apply_changes(
    store: ObjectStore,
    root_id: str | None,
    changes: Mapping[str, Change],
    *,
    missing_ok: bool = False,
) -> str:
    """Return the id of the tree that results from applying ``changes`` (path -> Change) to
    ``root_id``. Writes only the new objects. Raises ``NotADirectory`` when a change goes below a
    path that is a file, and ``NotFound`` when it deletes nothing (a path that does not exist),
    unless ``missing_ok``."""
    return _apply(store, root_id, _group(changes), "", missing_ok)


def _apply(
    store: ObjectStore, tree_id: str | None, node: _Node, where: str, missing_ok: bool
) -> str:
    updates: dict[str, Change] = {}
    for name, child in node.children.items():
        path = f"{where}/{name}" if where else name
        current = lookup(store, tree_id, name) if tree_id else None
        if child.has_change:
            change = child.change
            if change is None and current is None and not child.children and not missing_ok:
                raise NotFound(f"cannot delete {path}: no such file or directory")
            if change is not None and change.kind == "dir" and not change.tree:
                keep = current.tree if current is not None and current.kind == "dir" else ""
                change = replace(change, tree=keep or write_dir(store, []))
            current = change
        if child.children:
            if current is None:
                current = TreeEntry(name, "dir", DEFAULT_DIR_MODE, _max_mtime(child))
            elif current.kind != "dir":
                raise NotADirectory(f"not a directory: {path}")
            sub = _apply(store, current.tree or None, child, path, missing_ok)
            current = replace(current, tree=sub)
        if current is not None and current.name != name:
            current = replace(current, name=name)
        updates[name] = current
    return _update_dir(store, tree_id, updates)
