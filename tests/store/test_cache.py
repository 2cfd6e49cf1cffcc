"""The shared disk cache without FUSE: verification, permissions, eviction, thread safety."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import random
import stat
import threading
import time
from pathlib import Path

import pytest

from s3fsv.store.cache import DIRECT_MIN, TRAILER, DiskCache


def entry(n: int, size: int = 4096) -> tuple[str, bytes]:
    data = random.Random(n).randbytes(size)
    return hashlib.sha256(data).hexdigest(), data


def test_round_trip_and_permissions(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path / "c")
    oid, data = entry(1)
    assert cache.get(oid) is None
    cache.put(oid, data)
    assert cache.get(oid) == data
    assert cache.pread(oid, 10, 100) == data[100:110]
    assert cache.pread(oid, 10_000, 4090) == data[4090:]
    assert stat.S_IMODE(cache.path(oid).stat().st_mode) == 0o600
    for d in (tmp_path / "c", cache.path(oid).parent, tmp_path / "c" / "objects"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700


def test_corrupt_and_truncated_entries_are_misses(tmp_path: Path) -> None:
    oid, data = entry(2)
    DiskCache(tmp_path / "c").put(oid, data)
    path = DiskCache(tmp_path / "c").path(oid)
    raw = bytearray(path.read_bytes())
    raw[7] ^= 1
    path.write_bytes(bytes(raw))
    assert DiskCache(tmp_path / "c").get(oid) is None
    assert not path.exists()  # a bad entry is removed so it is refetched
    DiskCache(tmp_path / "c").put(oid, data)
    path.write_bytes(path.read_bytes()[:100])
    assert DiskCache(tmp_path / "c").pread(oid, 10, 0) is None
    cache = DiskCache(tmp_path / "c")
    cache.put(oid, data)
    assert cache.get(oid) == data
    with open(path, "r+b") as fh:  # corrupted in place under a process that verified it
        fh.write(b"\0" * 16)
    os.utime(path, ns=(1, 1))
    assert cache.get(oid) is None


def test_will_need_says_what_is_there_and_verifies_nothing(tmp_path: Path) -> None:
    """``will_need`` (a page-cache hint before a listing reads its pages) answers whether an
    entry is there; a corrupt one counts as there until it is read, and is then a miss."""
    cache = DiskCache(tmp_path / "c")
    oid, data = entry(5)
    assert not cache.will_need(oid)
    cache.put(oid, data)
    assert cache.will_need(oid)
    other = DiskCache(tmp_path / "c")  # not open in this one: goes to the file
    path = other.path(oid)
    raw = bytearray(path.read_bytes())
    raw[3] ^= 1
    path.write_bytes(bytes(raw))
    assert other.will_need(oid)
    assert other.get(oid) is None
    assert not other.will_need(oid)  # the bad entry was removed by the read


def test_a_corrupt_entry_replaced_meanwhile_by_a_good_one_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reader that found corruption removes only the file it opened: a good entry that
    another process renamed into place after that open survives."""
    import s3fsv.store.cache as cache_module

    oid, data = entry(3)
    DiskCache(tmp_path / "good").put(oid, data)
    good = DiskCache(tmp_path / "good").path(oid)
    DiskCache(tmp_path / "c").put(oid, data)
    path = DiskCache(tmp_path / "c").path(oid)
    path.write_bytes(b"garbage" + path.read_bytes()[7:])
    real = cache_module.xxhash.xxh3_128_digest

    def digest_then_replace(content: bytes) -> bytes:
        os.replace(good, path)  # the other writer lands between our open and our check
        monkeypatch.setattr(cache_module.xxhash, "xxh3_128_digest", real)
        return real(content)

    monkeypatch.setattr(cache_module.xxhash, "xxh3_128_digest", digest_then_replace)
    assert DiskCache(tmp_path / "c").get(oid) is None  # what it opened was corrupt
    assert DiskCache(tmp_path / "c").get(oid) == data  # and the good entry is still there


def _stored(root: Path) -> int:
    return sum(p.stat().st_size for p in (root / "objects").rglob("*") if p.is_file())


def test_eviction_keeps_the_cache_under_budget(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path / "c", max_bytes=64 * 1024)
    oids = []
    for n in range(40):
        oid, data = entry(n, 4096)
        cache.put(oid, data)
        oids.append(oid)
    cache.evict_now()
    assert _stored(tmp_path / "c") <= 64 * 1024
    assert cache.get(oids[-1]) is not None  # the newest survive


