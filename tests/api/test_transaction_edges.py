"""Transaction cases the model test leaves out: symlinks, refusals that must leave the store
untouched, the end of a transaction, and what a commit records of each file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

import s3fsv
from s3fsv.errors import InvalidName, IsADirectory, NotADirectory, UsageError


def stored_objects(tmp_path: Path) -> set[Path]:
    return {p for p in (tmp_path / "store" / "r" / "objects").rglob("*") if p.is_file()}


def test_symlinks_are_moved_replaced_and_never_written_through(
    tmp_path: Path, repo: s3fsv.Repo
) -> None:
    local = tmp_path / "local"
    (local / "real").mkdir(parents=True)
    os.symlink("real", local / "link")
    with repo.transaction("main", message="links") as tx:
        tx.upload(local, "d")
        with pytest.raises(NotADirectory):
            tx.write("d/link/inside", b"x")  # never through a link
        with pytest.raises(NotADirectory):
            tx.rename("d/real", "d/link")  # a directory onto a link
        tx.rename("d/link", "d/moved")
        tx.write("d/real/f", b"f")
    assert repo.stat("main", "d/moved").target == "real"
    assert repo.read_bytes("main", "d/real/f") == b"f"
    with repo.transaction("main", message="replace") as tx:
        tx.write("d/moved", b"now a file")
    assert repo.stat("main", "d/moved").kind == "file"


def test_a_refused_upload_stores_nothing(tmp_path: Path, repo: s3fsv.Repo) -> None:
    with repo.transaction("main", message="base") as tx:
        tx.write("data/sub/x", b"x")
    local = tmp_path / "local"
    local.mkdir()
    (local / "big").write_bytes(os.urandom(50_000))
    (local / "sub").write_bytes(b"a file where a directory is")
    before = stored_objects(tmp_path)
    with pytest.raises(IsADirectory), repo.transaction("main", message="refused") as tx:
        tx.upload(local, "data")
    assert stored_objects(tmp_path) == before


def test_what_a_commit_records_of_each_file(tmp_path: Path, repo: s3fsv.Repo) -> None:
    local = tmp_path / "tool.sh"
    local.write_bytes(b"#!/bin/sh\n")
    local.chmod(0o750)
    os.utime(local, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    with repo.transaction("main", message="modes") as tx:
        tx.write("private", b"p", mode=0o600)
        tx.write("plain", b"p")
        tx.upload(local, "bin/tool.sh")
    assert repo.stat("main", "private").mode == 0o600
    assert repo.stat("main", "plain").mode == 0o644
    tool = repo.stat("main", "bin/tool.sh")
    assert tool.mode == stat.S_IMODE(local.stat().st_mode) == 0o750
    assert tool.mtime_ns == 1_600_000_000_000_000_000


def test_names_and_the_end_of_a_transaction(repo: s3fsv.Repo) -> None:
    tx = repo.transaction("main", message="names")
    for bad in ("a/../b", "a/./b", "a//b", "a\0b", "x" * 256):
        with pytest.raises(InvalidName):
            tx.write(bad, b"")
    for root in ("", "/"):
        with pytest.raises(UsageError):
            tx.write(root, b"")
    tx.write("a/b", b"")
    with pytest.raises(UsageError):  # a directory into itself
        tx.rename("a", "a/c/d")
    tx.write("/leading/slash/", b"ok")
    assert tx.commit() == repo.resolve("main")
    assert repo.read_bytes("main", "leading/slash") == b"ok"
    for again in (tx.commit, tx.abort, lambda: tx.write("x", b""), lambda: tx.delete("a")):
        with pytest.raises(UsageError):
            again()
    with tx:  # leaving a block of an ended transaction does nothing more
        pass
