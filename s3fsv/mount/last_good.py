"""Stale-if-error for a mount's view of refs and listings.

A mount re-reads branch heads and the repo list every ``--ref-ttl``. When the store cannot be
reached, failing those reads would make everything under the mount fail, although the commits
and objects it shows are immutable and in the local cache. Instead, the last values read are
served until the store answers again; the outage and the recovery are logged once each.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from s3fsv.errors import StoreUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")


class LastGood:
    """Remembers the last value each loader returned. Thread-safe."""

    def __init__(self) -> None:
        self._values: dict[Hashable, Any] = {}
        self._lock = threading.Lock()
        self._stale = False  # serving remembered values since the last failure

    def get(self, key: Hashable, load: Callable[[], T]) -> T:
        """``load()``, remembered under ``key``; when the store is unreachable, the value
        remembered last (or the error, if there is none)."""
        try:
            value = load()
        except StoreUnavailable as err:
            with self._lock:
                if key not in self._values:
                    raise
                remembered: T = self._values[key]
                first, self._stale = not self._stale, True
            if first:
                # The outage itself is a warning already (see s3fsv.mount.outage).
                log.info("%s; showing refs and listings as last read until it answers", err)
            return remembered
        with self._lock:
            self._values[key] = value
            recovered, self._stale = self._stale, False
        if recovered:
            log.info("the store answers again; refs and listings are current")
        return value

    def remember(self, key: Hashable, value: object) -> None:
        """Make ``value`` the last good one for ``key`` (it was learnt otherwise, e.g. this
        process moved the branch itself)."""
        with self._lock:
            self._values[key] = value
