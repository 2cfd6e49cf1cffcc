"""What a mount does when it sees a purge's tombstone (``STORE/_purges/``).

When it starts and every ``ref_ttl`` (at least a second) after, from a thread of its own, a
mount lists the tombstones it has not applied yet. For each: the cache entries of the purged
contents are deleted from this machine's cache (and from the readers' memory), and the
commits the purge rewrote are remembered, so that a view pinned to an old commit
(``commit/<id>``, a tag, a mount of ``REPO@<id>``) shows the rewritten commit from then on:
purged files are ``ENOENT``. The kernel's caches of such a pinned view are invalidated path by
path when the adapter can.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from s3fsv.errors import S3fsvError
from s3fsv.store.backend.base import Backend
from s3fsv.store.cache import DiskCache
from s3fsv.store.tombstones import rewritten, tombstones

if TYPE_CHECKING:
    from s3fsv.mount.handles import Snapshot
    from s3fsv.mount.vfs import Filesystem

log = logging.getLogger(__name__)


class PurgeWatch:
    """The tombstones one mount has applied. Thread-safe."""

    def __init__(
        self,
        backend: Backend,
        cache: DiskCache,
        interval: float,
        forget: Callable[[list[str]], None],
    ) -> None:
        self.backend = backend
        self.cache = cache
        self.interval = max(interval, 1.0)
        self.forget = forget  # drops chunks from the readers' memory
        self.rewritten: dict[str, str] = {}
        self.applied: set[str] = set()  # tombstones applied (a started purge waits for done)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, apply: Callable[[], None]) -> None:
        """Call ``apply`` (which polls) now and every ``interval`` from a thread of its own:
        never inside a filesystem call, which a store that does not answer would hold up."""

        def loop() -> None:
            while True:
                try:
                    apply()
                except Exception as err:  # a mount must outlive a bad tombstone
                    log.warning("applying purge tombstones failed: %s", err)
                if self._stop.wait(self.interval):
                    return

        self._thread = threading.Thread(target=loop, name="s3fsv-purges", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def poll(self) -> bool:
        """Apply the finished purges not applied yet; True when there were any. A store that
        cannot be read now is tried again at the next interval."""
        with self._lock:
            try:
                found = [
                    (tid, value)
                    for tid, value in tombstones(self.backend, skip=self.applied)
                    if value.get("state") == "done"
                ]
            except S3fsvError as err:
                log.debug("cannot read purge tombstones: %s", err)
                return False
            for tid, value in found:
                evict = [o for o in value.get("evict", ()) if isinstance(o, str)]
                gone = sum(1 for oid in evict if _discard(self.cache, oid))
                self.forget(evict)
                self.rewritten.update(rewritten(value))
                self.applied.add(tid)
                log.info(
                    "purge %s of %s applied: %d cache entries deleted, %d commits rewritten",
                    tid,
                    value.get("repo"),
                    gone,
                    len(rewritten(value)),
                )
            return bool(found)

    def current(self, commit: str) -> str:
        """The commit ``commit`` became through the purges applied (itself when none)."""
        seen = {commit}
        while commit in self.rewritten:
            commit = self.rewritten[commit]
            if commit in seen:  # a malformed chain: stop rather than loop
                break
            seen.add(commit)
        return commit


def _discard(cache: DiskCache, oid: str) -> bool:
    try:
        return cache.discard(oid)
    except (OSError, ValueError) as err:
        log.warning("cannot delete cache entry %s: %s", oid, err)
        return False


def apply_purges(fs: Filesystem) -> None:
    """Apply new purge tombstones: views pinned to a rewritten commit show its rewrite,
    and the kernel forgets the files that went (docs/ingest.md, "Mounts")."""
    if not fs.purges.poll():
        return
    with fs._lock:
        pinned = list(fs._fixed_snaps.items())
    for key, snap in pinned:
        moved = _rewritten(fs, snap)
        if moved is not None:
            with fs._lock:
                fs._fixed_snaps[key] = moved
            _invalidate(fs, snap, moved)
    if fs.fixed is not None and fs.fixed.immutable:
        moved = _rewritten(fs, fs.fixed)
        if moved is not None:
            old, fs.fixed = fs.fixed, moved
            _invalidate(fs, old, moved)


def _rewritten(fs: Filesystem, snap: Snapshot) -> Snapshot | None:
    commit = fs.purges.current(snap.commit)
    if commit == snap.commit:
        return None
    try:
        tree = fs._tree(fs._state(snap.repo), commit)
    except S3fsvError as err:
        log.warning("cannot show the rewrite of %s: %s", snap.commit[:12], err)
        return None
    return replace(snap, commit=commit, tree=tree)


def _invalidate(fs: Filesystem, old: Snapshot, new: Snapshot) -> None:
    """Tell the kernel to forget each path of ``old`` that ``new`` lacks or changed."""
    if fs.invalidate is None:
        return
    if fs.fixed is not None:
        top = ""
    elif fs.spec.repo is None:
        top = f"/{old.repo}/{old.label}"
    else:
        top = f"/{old.label}"
    try:
        diff = fs._state(old.repo).repo.diff_trees(old.tree, new.tree, empty_dirs=True)
    except S3fsvError as err:
        log.warning("cannot list the files a purge removed from %s: %s", old.label, err)
        return
    # From the purge thread, never from a filesystem call: the kernel may wait for the very
    # request being answered (deadlock).
    for path in sorted(diff.paths()):
        fs.invalidate(f"{top}/{path}")
