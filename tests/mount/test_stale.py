"""The conflict rules of a mounted branch, without FUSE: a path another writer changed after this
mount staged or read it is a conflict; a change the view showed before the path was touched is
not; the mount's own commits never make its own later edits conflict."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from s3fsv.errors import Conflict
from s3fsv.mount.vfs import Filesystem, MountSpec
from s3fsv.store.cache import DiskCache
from s3fsv.store.repo import Repository
from s3fsv.store.store import Store
from s3fsv.store.transfer import put

B = "/cams/branch/main"


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    store = Store.init(f"file://{tmp_path}/store")
    return store.create_repo("cams", chunk_size=64 * 1024)


@pytest.fixture
def fs(tmp_path: Path, repo: Repository) -> Iterator[Filesystem]:
    """A mount whose view refreshes on every call (ref TTL 0)."""
    store = Store.open(f"file://{tmp_path}/store")
    spec = MountSpec(ref_ttl=0.0, staging_root=str(tmp_path / "state"))
    fs = Filesystem(store, spec, DiskCache(tmp_path / "cache"))
    yield fs
    fs.close()


def foreign(repo: Repository, tmp_path: Path, path: str, data: bytes) -> None:
    src = tmp_path / f"src-{path.replace('/', '-')}"
    src.write_bytes(data)
    put(repo, "main", src, path, f"foreign {path}")


def write(fs: Filesystem, path: str, data: bytes) -> None:
    fh = fs.create(f"{B}/{path}", 0o644, os.O_RDWR | os.O_TRUNC)
    fs.write(fh, data, 0)
    fs.release(fh)


def read(fs: Filesystem, path: str) -> bytes:
    fh = fs.open(f"{B}/{path}", os.O_RDONLY)
    try:
        return bytes(fs.read(fh, 1 << 20, 0))
    finally:
        fs.release(fh)


def head_file(repo: Repository, path: str) -> bytes:
    return b"".join(repo.read_file(repo.stat(repo.resolve("main"), path)))


def test_a_read_then_changed_file_written_back_conflicts_even_after_an_overwrite(
    fs: Filesystem, repo: Repository, tmp_path: Path
) -> None:
    foreign(repo, tmp_path, "x", b"x0")
    old = read(fs, "x")  # a program holds x0
    write(fs, "y", b"mine")
    foreign(repo, tmp_path, "x", b"theirs")
    fs.commit(B, "y, overwriting whatever", overwrite=True)
    write(fs, "x", old + b"+edit")  # the program writes its old copy back
    with pytest.raises(Conflict) as info:
        fs.commit(B, "x back")
    assert info.value.paths == ["x"]
    assert head_file(repo, "x") == b"theirs"


def test_the_mounts_own_commit_never_makes_its_open_file_conflict(
    fs: Filesystem, repo: Repository, tmp_path: Path
) -> None:
    foreign(repo, tmp_path, "log", b"l0")
    ov = fs._branch_overlay(B)
    before = ov._head()[0]
    fh = fs.open(f"{B}/log", os.O_RDWR | os.O_APPEND)
    try:
        fs.write(fh, b"a", 0)
        cid = ov.commit("first", None, {})
        assert cid is not None
        ov._follow(before)  # a call that still saw the head from before the commit
        assert ov.base_commit == cid and not ov.stale()
        fs.write(fh, b"b", 0)
    finally:
        fs.release(fh)
    fs.commit(B, "second")
    assert head_file(repo, "log") == b"l0ab"


def test_a_directory_that_only_needs_to_exist_ignores_changes_below_it(
    fs: Filesystem, repo: Repository, tmp_path: Path
) -> None:
    foreign(repo, tmp_path, "d/x", b"x0")
    read(fs, "d/x")
    foreign(repo, tmp_path, "d/x", b"x1")
    fs.getattr(f"{B}/d")  # the view shows x1; d/x is stale for this mount
    fs.utimens(f"{B}/d", (0, 123))
    write(fs, "d/new", b"n")
    fs.commit(B, "new file in d")
    assert head_file(repo, "d/new") == b"n" and head_file(repo, "d/x") == b"x1"


def test_a_change_shown_before_it_was_touched_is_no_conflict(
    fs: Filesystem, repo: Repository, tmp_path: Path
) -> None:
    fs.getattr(B)
    foreign(repo, tmp_path, "r.txt", b"theirs\n")
    assert read(fs, "r.txt") == b"theirs\n"
    fh = fs.open(f"{B}/r.txt", os.O_RDWR | os.O_APPEND)
    fs.write(fh, b"mine\n", 0)
    fs.release(fh)
    fs.commit(B, "edit")
    assert head_file(repo, "r.txt") == b"theirs\nmine\n"


def test_a_refresh_that_started_before_a_commit_does_not_undo_it(
    repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A head fetched before this mount's commit, stored after it, would show the branch as it
    was before the commit until the next refresh (a minute here)."""
    spec = MountSpec(ref_ttl=60.0, staging_root=str(tmp_path / "state-60"))
    fs = Filesystem(Store.open(f"file://{tmp_path}/store"), spec, DiskCache(tmp_path / "c60"))
    try:
        _refresh_during_commit(fs, repo, monkeypatch)
    finally:
        fs.close()


