"""Files unlinked while open, driven through ``Filesystem`` with the calls libfuse makes (no
FUSE): with ``hard_remove`` off, libfuse renames such a file to ``<dir>/.fuse_hidden<N>``,
addresses it by that path while its directory exists (following renames of the directory),
passes a null path once the directory is gone, and unlinks the hidden path after the last
release when it still has one. The mount-level behaviour is in ``test_mount_model.py``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from s3fsv.errors import NotFound
from s3fsv.mount.hidden import HiddenFiles
from s3fsv.mount.overlay import BranchOverlay
from s3fsv.mount.vfs import Filesystem, MountSpec
from s3fsv.store.cache import DiskCache
from s3fsv.store.store import Store

B = "/cams/branch/main"
HIDDEN = ".fuse_hidden0000000100000001"


@pytest.fixture
def fs(tmp_path: Path) -> Iterator[Filesystem]:
    url = f"file://{tmp_path}/store"
    store = Store.init(url)
    store.create_repo("cams", chunk_size=64 * 1024)
    spec = MountSpec(ref_ttl=0.0, staging_root=str(tmp_path / "state"))
    fs = Filesystem(store, spec, DiskCache(tmp_path / "cache"))
    yield fs
    fs.close()


def overlay(fs: Filesystem) -> BranchOverlay:
    return fs._branch_overlay(B)


def unlinked_open_file(fs: Filesystem, content: bytes = b"data") -> int:
    """``d/a`` with ``content``, opened read-write, then unlinked as libfuse does it."""
    fs.mkdir(f"{B}/d", 0o755)
    fh = fs.create(f"{B}/d/a", 0o644, os.O_RDWR)
    fs.write(fh, content, 0)
    fs.rename(f"{B}/d/a", f"{B}/d/{HIDDEN}")
    return fh


def test_hidden_file_follows_its_directory(fs: Filesystem) -> None:
    fh = unlinked_open_file(fs)
    fs.rename(f"{B}/d", f"{B}/d2")
    assert fs.getattr(f"{B}/d2/{HIDDEN}").size == 4
    fs.truncate(f"{B}/d2/{HIDDEN}", 2, None)  # what libfuse sends for a path truncate
    assert fs.read(fh, 10, 0) == b"da"
    assert [name for name, _ in fs.readdir(f"{B}/d2")] == []
    fs.release(fh)
    fs.unlink(f"{B}/d2/{HIDDEN}")  # libfuse, after the last release
    assert not overlay(fs).hidden
    assert overlay(fs).status()["added"] == ["d2"]


def test_removed_directory_forgets_its_hidden_files(fs: Filesystem) -> None:
    fh = unlinked_open_file(fs)
    fs.rmdir(f"{B}/d")  # only a hidden file in it: empty, as on a local disk
    assert not overlay(fs).hidden  # libfuse will never send its unlink
    assert fs.getattr(None, fh).size == 4  # libfuse's null path, with the handle
    fs.truncate(None, 1, fh)
    assert fs.read(fh, 10, 0) == b"d"
    with pytest.raises(NotFound):
        fs.getattr(None)
    fs.release(fh)
    status = overlay(fs).status()
    assert (status["added"], status["modified"], status["deleted"]) == ([], [], [])


def test_directory_replaced_by_rename_forgets_its_hidden_files(fs: Filesystem) -> None:
    fh = unlinked_open_file(fs)
    fs.mkdir(f"{B}/e", 0o755)
    fs.rename(f"{B}/e", f"{B}/d")  # d holds only the hidden file: replaced
    assert not overlay(fs).hidden
    assert fs.read(fh, 10, 0) == b"data"
    fs.release(fh)


def test_attribute_changes_do_not_bring_a_hidden_file_back(fs: Filesystem) -> None:
    fh = unlinked_open_file(fs)
    fs.chmod(f"{B}/d/{HIDDEN}", 0o600)  # fchmod, futimens of the open descriptor
    fs.utimens(f"{B}/d/{HIDDEN}", (5, 5))
    attr = fs.getattr(f"{B}/d/{HIDDEN}")
    assert (attr.mode & 0o777, attr.mtime_ns) == (0o600, 5)
    assert [name for name, _ in fs.readdir(f"{B}/d")] == []
    assert overlay(fs).status()["added"] == ["d"]
    fs.release(fh)
    fs.unlink(f"{B}/d/{HIDDEN}")
    assert not overlay(fs).hidden


def test_hidden_files_map() -> None:
    hidden: HiddenFiles[int] = HiddenFiles({"a/x": 1, "a/b/y": 2, "ab/z": 3, "a": 4})
    hidden.move_below("a", "c/a")
    assert hidden == {"c/a/x": 1, "c/a/b/y": 2, "ab/z": 3, "a": 4}
    hidden.forget_below("c/a/b")
    assert hidden == {"c/a/x": 1, "ab/z": 3, "a": 4}
