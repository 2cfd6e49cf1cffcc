"""The read path through real FUSE mounts, against file:// and a real S3 server (SeaweedFS)."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from s3fsv.store.store import Store
from s3fsv.store.transfer import put
from tests.mounting import alive, daemon_pids, drop_page_cache, mount_table, mounted, run_cli

CHUNK = 64 * 1024  # small chunks so multi-chunk files and prefetch are exercised cheaply


def make_tree(root: Path) -> dict[str, bytes]:
    """A small realistic tree: nested dirs, an empty file, a multi-chunk file, odd names."""
    rng = __import__("random").Random(1234)
    files = {
        "images/cam-01/0001.jpg": rng.randbytes(3000),
        "images/cam-01/0002.jpg": rng.randbytes(5000),
        "images/cam-02/0001.jpg": rng.randbytes(100),
        "images/empty.bin": b"",
        "big/video.bin": rng.randbytes(5 * CHUNK + 123),
        "names/space name.txt": b"spaces\n",
        "names/ünïcode-名前.txt": b"unicode\n",
        "top.txt": b"top\n",
    }
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    os.chmod(root / "top.txt", 0o640)
    return files


@pytest.fixture
def populated(store_url: str, tmp_path: Path) -> tuple[str, str, dict[str, bytes]]:
    """(store URL, first commit id, files) with repo ``cams`` holding the tree on main."""
    store = Store.init(store_url)
    repo = store.create_repo("cams", chunk_size=CHUNK)
    files = make_tree(tmp_path / "src")
    cid, _ = put(repo, "main", tmp_path / "src", "", "ingest")
    repo.create_tag("v1", cid)
    return store_url, cid, files


@pytest.fixture
def store_mount(
    populated: tuple[str, str, dict[str, bytes]], tmp_path: Path, env: dict[str, str]
) -> Iterator[tuple[Path, str, dict[str, bytes]]]:
    url, cid, files = populated
    with mounted(url, tmp_path / "mnt", env, "--ref-ttl", "0.5") as mp:
        yield mp, cid, files


def test_layout_and_bytes(store_mount: tuple[Path, str, dict[str, bytes]]) -> None:
    mp, cid, files = store_mount
    assert sorted(os.listdir(mp)) == ["cams"]
    assert sorted(os.listdir(mp / "cams")) == ["branch", "commit", "tag"]
    assert sorted(os.listdir(mp / "cams/branch")) == ["main"]
    assert sorted(os.listdir(mp / "cams/tag")) == ["v1"]
    assert cid in os.listdir(mp / "cams/commit")
    views = (
        "branch/main",
        "tag/v1",
        f"commit/{cid}",
        f"commit/{cid[:8]}",
        f"commit/{cid[:8].upper()}",
    )
    for view in views:
        for rel, data in files.items():
            assert (mp / "cams" / view / rel).read_bytes() == data, (view, rel)


def test_shell_tools(store_mount: tuple[Path, str, dict[str, bytes]]) -> None:
    mp, cid, files = store_mount
    snap = mp / "cams" / "commit" / cid
    listing = subprocess.run(["ls", "-lR", str(snap)], capture_output=True, text=True, check=True)
    assert "video.bin" in listing.stdout and "ünïcode-名前.txt" in listing.stdout
    dots = subprocess.run(["ls", "-a", str(snap)], capture_output=True, text=True, check=True)
    assert dots.stdout.split("\n")[:2] == [".", ".."]
    found = subprocess.run(
        ["find", str(snap), "-type", "f"], capture_output=True, text=True, check=True
    )
    assert sorted(Path(p).relative_to(snap).as_posix() for p in found.stdout.split("\n") if p) == (
        sorted(files)
    )
    out = subprocess.run(
        ["sha256sum", *(str(snap / rel) for rel in sorted(files))],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    for line, rel in zip(out, sorted(files), strict=True):
        digest = line.split()[0]
        assert digest == hashlib.sha256(files[rel]).hexdigest()
        attr = subprocess.run(
            ["getfattr", "--only-values", "-n", "user.s3fsv.sha256", str(snap / rel)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert attr == digest
    assert os.getxattr(snap / "top.txt", "user.s3fsv.commit").decode() == cid
    assert os.getxattr(snap / "top.txt", "user.s3fsv.repo") == b"cams"
    cat = subprocess.run(["cat", str(snap / "big/video.bin")], capture_output=True, check=True)
    assert cat.stdout == files["big/video.bin"]


def test_stat_fields(
    store_mount: tuple[Path, str, dict[str, bytes]],
    populated: tuple[str, str, dict[str, bytes]],
    tmp_path: Path,
) -> None:
    mp, cid, files = store_mount
    snap = mp / "cams" / "commit" / cid
    for rel, data in files.items():
        st = os.stat(snap / rel)
        src = os.stat(tmp_path / "src" / rel)
        assert stat.S_ISREG(st.st_mode)
        assert st.st_size == len(data)
        assert st.st_mtime_ns == src.st_mtime_ns
        assert stat.S_IMODE(st.st_mode) == stat.S_IMODE(src.st_mode) & ~0o222
        assert st.st_blocks * 512 >= len(data)
    assert stat.S_ISDIR(os.stat(snap / "images").st_mode)
    first = os.stat(snap / "top.txt").st_ino
    assert os.stat(mp / "cams" / "tag" / "v1" / "top.txt").st_ino != 0
    assert os.stat(snap / "top.txt").st_ino == first  # stable
    du = subprocess.run(["du", "-sb", str(snap)], capture_output=True, text=True, check=True)
    assert int(du.stdout.split()[0]) >= sum(len(d) for d in files.values())
    df = os.statvfs(mp)
    assert df.f_blocks > 0 and df.f_namemax == 255
    # A snapshot's root carries its commit's time (not the epoch).
    when = Store.open(populated[0]).repo("cams").commit_object(cid).time
    assert os.stat(snap).st_mtime == pytest.approx(
        datetime.fromisoformat(when.replace("Z", "+00:00")).timestamp(), abs=1e-3
    )


def test_read_only_errors(store_mount: tuple[Path, str, dict[str, bytes]]) -> None:
    mp, cid, _ = store_mount
    snap = mp / "cams" / "commit" / cid
    checks = [
        lambda: open(snap / "top.txt", "w"),  # noqa: SIM115
        lambda: open(snap / "new.txt", "w"),  # noqa: SIM115
        lambda: os.truncate(snap / "top.txt", 0),
        lambda: os.unlink(snap / "top.txt"),
        lambda: os.mkdir(snap / "newdir"),
        lambda: os.rmdir(snap / "images/cam-02"),
        lambda: os.rename(snap / "top.txt", snap / "other.txt"),
        lambda: os.chmod(snap / "top.txt", 0o777),
        lambda: os.utime(snap / "top.txt"),
        lambda: os.symlink("top.txt", snap / "link"),
        lambda: os.setxattr(snap / "top.txt", "user.x", b"1"),
    ]
    # New names among the virtual directories: read-only too (refs come from the CLI).
    for virtual in ("newrepo", "cams/branch/dev", "cams/tag/t2", "cams/commit/abcdef"):
        checks.append(lambda v=virtual: os.mkdir(mp / v))
    checks.append(lambda: open(mp / "cams" / "commit" / "new.txt", "w"))  # noqa: SIM115
    for check in checks:
        with pytest.raises(OSError) as info:
            check()
        assert info.value.errno == errno.EROFS, info.value
    with pytest.raises(FileNotFoundError):
        os.mkdir(mp / "cams" / "nosuchsection" / "x")
    with pytest.raises(OSError) as info:
        os.stat(snap / ("n" * 256))
    assert info.value.errno == errno.ENAMETOOLONG
    with pytest.raises(FileNotFoundError):
        os.stat(snap / "missing")
    with pytest.raises(FileNotFoundError):
        os.stat(mp / "cams" / "commit" / "ffffffffff")
    with pytest.raises(NotADirectoryError):
        os.stat(snap / "top.txt" / "below")
    with pytest.raises(IsADirectoryError):
        os.open(snap / "images", os.O_WRONLY)
    with pytest.raises(OSError) as info:
        os.getxattr(snap / "top.txt", "user.s3fsv.nope")
    assert info.value.errno == errno.ENODATA


def test_pinned_snapshot_survives_branch_move(
    store_mount: tuple[Path, str, dict[str, bytes]], store_url: str, tmp_path: Path
) -> None:
    mp, cid, files = store_mount
    pinned = mp / "cams" / "commit" / cid
    held = open(mp / "cams/branch/main/top.txt", "rb")  # noqa: SIM115
    try:
        repo = Store.open(store_url).repo("cams")
        (tmp_path / "change").mkdir()
        (tmp_path / "change/top.txt").write_bytes(b"changed top\n")
        new, _ = put(repo, "main", tmp_path / "change/top.txt", "top.txt", "change top")
        deadline = time.monotonic() + 20
        while (mp / "cams/branch/main/top.txt").read_bytes() != b"changed top\n":
            assert time.monotonic() < deadline, "branch view never refreshed"
            time.sleep(0.2)
        assert held.read() == files["top.txt"]  # an open file keeps its content
    finally:
        held.close()
    for rel, data in files.items():
        assert (pinned / rel).read_bytes() == data
    assert (mp / "cams" / "commit" / new / "top.txt").read_bytes() == b"changed top\n"


def test_snapshot_mount_at_root(
    populated: tuple[str, str, dict[str, bytes]], tmp_path: Path, env: dict[str, str]
) -> None:
    url, cid, files = populated
    for ref in ("v1", cid[:10], "main"):
        with mounted(f"{url}/cams@{ref}", tmp_path / f"snap-{ref}", env) as mp:
            assert sorted(p.relative_to(mp).as_posix() for p in mp.rglob("*") if p.is_file()) == (
                sorted(files)
            )
            for rel, data in files.items():
                assert (mp / rel).read_bytes() == data
    with mounted(f"{url}/cams", tmp_path / "repo-level", env) as mp:
        assert sorted(os.listdir(mp)) == ["branch", "commit", "tag"]
        assert (mp / "tag/v1/top.txt").read_bytes() == files["top.txt"]
    # An ancestor by ~N; a read-only view is "ro" for the kernel too.
    store = Store.open(url)
    later = tmp_path / "later"
    later.write_bytes(b"later\n")
    put(store.repo("cams"), "main", later, "top.txt", "replace top")
    with mounted(f"{url}/cams@main~1", tmp_path / "before", env) as mp:
        assert (mp / "top.txt").read_bytes() == files["top.txt"]
    with mounted(f"{url}/cams", tmp_path / "ro", env, "--read-only") as mp:
        assert (mp / "branch/main/top.txt").read_bytes() == b"later\n"
        assert "ro" in mount_table()[str(mp)]


def cache_files(cache_root: Path) -> list[Path]:
    return [p for p in (cache_root / "s3fsv" / "objects").rglob("*") if p.is_file()]


def test_cache_permissions_and_corruption(
    populated: tuple[str, str, dict[str, bytes]], tmp_path: Path, env: dict[str, str]
) -> None:
    url, cid, files = populated
    cache_root = Path(env["XDG_CACHE_HOME"])
    with mounted(f"{url}/cams@{cid}", tmp_path / "m1", env) as mp:
        for rel, data in files.items():
            assert (mp / rel).read_bytes() == data
    entries = cache_files(cache_root)
    assert entries, "reads did not fill the cache"
    for d in [cache_root / "s3fsv", *{p.parent for p in entries}]:
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    for p in entries:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    # Corrupt every cached object (flip a byte) and truncate one: reads must still be right.
    for p in entries:
        raw = bytearray(p.read_bytes())
        if len(raw) > 30:
            raw[0] ^= 0xFF
            p.write_bytes(bytes(raw))
    entries[0].write_bytes(entries[0].read_bytes()[:5])
    drop_page_cache()
    with mounted(f"{url}/cams@{cid}", tmp_path / "m2", env) as mp:
        for rel, data in files.items():
            assert (mp / rel).read_bytes() == data
            assert (
                hashlib.sha256((mp / rel).read_bytes()).hexdigest()
                == os.getxattr(mp / rel, "user.s3fsv.sha256").decode()
            )


def test_two_mounts_share_one_cache(
    populated: tuple[str, str, dict[str, bytes]], tmp_path: Path, env: dict[str, str]
) -> None:
    url, cid, files = populated
    with (
        mounted(f"{url}/cams@{cid}", tmp_path / "a", env) as a,
        mounted(f"{url}/cams", tmp_path / "b", env) as b,
    ):
        readers = [
            subprocess.Popen(["sh", "-c", f"cat {root}/* {root}/*/* {root}/*/*/* >/dev/null"])
            for root in (str(a).replace(" ", "\\ "), str(b / "commit" / cid))
        ]
        for r in readers:
            r.wait(timeout=120)
        for rel, data in files.items():
            assert (a / rel).read_bytes() == data
            assert (b / "commit" / cid / rel).read_bytes() == data


def test_unmount_leaves_no_process(
    populated: tuple[str, str, dict[str, bytes]], tmp_path: Path, env: dict[str, str]
) -> None:
    url, _, _ = populated
    mp = tmp_path / "m"
    mp.mkdir()
    run_cli("mount", url, str(mp), env=env)
    pids = daemon_pids(Path(env["XDG_STATE_HOME"]))
    try:
        assert len(pids) == 1 and alive(pids[0])
        assert os.listdir(mp) == ["cams"]
        run_cli("unmount", str(mp), env=env)
        assert not os.path.ismount(mp)
        assert not alive(pids[0])
    finally:
        subprocess.run(["fusermount3", "-uz", str(mp)], capture_output=True)


def test_sigterm_unmounts_cleanly(
    populated: tuple[str, str, dict[str, bytes]], tmp_path: Path, env: dict[str, str]
) -> None:
    url, _, _ = populated
    mp = tmp_path / "m"
    mp.mkdir()
    run_cli("mount", url, str(mp), env=env)
    pids = daemon_pids(Path(env["XDG_STATE_HOME"]))
    try:
        os.kill(pids[0], 15)
        deadline = time.monotonic() + 20
        while (os.path.ismount(mp) or alive(pids[0])) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not os.path.ismount(mp)
        assert not alive(pids[0])
    finally:
        subprocess.run(["fusermount3", "-uz", str(mp)], capture_output=True)


def test_store_outage_gives_eio_then_recovers(
    seaweed: object, s3_bucket_url: str, tmp_path: Path, env: dict[str, str]
) -> None:
    """Reads of uncached data fail with EIO (not a hang) while the S3 server is down, and work
    again once it is back, in the same mount."""
    store = Store.init(s3_bucket_url)
    repo = store.create_repo("cams", chunk_size=CHUNK)
    files = make_tree(tmp_path / "src")
    cid, _ = put(repo, "main", tmp_path / "src", "", "ingest")
    env = {**env, **{k: v for k, v in os.environ.items() if k.startswith("AWS_")}}
    with mounted(f"{s3_bucket_url}/cams@{cid}", tmp_path / "m", env) as mp:
        assert (mp / "top.txt").read_bytes() == files["top.txt"]  # metadata now cached
        seaweed.stop()  # type: ignore[attr-defined]
        try:
            started = time.monotonic()
            with pytest.raises(OSError) as info:
                (mp / "big/video.bin").read_bytes()
            assert info.value.errno == errno.EIO
            # The documented bound (docs/semantics.md, read) is a property, not a benchmark:
            # a hang would exceed it by far.
            assert time.monotonic() - started < 90
        finally:
            seaweed.start()  # type: ignore[attr-defined]
        assert (mp / "big/video.bin").read_bytes() == files["big/video.bin"]


def test_store_outage_leaves_what_is_cached_usable(
    seaweed: object, s3_bucket_url: str, tmp_path: Path, env: dict[str, str]
) -> None:
    """On a whole-store mount, with the S3 server down: snapshots read before stay readable
    (refs and listings as last read), branches take writes, and status answers; data never
    read still fails with EIO."""
    store = Store.init(s3_bucket_url)
    repo = store.create_repo("cams", chunk_size=CHUNK)
    files = make_tree(tmp_path / "src")
    cid, _ = put(repo, "main", tmp_path / "src", "", "ingest")
    env = {**env, **{k: v for k, v in os.environ.items() if k.startswith("AWS_")}}
    with mounted(s3_bucket_url, tmp_path / "m", env, "--ref-ttl", "0.2") as mp:
        snap = mp / "cams/commit" / cid[:10]
        assert (snap / "top.txt").read_bytes() == files["top.txt"]
        branch = mp / "cams/branch/main"
        (branch / "mine.txt").write_text("committed through the mount")
        run_cli("commit", str(branch), "-m", "mine", env=env)
        assert os.listdir(mp / "cams/branch") == ["main"] and os.listdir(mp / "cams/tag") == []
        seaweed.stop()  # type: ignore[attr-defined]
        try:
            time.sleep(0.5)  # past --ref-ttl: refs and listings would be read again
            assert (snap / "top.txt").read_bytes() == files["top.txt"]
            assert "cams" in os.listdir(mp) and {"top.txt", "mine.txt"} <= set(os.listdir(branch))
            assert os.listdir(mp / "cams/branch") == ["main"] and os.listdir(mp / "cams/tag") == []
            (branch / "offline.txt").write_text("written while the store was down")
            status = run_cli("status", str(branch), env=env)
            assert status.stdout.splitlines() == ["A\toffline.txt"]
            with pytest.raises(OSError) as info:
                (snap / "big/video.bin").read_bytes()
            assert info.value.errno == errno.EIO
        finally:
            seaweed.start()  # type: ignore[attr-defined]
        assert (snap / "big/video.bin").read_bytes() == files["big/video.bin"]
        run_cli("commit", str(branch), "-m", "after the outage", env=env)
    # The mount counted the store as down (so later calls did not wait), and saw it come back.
    log = "".join(p.read_text() for p in Path(env["XDG_STATE_HOME"]).glob("s3fsv/logs/*.log"))
    assert "requests that need it fail at once" in log and "the store answers again" in log
