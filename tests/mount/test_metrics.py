"""A mount's Prometheus endpoint (``--metrics-addr``): the named series are there, and they
move when files are read and committed; the lock-free cells they are kept in lose nothing."""

from __future__ import annotations

import json
import threading
import urllib.request
from pathlib import Path

import pytest
from mounting import drop_page_cache, mounted, run_cli
from prometheus_client.parser import text_string_to_metric_families

from s3fsv.errors import NotFound
from s3fsv.mount.metrics import Cells, MeteredBackend, MountMetrics
from s3fsv.store.backend.memory import MemoryBackend
from s3fsv.store.store import Store

SERIES = (
    "s3fsv_fuse_op_seconds",
    "s3fsv_store_requests",
    "s3fsv_store_request_seconds",
    "s3fsv_store_bytes",
    "s3fsv_cache_hits",
    "s3fsv_cache_misses",
    "s3fsv_cache_hit_bytes",
    "s3fsv_cache_miss_bytes",
    "s3fsv_cache_evictions",
    "s3fsv_cache_used_bytes",
    "s3fsv_staged_files",
    "s3fsv_staged_bytes",
    "s3fsv_commits",
    "s3fsv_commit_seconds",
    "s3fsv_conflicts",
    "s3fsv_store_outages",
    "s3fsv_store_up",
)


def scrape(address: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the endpoint, by (name, sorted labels)."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    out = {}
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    out[("families", ())] = names  # type: ignore[assignment]
    return out


def metrics_address(mp: Path, env: dict[str, str]) -> str:
    status = json.loads(run_cli("status", str(mp), "--json", env=env).stdout)
    return str(status["mount"]["metrics"])


def test_endpoint_series_move_with_reads_and_commits(tmp_path: Path, env: dict[str, str]) -> None:
    url = f"file://{tmp_path}/store"
    repo = Store.init(url).create_repo("cams")
    (tmp_path / "img.bin").write_bytes(b"x" * 300_000)
    from s3fsv.store import transfer

    transfer.put(repo, "main", tmp_path / "img.bin", "img.bin", "one file")
    mp = tmp_path / "mnt"
    with mounted(url, mp, env, "--metrics-addr", "127.0.0.1:0") as mp:
        address = metrics_address(mp, env)
        before = scrape(address)
        assert set(SERIES) <= before[("families", ())]  # type: ignore[operator]
        branch = mp / "cams/branch/main"
        drop_page_cache()
        assert (branch / "img.bin").read_bytes() == b"x" * 300_000
        (branch / "out.txt").write_text("result")
        staged = scrape(address)
        key = ("s3fsv_staged_files", (("branch", "main"), ("repo", "cams")))
        assert staged[key] == 1
        run_cli("commit", str(branch), "-m", "out", env=env)
        after = scrape(address)

    def moved(name: str, **labels: str) -> float:
        k = (name, tuple(sorted(labels.items())))
        return after.get(k, 0.0) - before.get(k, 0.0)

    assert moved("s3fsv_fuse_op_seconds_count", op="read") >= 1
    assert moved("s3fsv_cache_hits_total") + moved("s3fsv_cache_misses_total") >= 1
    assert moved("s3fsv_cache_hit_bytes_total") + moved("s3fsv_cache_miss_bytes_total") >= 300_000
    assert moved("s3fsv_commits_total", outcome="committed") == 1
    assert moved("s3fsv_commit_seconds_count") == 1
    assert moved("s3fsv_store_requests_total", op="put", outcome="ok") >= 2  # object and ref
    assert moved("s3fsv_store_bytes_total", op="put") > 0
    assert ("s3fsv_staged_files", (("branch", "main"), ("repo", "cams"))) not in after
    assert after[("s3fsv_store_up", ())] == 1


def test_no_metrics_by_default(tmp_path: Path, env: dict[str, str]) -> None:
    url = f"file://{tmp_path}/store"
    Store.init(url).create_repo("cams")
    with mounted(url, tmp_path / "mnt", env) as mp:
        assert (
            json.loads(run_cli("status", str(mp), "--json", env=env).stdout)["mount"]["metrics"]
            is None
        )


def test_bad_metrics_address_is_refused_before_mounting(
    tmp_path: Path, env: dict[str, str]
) -> None:
    url = f"file://{tmp_path}/store"
    Store.init(url)
    (tmp_path / "mnt").mkdir()
    result = run_cli(
        "mount", url, str(tmp_path / "mnt"), "--metrics-addr", "9108", env=env, check=False
    )
    assert result.returncode == 2 and "bad metrics address '9108'" in result.stderr


def test_cells_lose_no_increment_across_threads() -> None:
    cells = Cells(2)

    def work() -> None:
        for _ in range(20_000):
            mine = cells.mine()
            mine[0] += 1
            mine[1] += 0.5

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cells.totals() == [160_000, 80_000]


def test_metered_backend_counts_outcomes_and_bytes() -> None:
    metrics = MountMetrics()
    backend = MeteredBackend(MemoryBackend(), metrics)
    backend.put("k", b"12345")
    assert backend.get("k") == b"12345"
    with pytest.raises(NotFound):
        backend.get("missing")
    assert list(backend.list("")) == ["k"]
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in metrics.collect()
        for s in family.samples
    }
    assert samples[("s3fsv_store_requests_total", (("op", "get"), ("outcome", "ok")))] == 1
    assert samples[("s3fsv_store_requests_total", (("op", "get"), ("outcome", "not_found")))] == 1
    assert samples[("s3fsv_store_requests_total", (("op", "list"), ("outcome", "ok")))] == 1
    assert samples[("s3fsv_store_bytes_total", (("op", "put"),))] == 5
    assert samples[("s3fsv_store_bytes_total", (("op", "get"),))] == 5
    assert samples[("s3fsv_store_request_seconds_count", (("op", "get"),))] == 2


