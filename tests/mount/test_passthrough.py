"""FUSE passthrough: whole-file cache entries (verified, read-only) and pinned mounts whose
kernel reads them without asking the daemon; silent fallback without libfuse 3.17."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from s3fsv.mount import passthrough
from s3fsv.store import wholefile
from s3fsv.store.cache import DiskCache
from s3fsv.store.objects import TreeEntry, sha256_hex
from s3fsv.store.store import Store
from s3fsv.store.transfer import put
from s3fsv.store.wholefile import WHOLE_MIN, WholeFiles
from tests.mount.test_metrics import metrics_address, scrape
from tests.mounting import daemon_pids, drop_page_cache, mounted, run_cli

CHUNK = 512 * 1024


def file_entry(cache: DiskCache, data: bytes, *, store: bool = True) -> TreeEntry:
    chunks = [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]
    if store:
        for c in chunks:
            cache.put(sha256_hex(c), c)
    return TreeEntry(
        "f", "file", 0o644, 0, len(data), sha256_hex(data), tuple(sha256_hex(c) for c in chunks)
    )


def test_materialised_entry_is_verified_and_read_only(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path / "cache")
    whole = WholeFiles(cache)
    data = os.urandom(WHOLE_MIN + 3 * CHUNK + 17)
    entry = file_entry(cache, data)
    assert whole.find(entry) is None
    path = whole.materialise(entry)
    assert path is not None and path.read_bytes() == data
    assert path.stat().st_mode & 0o7777 == 0o400
    assert whole.find(entry) == path
    assert whole.discard_all() == 1 and not path.exists()  # what a purge does
    assert whole.materialise(entry) == path
    # A file of the wrong size there is not used (and is removed).
    os.chmod(path, 0o600)
    path.write_bytes(data[:-1])
    os.chmod(path, 0o400)
    assert whole.find(entry) is None and not path.exists()
    whole.close()


def test_chunks_that_do_not_make_the_content_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wholefile, "_CHUNK_WAITS", 1)
    cache = DiskCache(tmp_path / "cache")
    whole = WholeFiles(cache)
    data = os.urandom(WHOLE_MIN + CHUNK)
    entry = file_entry(cache, data)
    lying = TreeEntry("f", "file", 0o644, 0, entry.size, "ab" * 32, entry.chunks)
    assert whole.materialise(lying) is None
    assert not whole.path(lying.sha256).exists()
    assert not any((tmp_path / "cache" / "tmp").iterdir())  # no leftovers
    missing = file_entry(cache, os.urandom(WHOLE_MIN + 1), store=False)
    assert whole.materialise(missing) is None  # never from the store, only from the cache
    assert not whole.path(missing.sha256).exists()
    whole.close(wait=1)


def test_eviction_counts_whole_files(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path / "cache")
    whole = WholeFiles(cache)
    entry = file_entry(cache, os.urandom(3 * WHOLE_MIN))
    path = whole.materialise(entry)
    assert path is not None
    old = 1_000_000_000
    os.utime(path, ns=(old, old))  # the least recently used entry
    cache.max_bytes = 4 * WHOLE_MIN  # 6 MiB are cached: the whole file goes first
    assert cache.evict_now() >= 3 * WHOLE_MIN
    assert not path.exists()
    whole.close()


needs_libfuse = pytest.mark.skipif(
    not passthrough.LIB.is_file() or os.geteuid() != 0,
    reason="needs `make passthrough` (libfuse 3.17) and root",
)


@pytest.fixture
def pinned(tmp_path: Path) -> tuple[str, bytes]:
    store = Store.init(f"file://{tmp_path}/store")
    repo = store.create_repo("r", chunk_size=CHUNK)
    src = tmp_path / "src"
    src.mkdir()
    data = os.urandom(3 * WHOLE_MIN + 5)
    (src / "big.bin").write_bytes(data)
    (src / "small.txt").write_bytes(b"small\n")
    cid, _ = put(repo, "main", src, "", "data")
    store.close()
    return f"file://{tmp_path}/store/r@{cid}", data


def daemon_reads(pid: int) -> int:
    """Bytes the daemon has read with read(2) and friends (from its cache files)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar")


@needs_libfuse
def test_pinned_mount_passes_cached_files_through(
    pinned: tuple[str, bytes], tmp_path: Path, env: dict[str, str]
) -> None:
    source, data = pinned
    mp, cache = tmp_path / "mnt", tmp_path / "cache"
    with mounted(source, mp, env, "--cache-dir", str(cache)):
        assert (mp / "big.bin").read_bytes() == data  # through the daemon; then materialised
    entry_path = cache / "files" / hashlib.sha256(data).hexdigest()[:2]
    assert any(entry_path.iterdir())  # the unmount waited for the whole-file entry
    # With metrics too: the opens the kernel serves are counted (and none fails for them).
    with mounted(source, mp, env, "--cache-dir", str(cache), "--metrics-addr", "127.0.0.1:0"):
        status = run_cli("status", "--json", str(mp), env=env).stdout
        assert '"read_path": "passthrough"' in status
        assert "reads:      FUSE passthrough" in run_cli("status", str(mp), env=env).stdout
        (pid,) = daemon_pids(Path(env["XDG_STATE_HOME"]), mp)
        drop_page_cache()
        before = daemon_reads(pid)
        assert (mp / "big.bin").read_bytes() == data
        # Through the daemon, it would have read the 3 MiB from its cache files itself.
        assert daemon_reads(pid) - before < len(data) // 4
        assert (mp / "small.txt").read_bytes() == b"small\n"  # small files: the daemon
        got = scrape(metrics_address(mp, env))
        assert got[("s3fsv_passthrough", ())] == 1
        assert got[("s3fsv_passthrough_opens_total", ())] == 1  # big.bin, not small.txt
        assert got[("s3fsv_fuse_op_seconds_count", (("op", "open"),))] >= 2
        assert got[("s3fsv_cache_hit_bytes_total", ())] < len(data) // 4


@needs_libfuse
def test_without_passthrough_mounts_read_as_before(
    pinned: tuple[str, bytes], tmp_path: Path, env: dict[str, str]
) -> None:
    source, data = pinned
    mp, cache = tmp_path / "mnt", tmp_path / "cache"
    off = {**env, "S3FSV_PASSTHROUGH": "off"}
    with mounted(source, mp, off, "--cache-dir", str(cache)):
        assert (mp / "big.bin").read_bytes() == data
        assert "reads:      through the daemon" in run_cli("status", str(mp), env=off).stdout
    assert not (cache / "files").exists()
