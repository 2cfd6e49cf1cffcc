"""Keeping the objects a commit refers to alive through a concurrent ``gc``.

gc (``s3fsv.ingest.gc``) deletes an object only when no ref reaches it, it is older than the
grace period (at least an hour is safe), and its listing that showed this is at most
``SWEEP_DEADLINE_S`` old; it holds a lease (``GC_MARKER_KEY``) while it runs. Writers, on
their side (docs/ingest.md, "gc and concurrent commits"):

- an object this process **wrote** less than ``FRESH_NS`` ago is young: nothing to do;
- any other object it is about to refer to (it found it stored already: a ``412`` on its
  conditional put, or a dedupe by id; or another process uploaded it) is **revived**:
  touched, which makes it young; a missing one fails the commit (``MissingObject``);
- before the commit moves its branch, while gc's lease is live, it waits until
  ``SWEEP_DEADLINE_S`` passed since the last revival and checks the revived objects are still
  there (gc may have listed one just before it was touched).

So an object a commit refers to is either reached by the refs gc read, young when gc lists
it, or found gone before the commit is made.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from cachetools import LRUCache

from s3fsv.errors import MissingObject, NotFound

if TYPE_CHECKING:
    from s3fsv.store.objectstore import ObjectStore

FRESH_NS = 10 * 60 * 10**9
SWEEP_DEADLINE_S = 5.0
GC_NAMESPACE, GC_LEASE = "gc", "gc"  # the record _gc/leases/gc
GC_MARKER_KEY = f"_{GC_NAMESPACE}/leases/{GC_LEASE}"
MOVED_HOPS = 8  # a pack rewritten, then its new pack rewritten again...


class KeepAlive:
    """What one object store wrote and revived, and when. Thread-safe; the clocks may be
    replaced (tests)."""

    def __init__(self, objects: ObjectStore) -> None:
        self.objects = objects
        self.clock: Callable[[], int] = time.monotonic_ns
        self.wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000
        self.sleep: Callable[[float], None] = time.sleep
        self._written: LRUCache[str, int] = LRUCache(maxsize=1 << 20)
        self._revived: LRUCache[str, int] = LRUCache(maxsize=1 << 20)
        self._lock = threading.Lock()
        self._mine = threading.local()  # revivals of the current thread (a commit's trees)

    def wrote(self, oid: str) -> None:
        with self._lock:
            self._written[oid] = self.clock()

    def young(self, oid: str) -> bool:
        """Whether this process wrote ``oid`` lately (no gc can delete it now)."""
        with self._lock:
            return self.clock() - self._written.get(oid, -FRESH_NS) < FRESH_NS

    def revive(self, oid: str) -> bool:
        """Touch ``oid``, which exists but may be old; False when it turned out missing (the
        caller stores it again). Remembered for ``settle``."""
        touch = getattr(self.objects.backend, "touch", None)
        if touch is None:
            return True  # a backend no gc can collect
        try:
            touch(self.objects.key(oid))
        except NotFound:
            return False
        self._note_revived(oid)
        return True

    def _note_revived(self, oid: str) -> None:
        with self._lock:
            self._revived[oid] = self.clock()
        mine = getattr(self._mine, "oids", None)
        if mine is not None:
            mine.add(oid)

    def begin(self) -> None:
        """Start collecting the revivals this thread makes (a commit's tree writes)."""
        self._mine.oids = set()

    def freshen(
        self, oids: Iterable[str], packed: Mapping[str, set[int]] | None = None, threads: int = 16
    ) -> list[str]:
        """Revive the objects ``oids`` a commit is about to refer to, but those written here
        lately or revived lately; return the ones to ``settle``. ``packed`` gives, per pack,
        the offsets of the members referred to: a pack gc rewrote counts as there when its
        moved record kept them (its new pack is revived instead)."""
        now = self.clock()
        wanted = packed or {}
        todo, settle = [], []
        with self._lock:
            for oid in sorted(set(oids)):
                if now - self._written.get(oid, -FRESH_NS) < FRESH_NS:
                    continue
                if now - self._revived.get(oid, -FRESH_NS) < FRESH_NS:
                    settle.append(oid)
                else:
                    todo.append(oid)
        if not todo or getattr(self.objects.backend, "touch", None) is None:
            return settle

        def one(oid: str) -> str:
            target, offsets = oid, set(wanted.get(oid, ()))
            for _hop in range(MOVED_HOPS + 1):
                if self.revive(target):
                    return target
                moved = self.objects.moved(target)
                if moved is None or not offsets <= set(moved.members):
                    self.objects.forget_pack(oid)  # so that the next upload stores it again
                    raise MissingObject(
                        f"object {oid} of repo {self.objects.repo!r}, which this commit refers "
                        "to, is gone (garbage-collected): upload its content again"
                    )
                target, offsets = moved.pack, {moved.members[o][0] for o in offsets}
            raise MissingObject(f"pack {oid} of repo {self.objects.repo!r} moved too many times")

        with ThreadPoolExecutor(max_workers=threads) as pool:
            return settle + list(pool.map(one, todo))

    def settle(self, oids: Iterable[str], threads: int = 16) -> None:
        """Before a commit moves its branch: while a gc runs, wait out its sweep deadline
        after the last revival of ``oids`` (and of this thread's revivals since ``begin``),
        then check they are all still stored; ``MissingObject`` when one is not."""
        mine = getattr(self._mine, "oids", None) or set()
        self._mine.oids = set()
        check = sorted(set(oids) | mine)
        if not check or not self.gc_running():
            return
        with self._lock:
            last = max(self._revived.get(o, 0) for o in check)
        wait = SWEEP_DEADLINE_S - (self.clock() - last) / 1e9
        if wait > 0:
            self.sleep(wait)
        with ThreadPoolExecutor(max_workers=threads) as pool:
            present = list(pool.map(self.objects.stored, check))
        gone = [o for o, there in zip(check, present, strict=True) if not there]
        if gone:
            for oid in gone:
                self.objects.forget_pack(oid)
            raise MissingObject(
                f"object {gone[0]} of repo {self.objects.repo!r}, which this commit refers to, "
                f"was garbage-collected while the commit was made ({len(gone)} object(s))"
            )

    def gc_running(self) -> bool:
        try:
            marker = json.loads(self.objects.backend.get(GC_MARKER_KEY))
        except NotFound:
            return False
        except ValueError:
            return True  # unreadable: assume the worst, it only costs a wait
        return not isinstance(marker, dict) or marker.get("expires_ms", 0) > self.wall_ms()
