"""What changed in a store, told to whoever listens: the hook the audit trail hangs from.

Every ref change goes through :class:`~s3fsv.store.refs.Refs`, so that one class tells a
store's :class:`Events` about each of them after it happened: ``repo.create``,
``branch.create``, ``commit`` (a branch moved by a commit), ``branch.delete`` and
``tag.create``. Layers above may emit events of their own (``run.start``, ``pipeline.job``)
through :meth:`Events.emit`.

Observers run in the thread that made the change, after the change is durable. An observer
that raises does not undo the change; the exception is logged and the next observer still
runs. Observers must therefore report their own failures (the audit trail logs them).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    """One change. ``old`` and ``new`` are commit ids (None where there is none: a created
    branch has no old, a deleted one no new); ``detail`` holds what else the emitter knows
    (a commit's tree and message, a run's command)."""

    action: str
    repo: str | None = None
    ref: str | None = None
    old: str | None = None
    new: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)


Observer = Callable[[Event], None]


class Events:
    """The observers of one open store. Thread-safe."""

    def __init__(self) -> None:
        self._observers: list[Observer] = []
        self._lock = threading.Lock()

    def subscribe(self, observer: Observer) -> None:
        with self._lock:
            if observer not in self._observers:
                self._observers.append(observer)

    def unsubscribe(self, observer: Observer) -> None:
        with self._lock:
            if observer in self._observers:
                self._observers.remove(observer)

    @property
    def observed(self) -> bool:
        with self._lock:
            return bool(self._observers)

    def emit(self, event: Event) -> None:
        """Tell every observer about ``event``; see the module docstring for failures."""
        with self._lock:
            observers = list(self._observers)
        for observer in observers:
            try:
                observer(event)
            except Exception:
                log.exception("an observer of %s on %s failed", event.action, event.repo)
