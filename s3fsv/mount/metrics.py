"""A mount's Prometheus metrics: every series it exports, how they are recorded, the endpoint.

Recording must cost next to nothing on the read path, and must never take a lock there.
``prometheus_client``'s own counters and histograms take a mutex on every increment, so they
are used here only to describe and serve the values (its metric families, registry and HTTP
server). The values live in :class:`Cells`: one flat list of floats per thread, written only by
its own thread (no lock, no lost increment) and summed when Prometheus scrapes. The read path
records through functions bound in advance to their cells (``fuse_timer``, ``hit``,
``miss``). Gauges that describe state (staged files, cache use, whether the store answers)
are read at scrape time from the objects that own that state, through callbacks: nothing on
the hot path keeps them.

The series (all prefixed ``s3fsv_``):

- ``fuse_op_seconds{op}``: latency of each FUSE operation (histogram);
- ``store_requests_total{op,outcome}``, ``store_request_seconds{op}`` (histogram) and
  ``store_bytes_total{op}``: requests to the store as the daemon made them (``op`` is get,
  head, put, list or delete; ``outcome`` ok, not_found, precondition_failed, unavailable,
  denied or error);
- ``cache_hits_total``, ``cache_misses_total``, ``cache_hit_bytes_total``,
  ``cache_miss_bytes_total``: file chunk reads served from memory or the disk cache, or that
  waited for the store; ``cache_fill_bytes_total``, ``cache_evictions_total``,
  ``cache_evicted_bytes_total``, ``cache_used_bytes``, ``cache_limit_bytes``;
- ``passthrough`` (1 when the kernel reads whole cached files itself, FUSE passthrough) and
  ``passthrough_opens_total``: the opens it served so (their reads never reach the daemon,
  so they are in no cache or FUSE read series);
- ``staged_files{repo,branch}``, ``staged_bytes{repo,branch}``;
- ``commits_total{outcome}`` (committed, nothing, conflict, failed),
  ``commit_seconds`` (histogram), ``conflicts_total``;
- ``store_up``, ``store_outages_total``; ``mount_info{version,source,mountpoint}``,
  ``mount_start_time_seconds``.
"""

from __future__ import annotations

import logging
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from s3fsv.errors import AccessDenied, NotFound, PreconditionFailed, StoreUnavailable
from s3fsv.store.backend.base import Backend, ObjectInfo

log = logging.getLogger(__name__)

B = TypeVar("B")
PREFIX = "s3fsv_"

FUSE_OPS = (
    "getattr", "readdir", "readlink", "open", "read", "release", "create", "write", "truncate",
    "fsync", "mkdir", "unlink", "rmdir", "rename", "symlink", "link", "mknod", "chmod", "chown",
    "utimens", "setxattr", "removexattr", "getxattr", "listxattr", "statfs", "other",
)  # fmt: skip
STORE_OPS = ("get", "head", "put", "list", "delete")
OUTCOMES = ("ok", "not_found", "precondition_failed", "unavailable", "denied", "error")
COMMIT_OUTCOMES = ("committed", "nothing", "conflict", "failed")
FUSE_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
STORE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
COMMIT_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)