def test_eviction_catches_up_with_entries_added_during_a_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Entries added while a pass runs (after its scan) start another pass when it ends: the
    cache gets back under budget without waiting for a tenth of the budget more."""
    cache = DiskCache(tmp_path / "c", max_bytes=64 * 1024)
    scanned = threading.Event()
    proceed = threading.Event()
    evict_now = cache.evict_now

    def held_pass() -> int:
        freed = evict_now()
        scanned.set()
        proceed.wait(10)
        return freed

    monkeypatch.setattr(cache, "evict_now", held_pass)
    cache.put(*entry(0))  # the first addition starts a pass
    assert scanned.wait(10)
    for n in range(1, 40):  # 160 KiB while it runs
        cache.put(*entry(n))
    proceed.set()
    deadline = time.monotonic() + 10
    while cache._evicting and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _stored(tmp_path / "c") <= 64 * 1024


def test_close_evicts_when_a_pass_was_due(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A process that stops while a pass is due leaves the cache within its budget."""
    cache = DiskCache(tmp_path / "c", max_bytes=64 * 1024)
    monkeypatch.setattr(cache, "_evict", lambda: None)  # background passes never run
    for n in range(40):
        cache.put(*entry(n))
    assert _stored(tmp_path / "c") > 64 * 1024
    with open(tmp_path / "c/evict.lock", "a+b") as other:  # another process's pass
        fcntl.flock(other, fcntl.LOCK_EX)
        cache.close()  # does not wait for it (unmount must not), and leaves it the work
        assert _stored(tmp_path / "c") > 64 * 1024
    cache.close()
    assert _stored(tmp_path / "c") <= 64 * 1024
    quiet = DiskCache(tmp_path / "q", max_bytes=1)
    quiet.close()  # added nothing: no pass
    assert not (tmp_path / "q/evict.lock").exists()


def test_concurrent_reads_never_return_another_entrys_bytes(tmp_path: Path) -> None:
    """Readers racing with handle-table eviction (more entries than open handles)."""
    cache = DiskCache(tmp_path / "c")
    entries = dict(entry(n, 16 * 1024) for n in range(400))
    for oid, data in entries.items():
        cache.put(oid, data)
    oids = list(entries)
    errors: list[str] = []

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(1500):
            oid = rng.choice(oids)
            got = cache.pread(oid, 4096, 1000)
            if got != entries[oid][1000:5096]:
                errors.append(oid)

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_large_entries_round_trip_with_and_without_direct_io(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Entries past DIRECT_MIN take the O_DIRECT path (aligned prefix, buffered tail and
    trailer); a filesystem that refuses O_DIRECT gets plain writes. Both read back exactly,
    from this process and from a fresh one that verifies the trailer."""
    size = DIRECT_MIN * 2 + 4096 * 3 + 123  # spans the staging buffer, unaligned tail
    real_fcntl, real_write_direct = fcntl.fcntl, DiskCache._write_direct
    direct: list[int] = []

    def no_direct(fd: int, cmd: int, arg: int = 0) -> int:
        if cmd == fcntl.F_SETFL and arg & os.O_DIRECT:
            raise OSError(errno.EINVAL, "no O_DIRECT here")
        return real_fcntl(fd, cmd, arg)

    def spy(self: DiskCache, fd: int, data: memoryview) -> int:
        direct.append(real_write_direct(self, fd, data))
        return direct[-1]

    monkeypatch.setattr(DiskCache, "_write_direct", spy)
    for n, refuse in ((10, False), (11, True)):
        if refuse:
            monkeypatch.setattr(fcntl, "fcntl", no_direct)
        oid, data = entry(n, size)
        cache = DiskCache(tmp_path / "c")
        cache.put(oid, data)
        assert cache.pread(oid, 200, size - 150) == data[-150:]
        assert DiskCache(tmp_path / "c").get(oid) == data
        assert cache.path(oid).stat().st_size == size + TRAILER
        assert stat.S_IMODE(cache.path(oid).stat().st_mode) == 0o600
    assert direct[1] == 0
    assert direct[0] in (0, size - size % 4096)  # 0 only where tmp_path refuses O_DIRECT