def test_an_operation_without_a_series_of_its_own_counts_as_other() -> None:
    metrics = MountMetrics()
    metrics.fuse_op("open", 0.001)
    metrics.fuse_op("an_op_added_later", 0.002)  # must never fail the FUSE operation
    metrics.passthrough_open()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in metrics.collect()
        for s in family.samples
    }
    assert samples[("s3fsv_fuse_op_seconds_count", (("op", "open"),))] == 1
    assert samples[("s3fsv_fuse_op_seconds_count", (("op", "other"),))] == 1
    assert samples[("s3fsv_passthrough_opens_total", ())] == 1


def _samples(metrics: MountMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in metrics.collect()
        for s in family.samples
    }


def test_recording_on_the_read_path_takes_no_lock() -> None:
    """Once a thread has its cells, timing an operation and counting a hit or miss go on while
    another thread holds the only lock metrics have."""
    metrics = MountMetrics()
    timer = metrics.fuse_timer("read")
    registered, go, done = threading.Event(), threading.Event(), threading.Event()

    def reader() -> None:
        timer(0.0003)  # the thread's first record: the only one that may take the lock
        registered.set()
        go.wait(10)
        timer(0.002)
        metrics.hit(4096)
        metrics.miss(100)
        done.set()

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    assert registered.wait(10)
    with metrics.cells._lock:
        go.set()
        assert done.wait(10)
    thread.join(10)
    samples = _samples(metrics)
    assert samples[("s3fsv_fuse_op_seconds_count", (("op", "read"),))] == 2
    assert samples[("s3fsv_fuse_op_seconds_bucket", (("le", "0.0005"), ("op", "read")))] == 1
    assert samples[("s3fsv_fuse_op_seconds_bucket", (("le", "0.0025"), ("op", "read")))] == 2
    assert samples[("s3fsv_fuse_op_seconds_sum", (("op", "read"),))] == pytest.approx(0.0023)
    assert samples[("s3fsv_cache_hits_total", ())] == 1
    assert samples[("s3fsv_cache_hit_bytes_total", ())] == 4096
    assert samples[("s3fsv_cache_misses_total", ())] == 1
    assert samples[("s3fsv_cache_miss_bytes_total", ())] == 100


def test_the_adapter_times_each_operation_under_its_own_name() -> None:
    """``translated`` tells the operation's own timer (one per name, made on first use), for
    operations that fail as well as those that succeed."""
    from mfusepy import FuseOSError

    from s3fsv.mount.fuse import _Timers, translated

    metrics = MountMetrics()

    class Adapter:
        timers = _Timers(metrics.fuse_timer)

        @translated
        def readdir_with_offset(self, path: str, offset: int, fh: int) -> list[str]:
            return []

        @translated
        def _open_pinned(self, path: str, fi: object) -> int:
            raise NotFound("gone")

    adapter = Adapter()
    adapter.readdir_with_offset("/", 0, 0)
    adapter.readdir_with_offset("/", 0, 0)
    with pytest.raises(FuseOSError):
        adapter._open_pinned("/x", None)
    samples = _samples(metrics)
    assert samples[("s3fsv_fuse_op_seconds_count", (("op", "readdir"),))] == 2
    assert samples[("s3fsv_fuse_op_seconds_count", (("op", "open"),))] == 1
    assert sorted(Adapter.timers) == ["open", "readdir"]