class Cells:
    """``size`` float cells per thread, each list written by its own thread only, summed on
    demand. Threads are told apart by ``threading.get_ident()`` (a thread state, and so a
    ``threading.local``, does not outlive one callback on libfuse's own threads); a thread that
    ends leaves its list to the next thread given the same id, which just adds to it."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._by_thread: dict[int, list[float]] = {}
        self._lock = threading.Lock()  # taken once per new thread, never to record

    def mine(self) -> list[float]:
        cells = self._by_thread.get(threading.get_ident())
        if cells is None:
            with self._lock:
                cells = self._by_thread.setdefault(threading.get_ident(), [0.0] * self.size)
        return cells

    def adder(self, count: int, amount: int) -> Callable[[float], None]:
        """A function of ``n`` that adds 1 to cell ``count`` and ``n`` to cell ``amount`` of
        the calling thread's list. Everything it needs is bound in advance (the hot path pays
        for no attribute or method look-up)."""
        get, ident, mine = self._by_thread.get, threading.get_ident, self.mine

        def add(n: float) -> None:
            cells = get(ident())
            if cells is None:
                cells = mine()
            cells[count] += 1
            cells[amount] += n

        return add

    def totals(self) -> list[float]:
        out = [0.0] * self.size
        for cells in list(self._by_thread.values()):
            for i, value in enumerate(cells):
                out[i] += value
        return out


class _Histogram:
    """Where one histogram's cells are: per label value, one cell per bucket (the last is
    +Inf) and one for the sum."""

    def __init__(self, start: int, bounds: tuple[float, ...], labels: int) -> None:
        self.start = start
        self.bounds = bounds
        self.width = len(bounds) + 2
        self.size = self.width * labels

    def observe(self, cells: list[float], label: int, value: float) -> None:
        base = self.start + label * self.width
        cells[base + bisect_left(self.bounds, value)] += 1
        cells[base + self.width - 1] += value

    def recorder(self, of: Cells, label: int) -> Callable[[float], None]:
        """``observe`` into the calling thread's cells for one label value, bound in advance:
        for the FUSE operations, timed on every call."""
        base = self.start + label * self.width
        total = base + self.width - 1
        get, ident, mine, bounds = of._by_thread.get, threading.get_ident, of.mine, self.bounds
        find = bisect_left

        def record(value: float) -> None:
            cells = get(ident())
            if cells is None:
                cells = mine()
            cells[base + find(bounds, value)] += 1
            cells[total] += value

        return record

    def family(
        self, name: str, doc: str, totals: list[float], label: str, values: Iterable[str]
    ) -> HistogramMetricFamily:
        fam = HistogramMetricFamily(name, doc, labels=[label] if label else None)
        for i, value in enumerate(values):
            base = self.start + i * self.width
            counts = totals[base : base + len(self.bounds) + 1]
            running, buckets = 0.0, []
            for bound, n in zip([*map(_le, self.bounds), "+Inf"], counts, strict=True):
                running += n
                buckets.append((bound, running))
            fam.add_metric([value] if label else [], buckets, totals[base + self.width - 1])
        return fam


def _le(bound: float) -> str:
    return format(bound, "g")


class MountMetrics(Collector):
    """The mount's series. Recording methods are called from any thread; ``collect`` is what
    the registry calls at scrape time. ``state`` callbacks (set by the daemon) give the gauges:
    see :meth:`watch`."""

    def __init__(self) -> None:
        n = 0
        self._fuse = _Histogram(n, FUSE_BUCKETS, len(FUSE_OPS))
        n += self._fuse.size
        self._store_latency = _Histogram(n, STORE_BUCKETS, len(STORE_OPS))
        n += self._store_latency.size
        self._requests = n  # [op][outcome]
        n += len(STORE_OPS) * len(OUTCOMES)
        self._bytes = n  # [op]
        n += len(STORE_OPS)
        self._commit_latency = _Histogram(n, COMMIT_BUCKETS, 1)
        n += self._commit_latency.size
        self._commits = n  # [outcome]
        n += len(COMMIT_OUTCOMES)
        self._hits, self._misses, self._hit_bytes, self._miss_bytes = n, n + 1, n + 2, n + 3
        self._passthrough_opens = n + 4
        n += 5
        self.cells = Cells(n)
        # A chunk read of ``nbytes`` served from memory or disk (hit) or after a fetch (miss):
        # the ``ReadMeter`` of the mount's readers, called on every read.
        self.hit: Callable[[int], None] = self.cells.adder(self._hits, self._hit_bytes)
        self.miss: Callable[[int], None] = self.cells.adder(self._misses, self._miss_bytes)
        self._fuse_index = {op: i for i, op in enumerate(FUSE_OPS)}
        self._fuse_other = self._fuse_index["other"]
        self._store_index = {op: i for i, op in enumerate(STORE_OPS)}
        self._outcome_index = {o: i for i, o in enumerate(OUTCOMES)}
        self._commit_index = {o: i for i, o in enumerate(COMMIT_OUTCOMES)}
        self.started = time.time()
        self._state: dict[str, Callable[[], Any]] = {}
        self.info: dict[str, str] = {}

    # -- recording (any thread, no lock) ------------------------------------------------------
    def fuse_timer(self, op: str) -> Callable[[float], None]:
        """The function that records one duration (seconds) of FUSE operation ``op`` (an
        operation without a series of its own counts as "other": never an error)."""
        return self._fuse.recorder(self.cells, self._fuse_index.get(op, self._fuse_other))

    def fuse_op(self, op: str, seconds: float) -> None:
        """Record one duration of ``op`` (the FUSE adapter keeps a ``fuse_timer`` per
        operation instead: cheaper)."""
        self.fuse_timer(op)(seconds)

    def passthrough_open(self) -> None:
        """An open the kernel serves from a backing file: the daemon sees none of its reads."""
        self.cells.mine()[self._passthrough_opens] += 1

    def store_request(self, op: str, outcome: str, seconds: float, nbytes: int) -> None:
        cells = self.cells.mine()
        i = self._store_index[op]
        self._store_latency.observe(cells, i, seconds)
        cells[self._requests + i * len(OUTCOMES) + self._outcome_index[outcome]] += 1
        cells[self._bytes + i] += nbytes

    def commit(self, outcome: str, seconds: float) -> None:
        cells = self.cells.mine()
        cells[self._commits + self._commit_index[outcome]] += 1
        self._commit_latency.observe(cells, 0, seconds)

    # -- scrape-time state -------------------------------------------------------------------
    def watch(self, **state: Callable[[], Any]) -> None:
        """Callbacks read at scrape time: ``staged`` -> [(repo, branch, files, bytes)],
        ``cache`` -> the ``DiskCache``, ``outage`` -> the ``Outage``, ``read_path`` ->
        "passthrough" or "fuse"."""
        self._state.update(state)

    def _read(self, name: str) -> Any:
        fn = self._state.get(name)
        if fn is None:
            return None
        try:
            return fn()
        except Exception as err:  # a scrape never fails for one gauge
            log.debug("metrics: cannot read %s: %s", name, err)
            return None

    def collect(self) -> Iterator[Metric]:
        t = self.cells.totals()
        yield self._fuse.family(
            f"{PREFIX}fuse_op_seconds", "Latency of FUSE operations", t, "op", FUSE_OPS
        )
        yield self._store_latency.family(
            f"{PREFIX}store_request_seconds", "Latency of store requests", t, "op", STORE_OPS
        )
        requests = CounterMetricFamily(
            f"{PREFIX}store_requests", "Requests to the store", labels=["op", "outcome"]
        )
        sent = CounterMetricFamily(
            f"{PREFIX}store_bytes", "Bytes read from or written to the store", labels=["op"]
        )
        for i, op in enumerate(STORE_OPS):
            for j, outcome in enumerate(OUTCOMES):
                requests.add_metric([op, outcome], t[self._requests + i * len(OUTCOMES) + j])
            sent.add_metric([op], t[self._bytes + i])
        yield requests
        yield sent
        yield from self._cache_families(t)
        commits = CounterMetricFamily(f"{PREFIX}commits", "Commits", labels=["outcome"])
        for i, outcome in enumerate(COMMIT_OUTCOMES):
            commits.add_metric([outcome], t[self._commits + i])
        yield commits
        yield self._commit_latency.family(
            f"{PREFIX}commit_seconds", "Duration of commits", t, "", [""]
        )
        yield CounterMetricFamily(
            f"{PREFIX}conflicts",
            "Commits refused because another writer changed the same paths",
            t[self._commits + self._commit_index["conflict"]],
        )
        yield from self._state_families()

    def _cache_families(self, t: list[float]) -> Iterator[Metric]:
        for name, doc, index in (
            ("cache_hits", "File chunk reads served from memory or the disk cache", self._hits),
            ("cache_misses", "File chunk reads that waited for the store", self._misses),
            ("cache_hit_bytes", "Bytes of file reads served from the cache", self._hit_bytes),
            ("cache_miss_bytes", "Bytes of file reads that waited for the store", self._miss_bytes),
            (
                "passthrough_opens",
                "Opens the kernel serves from a cached file (FUSE passthrough), unseen reads",
                self._passthrough_opens,
            ),
        ):
            yield CounterMetricFamily(PREFIX + name, doc, t[index])
        mode = self._read("read_path")
        if mode is not None:
            yield GaugeMetricFamily(
                f"{PREFIX}passthrough",
                "1 when the kernel reads cached files itself (FUSE passthrough), 0 when the daemon",
                1 if mode == "passthrough" else 0,
            )
        cache = self._read("cache")
        if cache is None:
            return
        yield CounterMetricFamily(
            f"{PREFIX}cache_fill_bytes", "Bytes written into the disk cache", cache.filled_bytes
        )
        yield CounterMetricFamily(
            f"{PREFIX}cache_evictions", "Disk cache entries evicted", cache.evicted_entries
        )
        yield CounterMetricFamily(
            f"{PREFIX}cache_evicted_bytes", "Bytes evicted from the disk cache", cache.evicted_bytes
        )
        yield GaugeMetricFamily(
            f"{PREFIX}cache_used_bytes", "Bytes the disk cache holds", cache.usage()
        )
        yield GaugeMetricFamily(
            f"{PREFIX}cache_limit_bytes", "The disk cache's bound", cache.max_bytes
        )

    def _state_families(self) -> Iterator[Metric]:
        files = GaugeMetricFamily(
            f"{PREFIX}staged_files", "Paths staged, not committed", labels=["repo", "branch"]
        )
        size = GaugeMetricFamily(
            f"{PREFIX}staged_bytes", "Bytes of staged files", labels=["repo", "branch"]
        )
        for repo, branch, n, nbytes in self._read("staged") or ():
            files.add_metric([repo, branch], n)
            size.add_metric([repo, branch], nbytes)
        yield files
        yield size
        outage = self._read("outage")
        if outage is not None:
            yield GaugeMetricFamily(
                f"{PREFIX}store_up",
                "1 while the store answers, 0 during an outage",
                0 if outage.down_since is not None else 1,
            )
            yield CounterMetricFamily(
                f"{PREFIX}store_outages", "Outages of the store seen", outage.outages
            )
        info = GaugeMetricFamily(
            f"{PREFIX}mount_info", "The mount", labels=sorted(self.info) or None
        )
        info.add_metric([self.info[k] for k in sorted(self.info)], 1)
        yield info
        yield GaugeMetricFamily(
            f"{PREFIX}mount_start_time_seconds", "When the daemon started", self.started
        )


def outcome_of(err: BaseException) -> str:
    if isinstance(err, NotFound):
        return "not_found"
    if isinstance(err, PreconditionFailed):
        return "precondition_failed"
    if isinstance(err, StoreUnavailable):
        return "unavailable"
    if isinstance(err, AccessDenied):
        return "denied"
    return "error"


class MeteredBackend:
    """A ``Backend`` that records each request it passes on in ``metrics``. Other attributes
    are the wrapped backend's. A listing counts as one request, timed over its whole
    iteration (the pages it fetches are the backend's business)."""

    def __init__(self, inner: Backend, metrics: MountMetrics) -> None:
        self.inner = inner
        self.metrics = metrics

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _timed(self, op: str, fn: Callable[..., B], *args: Any, sent: int = 0, **kw: Any) -> B:
        start = time.perf_counter()
        try:
            result = fn(*args, **kw)
        except BaseException as err:
            self.metrics.store_request(op, outcome_of(err), time.perf_counter() - start, 0)
            raise
        got = len(result) if isinstance(result, (bytes, bytearray, memoryview)) else 0
        self.metrics.store_request(op, "ok", time.perf_counter() - start, sent + got)
        return result

    def get(self, key: str, start: int | None = None, end: int | None = None) -> bytes:
        return self._timed("get", self.inner.get, key, start, end)

    def read_into(self, key: str, alloc: Callable[[int], B]) -> B:
        read_into = getattr(self.inner, "read_into", None)
        if read_into is None:
            return self.get(key)  # type: ignore[return-value]
        size = 0

        def counted(n: int) -> B:
            nonlocal size
            size = n
            return alloc(n)

        start = time.perf_counter()
        try:
            buf = read_into(key, counted)
        except BaseException as err:
            self.metrics.store_request("get", outcome_of(err), time.perf_counter() - start, 0)
            raise
        self.metrics.store_request("get", "ok", time.perf_counter() - start, size)
        return buf

    def head(self, key: str) -> ObjectInfo:
        return self._timed("head", self.inner.head, key)

    def put(self, key: str, data: bytes, **conditions: Any) -> str:
        return self._timed("put", self.inner.put, key, data, sent=len(data), **conditions)

    def list(self, prefix: str = "") -> Iterator[str]:
        return self._listing(self.inner.list, prefix)

    def list_prefixes(self, prefix: str = "") -> Iterator[str]:
        return self._listing(self.inner.list_prefixes, prefix)

    def _listing(self, fn: Callable[[str], Iterator[str]], prefix: str) -> Iterator[str]:
        start = time.perf_counter()
        outcome = "ok"
        try:
            yield from fn(prefix)
        except BaseException as err:
            outcome = outcome_of(err)
            raise
        finally:
            self.metrics.store_request("list", outcome, time.perf_counter() - start, 0)

    def delete(self, key: str) -> None:
        self._timed("delete", self.inner.delete, key)

    def close(self) -> None:
        self.inner.close()


def registry_for(*collectors: Collector) -> CollectorRegistry:
    """A registry of its own (never the process-wide default) holding ``collectors`` and the
    process's CPU, memory and file descriptor series."""
    from prometheus_client import ProcessCollector

    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)
    for collector in collectors:
        registry.register(collector)
    return registry


class MetricsServer:
    """``prometheus_client``'s HTTP endpoint for ``registry`` on ``host:port`` (0 picks a free
    port: see ``address``), in a daemon thread until :meth:`close`."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry) -> None:
        from prometheus_client import start_http_server

        self._server, self._thread = start_http_server(port, addr=host, registry=registry)
        bound = self._server.server_address
        shown = f"[{bound[0]}]" if ":" in str(bound[0]) else str(bound[0])
        self.address = f"{shown}:{bound[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