def _refresh_during_commit(
    fs: Filesystem, repo: Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs.getattr(B)
    state = fs._state("cams")
    old_head = repo.branch_head("main")
    fetching, committed = threading.Event(), threading.Event()

    def slow_head(name: str) -> Any:
        fetching.set()
        assert committed.wait(10)
        return old_head  # what the store said before the commit

    write(fs, "new.txt", b"new")
    with state.lock:
        state.heads.clear()
    monkeypatch.setattr(state.repo, "branch_head", slow_head)
    refresh = threading.Thread(target=fs._snapshot, args=("cams", "branch", "main"))
    refresh.start()
    assert fetching.wait(10)
    monkeypatch.undo()
    cid = fs.commit(B, "new file")
    committed.set()
    refresh.join(10)
    with state.lock:
        assert state.heads.get("main") == cid
    assert read(fs, "new.txt") == b"new"


def test_a_command_first_seen_during_a_commit_goes_into_the_next_one(
    fs: Filesystem, repo: Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Provenance, not conflicts, but the same machinery: what a commit records is what was
    staged when it started; a writer that shows up while it uploads is kept for the next."""
    import s3fsv.mount.overlay_commit as overlay_commit

    fs.caller_pid = lambda: os.getpid()
    write(fs, "a.txt", b"a")
    overlay = fs._overlays[("cams", "main")]
    real_upload = overlay_commit.upload_files

    def upload_meanwhile(*args: Any, **kwargs: Any) -> Any:
        overlay.record_command("late-writer --during-upload")
        return real_upload(*args, **kwargs)

    monkeypatch.setattr(overlay_commit, "upload_files", upload_meanwhile)
    first = fs.commit(B, "first")
    monkeypatch.setattr(overlay_commit, "upload_files", real_upload)
    assert first is not None
    assert "late-writer --during-upload" not in repo.commit_object(first).provenance["commands"]
    write(fs, "b.txt", b"b")
    second = fs.commit(B, "second")
    assert second is not None
    assert "late-writer --during-upload" in repo.commit_object(second).provenance["commands"]


def test_overwrite_right_after_a_conflict_needs_no_wait_for_the_ref_ttl(
    tmp_path: Path, repo: Repository
) -> None:
    """The conflict refreshes the view: `commit --overwrite` just after it replaces the
    versions the user was told about, with a view that would otherwise be an hour old."""
    store = Store.open(f"file://{tmp_path}/store")
    spec = MountSpec(ref_ttl=3600.0, staging_root=str(tmp_path / "state"))
    fs = Filesystem(store, spec, DiskCache(tmp_path / "cache"))
    try:
        foreign(repo, tmp_path, "x", b"x0")
        assert read(fs, "x") == b"x0"
        write(fs, "x", b"mine")
        foreign(repo, tmp_path, "x", b"theirs")
        with pytest.raises(Conflict):
            fs.commit(B, "mine")
        fs.commit(B, "mine, knowingly", overwrite=True)
        assert head_file(repo, "x") == b"mine"
    finally:
        fs.close()
