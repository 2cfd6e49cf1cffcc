"""A mount's circuit breaker for store outages.

A store that stops answering costs every request its full timeout (about 60 s with a mount's
settings). Paid once per call, a walk such as ``ls -l`` or ``find`` would hang for minutes. So
once a request finds the store unreachable, the mount treats the store as down: requests fail
at once with ``StoreUnavailable`` (callers then serve what they hold, or fail with ``EIO``),
while one background probe at a time asks the store whether it answers again. Requests made
in a probe's first second wait for it, so those of the moment the store is back go through.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from s3fsv.errors import StoreUnavailable
from s3fsv.store.backend.base import Backend, ObjectInfo, copy_into

log = logging.getLogger(__name__)

B = TypeVar("B")

PROBE_WAIT = 1.0  # seconds a request waits for the probe it started


class Outage:
    """Whether the store is down, and the probe that finds out when it is back. Thread-safe.

    ``probe`` is a cheap store request; it raising ``StoreUnavailable`` means still down, and
    anything else (an answer, or another error, which is also an answer) means up."""

    def __init__(self, probe: Callable[[], object]) -> None:
        self._probe = probe
        self._lock = threading.Lock()
        self._error: StoreUnavailable | None = None
        self._probing: threading.Event | None = None  # set when the running probe ends
        self._probe_started = 0.0
        # For status and metrics: when the current outage began (wall clock), how many began,
        # and the last failure (wall clock, message).
        self.down_since: float | None = None
        self.outages = 0
        self.last_failure: tuple[float, str] | None = None

    def error(self) -> StoreUnavailable | None:
        """The error the store failed with, while it is down; None when it is up. While it is
        down, starts a probe when none runs; waits for the probe while it is younger than
        ``PROBE_WAIT``, so every request of the moment the store comes back goes through, and
        none waits longer for a probe that hangs. (A probe is one request: probes pace
        themselves by its timeouts.)"""
        with self._lock:
            if self._error is None:
                return None
            if self._probing is None:
                probe = threading.Thread(target=self._run_probe, name="s3fsv-probe", daemon=True)
                self._probing = threading.Event()
                self._probe_started = time.monotonic()
                try:
                    probe.start()
                except RuntimeError:  # no thread to spare now: the next request tries again
                    self._probing = None
                    return self._error
            probing, wait = self._probing, self._probe_started + PROBE_WAIT - time.monotonic()
        if wait > 0:
            probing.wait(wait)
        with self._lock:
            return self._error

    def settle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a running probe to end; True when none runs."""
        with self._lock:
            probing = self._probing
        return probing is None or probing.wait(timeout)

    def failed(self, err: StoreUnavailable) -> None:
        """A request found the store unreachable."""
        now = time.time()
        with self._lock:
            first, self._error = self._error is None, err
            self.last_failure = (now, str(err))
            if first:
                self.down_since = now
                self.outages += 1
        if first:
            log.warning("%s; until it answers, requests that need it fail at once", err)

    def _ask(self) -> StoreUnavailable | None:
        """Run the probe: the error when the store is unreachable, else None."""
        try:
            self._probe()
        except StoreUnavailable as err:
            return err
        except Exception as err:  # any answer means the store is reachable
            log.debug("store probe answered with %s", err)
        return None

    def _run_probe(self) -> None:
        error = self._ask()
        with self._lock:
            done, self._probing = self._probing, None
            was_down = self._settle(error)
        if done is not None:
            done.set()
        if was_down and error is None:
            log.warning("the store answers again")

    def _settle(self, error: StoreUnavailable | None) -> bool:
        """Under the lock: record what a probe found, still down (``error``) or up again;
        return whether the store was down before."""
        was_down, self._error = self._error is not None, error
        if error is None:
            self.down_since = None
        else:
            self.last_failure = (time.time(), str(error))
            if not was_down:
                self.down_since, self.outages = time.time(), self.outages + 1
        return was_down

    def check(self) -> tuple[StoreUnavailable | None, float]:
        """Ask the store now, in this thread (for ``status``): the error it failed with (None
        when it answered) and the round trip in seconds. What it finds counts as a probe's."""
        start = time.monotonic()
        error = self._ask()
        took = time.monotonic() - start
        if error is not None:
            self.failed(error)
            return error, took
        with self._lock:
            # A probe running now reports on its own.
            was_down = self._probing is None and self._settle(None)
        if was_down:
            log.warning("the store answers again")
        return error, took


class GuardedBackend:
    """A ``Backend`` whose requests fail at once while ``outage`` says the store is down, and
    which reports requests that find it unreachable to ``outage``. Other attributes are the
    wrapped backend's. ``close`` also closes ``owned`` (such as the backend the probe uses)."""

    def __init__(self, inner: Backend, outage: Outage, *, owned: Sequence[Backend] = ()) -> None:
        self.inner = inner
        self.outage = outage
        self._owned = tuple(owned)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _call(self, fn: Callable[..., B], *args: Any, **kwargs: Any) -> B:
        err = self.outage.error()
        if err is not None:
            raise StoreUnavailable(f"the store is unreachable, so it was not asked ({err})")
        try:
            return fn(*args, **kwargs)
        except StoreUnavailable as unreachable:
            self.outage.failed(unreachable)
            raise

    def _iterate(self, fn: Callable[[str], Iterator[str]], prefix: str) -> Iterator[str]:
        it = self._call(fn, prefix)
        while True:
            try:
                item = self._call(next, it)
            except StopIteration:
                return
            yield item

    def get(self, key: str, start: int | None = None, end: int | None = None) -> bytes:
        return self._call(self.inner.get, key, start, end)

    def read_into(self, key: str, alloc: Callable[[int], B]) -> B:
        read_into = getattr(self.inner, "read_into", None)
        if read_into is None:
            return copy_into(self.get(key), alloc)
        return self._call(read_into, key, alloc)

    def head(self, key: str) -> ObjectInfo:
        return self._call(self.inner.head, key)

    def put(self, key: str, data: bytes, **conditions: Any) -> str:
        return self._call(self.inner.put, key, data, **conditions)

    def list(self, prefix: str = "") -> Iterator[str]:
        return self._iterate(self.inner.list, prefix)

    def list_prefixes(self, prefix: str = "") -> Iterator[str]:
        return self._iterate(self.inner.list_prefixes, prefix)

    def delete(self, key: str) -> None:
        self._call(self.inner.delete, key)

    def close(self) -> None:
        self.inner.close()
        for backend in self._owned:
            backend.close()
