"""Directories loaded ahead of their listings (``ChunkReader``'s, mixed into it; see
``reader.py``): a snapshot's directories breadth first when it is mounted, and the pages of a
paged directory in parallel (``ChunkReader.warm_trees`` queues that for the subdirectories a
listing is likely to be followed by, within the reader's prefetch bound). Loaded trees and pages
land in the object store's memory and disk cache, where listings then find them.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from s3fsv.store.cache import DiskCache
from s3fsv.store.objects import Tree, TreePage
from s3fsv.store.objectstore import ObjectStore
from s3fsv.store.tree import dir_entries

log = logging.getLogger(__name__)

WARM_SNAPSHOT_DIRS = 512  # directories of a pinned snapshot loaded when it is mounted
# ... and at most about this many entries: on two cores, a longer walk at mount time took the
# CPU from the first workload on a fresh mount (cold listings of other directories, detect.py).
WARM_SNAPSHOT_ENTRIES = 8192


class DirectoryWarmup:
    """Mixin: needs the attributes declared below (``_pool`` runs page loads, ``_walker``
    snapshot walks, one at a time)."""

    objects: ObjectStore
    cache: DiskCache
    _pool: ThreadPoolExecutor
    _walker: ThreadPoolExecutor
    _lock: threading.Lock
    _closed: bool
    _warmed: OrderedDict[str, None]
    _page_loads: dict[str, Future[None]]

    def warm_snapshot(self, root_tree: str, limit: int = WARM_SNAPSHOT_DIRS) -> None:
        """Load, in the background, the directories of a snapshot, breadth first, up to
        ``limit`` of them: a first ``ls -R``, ``find`` or ``os.walk`` of it then lists from
        memory instead of opening a cache file per directory. Once per snapshot root."""
        with self._lock:
            if root_tree in self._warmed:
                return
            remember(self._warmed, root_tree, limit=256)
        with contextlib.suppress(RuntimeError):  # closed meanwhile
            self._walker.submit(self._walk_trees, root_tree, limit)

    def warm_later(self, root: Callable[[], str]) -> None:
        """``warm_snapshot`` of the tree that ``root()`` names, found in the background (it
        may read a ref and a commit from the store)."""

        def find_and_warm() -> None:
            try:
                tree = root()
            except Exception as err:  # no such branch, or the store does not answer
                log.debug("no snapshot to load ahead: %s", err)
                return
            self.warm_snapshot(tree)

        with contextlib.suppress(RuntimeError):  # closed meanwhile
            self._walker.submit(find_and_warm)

    def _walk_trees(self, root_tree: str, limit: int) -> None:
        pending, loaded, entries = collections.deque([root_tree]), 0, 0
        try:
            while pending and loaded < limit and not self._closed:
                # All of this directory's pages (that is the listing warmed), but no more ids
                # queued than the limit leaves room for, and no more entries than the decoded
                # objects' memory holds (more would push out what was loaded first).
                tree = pending.popleft()
                self.load_pages(tree)
                listing = list(dir_entries(self.objects, tree))
                subdirs = [e.tree for e in listing if e.kind == "dir"]
                loaded += 1
                entries += len(listing)
                if entries > WARM_SNAPSHOT_ENTRIES:
                    break
                pending.extend(subdirs[: max(limit - loaded - len(pending), 0)])
        except Exception as err:  # a listing that needs it will report it
            log.debug("loading a snapshot's directories ahead stopped: %s", err)

    def _warm_tree(self, tree_id: str) -> None:
        try:
            self.load_pages(tree_id, wait=False)
        except Exception as err:  # the listing itself will report it
            log.debug("loading tree %s ahead failed: %s", tree_id, err)

    def load_pages(self, tree_id: str, *, wait: bool = True) -> None:
        """Load every page of a paged directory at once, in parallel, rather than one request
        after another as a listing reads them (a cold ``find`` of 100 directories of 1,000
        names waited for 1,600 pages in turn). ``wait``: until they are loaded (never from a
        thread of the fetch pool). Failures are left for the listing to report."""
        tree = self.objects.get(tree_id, Tree)
        futures = []
        for page in tree.pages:
            # Pages on local disk load as fast in the listing itself: threads fighting over
            # the interpreter to decode them were slower (measured). The kernel reads them
            # off the disk meanwhile, all at once, instead of one after another as the
            # listing reaches each (a walk on a fresh mount waited for the disk in turn).
            if self.cache.will_need(page.id):
                continue
            with self._lock:  # a look-ahead may be loading it already: one request
                fut = self._page_loads.get(page.id)
                started = fut is None
                if fut is None:
                    try:
                        fut = self._pool.submit(self._load_page, page.id)
                    except RuntimeError:  # closed meanwhile
                        break
                    self._page_loads[page.id] = fut
            if started:  # (outside the lock: a finished future calls back at once)
                fut.add_done_callback(lambda _, pid=page.id: self._page_loaded(pid))
            futures.append(fut)
        if wait:
            for fut in futures:
                fut.result()

    def _page_loaded(self, page_id: str) -> None:
        with self._lock:
            self._page_loads.pop(page_id, None)

    def _load_page(self, page_id: str) -> None:
        try:
            self.objects.get(page_id, TreePage)
        except Exception as err:
            log.debug("loading page %s ahead failed: %s", page_id, err)


def remember(recent: OrderedDict[str, None], key: str, limit: int = 4096) -> None:
    """Add ``key`` to ``recent``, a set in insertion order, dropping the oldest past ``limit``."""
    recent[key] = None
    if len(recent) > limit:
        recent.popitem(last=False)
