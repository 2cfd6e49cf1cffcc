"""Files left open for writing when a daemon died or its session ended: the staging journal
that survives the daemon, the 'interrupted' mark it leaves, what clears the mark, and the
commits it holds back."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from s3fsv.errors import Interrupted
from s3fsv.mount import staging as staging_module
from s3fsv.mount.staging import Staged, Staging
from s3fsv.mount.vfs import Filesystem, MountSpec
from s3fsv.store.cache import DiskCache
from s3fsv.store.store import Store
from s3fsv.store.transfer import put

B = "/cams/branch/main"


def test_files_open_for_writing_when_a_daemon_dies_stay_flagged_until_written(
    tmp_path: Path,
) -> None:
    slot = tmp_path / "slot"
    dead = Staging(slot)  # the daemon that will "die": never closed
    for name in ("a", "b", "c"):
        dead.put(Staged(name, "file", data=name))
    dead.writing("a", started=True)
    dead.writing("b", started=True)
    dead.writing("b", started=False)  # closed before the death: whole
    dead.writing("c", started=True)
    dead.remove("c")  # no longer staged: nothing to flag
    after = Staging(slot)
    assert after.interrupted() == {"a"}
    assert staging_module._interrupted_count(slot) == 1
    after.close()
    again = Staging(slot)  # a second remount still knows
    assert again.interrupted() == {"a"}
    again.writing("a", started=True)
    again.writing("a", started=False)  # opened and closed: not yet whole
    assert again.interrupted() == {"a"}
    again.vouch("a")  # written again, or touched
    assert again.interrupted() == set()
    again.close()
    last = Staging(slot)
    assert last.interrupted() == set()
    last.close()
    dead.close()


def test_the_writing_journal_is_compacted_keeping_what_is_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(staging_module, "WRITING_JOURNAL_MAX", 200)
    slot = tmp_path / "slot"
    staging = Staging(slot)
    staging.put(Staged("long", "file", data="long"))
    staging.writing("long", started=True)
    for n in range(100):
        staging.put(Staged(f"f{n}", "file", data=f"f{n}"))
        staging.writing(f"f{n}", started=True)
        staging.writing(f"f{n}", started=False)
    assert (slot / "writing").stat().st_size < 400
    after = Staging(slot)
    assert after.interrupted() == {"long"}
    after.close()
    staging.close()


@pytest.fixture
def fs(tmp_path: Path) -> Iterator[Filesystem]:
    store = Store.init(f"file://{tmp_path}/store")
    repo = store.create_repo("cams")
    (tmp_path / "seed").write_text("seed")
    put(repo, "main", tmp_path / "seed", "seed.txt", "seed")
    spec = MountSpec(ref_ttl=3600.0, staging_root=str(tmp_path / "state"))
    fs = Filesystem(store, spec, DiskCache(tmp_path / "cache"))
    yield fs
    fs.close()


def test_a_session_ended_with_a_file_open_for_writing_commits_nothing(fs: Filesystem) -> None:
    """SIGTERM ends the FUSE session without releases: what was open then is held back, by
    the --commit-on unmount commit too, until it is touched."""
    fh = fs.create(f"{B}/half.bin", 0o644, os.O_WRONLY)
    fs.write(fh, b"part", 0)
    done = fs.create(f"{B}/whole.bin", 0o644, os.O_WRONLY)
    fs.write(done, b"all", 0)
    fs.release(done)
    fs.writers_left_open()
    with pytest.raises(Interrupted) as info:
        fs.commit(B, "after SIGTERM")
    assert info.value.paths == ["half.bin"] and info.value.exit_code == 13
    assert fs.status(B)["interrupted"] == ["half.bin"]
    fs.utimens(f"{B}/half.bin", (1_000_000_000, 1_000_000_000))  # `touch -d`: checked, kept
    assert fs.status(B)["interrupted"] == []
    assert fs.commit(B, "kept as it is") is not None


def test_writing_a_flagged_file_again_clears_its_mark(fs: Filesystem) -> None:
    fh = fs.create(f"{B}/out.txt", 0o644, os.O_WRONLY)
    fs.write(fh, b"par", 0)
    fs.writers_left_open()
    again = fs.open(f"{B}/out.txt", os.O_WRONLY | os.O_TRUNC)
    fs.write(again, b"complete", 0)
    fs.release(again)
    fs.release(fh)
    assert fs.status(B)["interrupted"] == []
    assert fs.commit(B, "rewritten") is not None


def test_opening_for_writing_or_setting_only_atime_does_not_clear_the_mark(
    fs: Filesystem,
) -> None:
    """`open(p, 'r+').close()` and `touch -a` (an O_WRONLY open, then times with the mtime
    left out) change nothing: the file stays held back."""
    fh = fs.create(f"{B}/half.json", 0o644, os.O_WRONLY)
    fs.write(fh, b'{"faces": [1, 2,', 0)
    fs.writers_left_open()
    fs.release(fh)
    peek = fs.open(f"{B}/half.json", os.O_RDWR)
    fs.release(peek)
    touch_a = fs.open(f"{B}/half.json", os.O_WRONLY)
    fs.utimens(f"{B}/half.json", (1_000_000_000, (1 << 30) - 2))  # mtime: UTIME_OMIT
    fs.release(touch_a)
    assert fs.status(B)["interrupted"] == ["half.json"]
    with pytest.raises(Interrupted):
        fs.commit(B, "not yet")


def test_an_append_keeps_the_mark_a_write_from_the_start_clears_it(fs: Filesystem) -> None:
    fh = fs.create(f"{B}/log.txt", 0o644, os.O_WRONLY)
    fs.write(fh, b"line 1\n", 0)
    fs.writers_left_open()
    fs.release(fh)
    appender = fs.open(f"{B}/log.txt", os.O_WRONLY | os.O_APPEND)
    fs.write(appender, b"line 9\n", 0)  # O_APPEND: lands at the end, whatever the offset
    fs.release(appender)
    assert fs.status(B)["interrupted"] == ["log.txt"]  # its start may still be missing
    writer = fs.open(f"{B}/log.txt", os.O_WRONLY)
    fs.write(writer, b"line 1\n", 0)
    fs.release(writer)
    assert fs.status(B)["interrupted"] == []
