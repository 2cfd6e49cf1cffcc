"""Transaction.mkdir, copy, kind and upload's shared packs, and Repo.resolve of a full id:
what the fsspec filesystem builds on. A ``file://`` store in a temporary directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import s3fsv
from s3fsv.errors import AlreadyExists, IsADirectory, NotFound
from s3fsv.store.store import Store


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[s3fsv.Repo]:
    url = (tmp_path / "store").as_uri()
    Store.init(url).create_repo("r")
    with s3fsv.open_store(url, cache_dir=tmp_path / "cache") as store:
        yield store.repo("r")


def paths(repo: s3fsv.Repo, ref: str = "main") -> list[str]:
    return [e.path for e in repo.walk(ref)]


def local_tree(root: Path) -> Path:
    (root / "d").mkdir(parents=True)
    (root / "d" / "a").write_bytes(b"a")
    (root / "top").write_bytes(b"t")
    return root


def test_writes_below_an_uploaded_directory(repo: s3fsv.Repo, tmp_path: Path) -> None:
    with repo.transaction("main", message="m") as tx:
        tx.upload(local_tree(tmp_path / "up"), "x")
        tx.write("x/d/new", b"n")  # looked up the tree id "" before
        assert tx.kind("x/d") == "dir" and tx.kind("x/d/a") == "file"
    assert paths(repo) == ["x", "x/d", "x/d/a", "x/d/new", "x/top"]


def test_moving_or_replacing_an_uploaded_directory_keeps_what_it_meant(
    repo: s3fsv.Repo, tmp_path: Path
) -> None:
    with repo.transaction("main", message="base") as tx:
        tx.write("x/d/old", b"o")
    up = local_tree(tmp_path / "up")
    with repo.transaction("main", message="m") as tx:
        tx.upload(up, "x")  # x/d exists: it keeps x/d/old
        tx.rename("x", "y")  # the whole directory moves, old file included
    assert paths(repo) == ["y", "y/d", "y/d/a", "y/d/old", "y/top"]
    with repo.transaction("main", message="m2") as tx:
        tx.delete("y")
        tx.upload(up, "y")  # a deleted directory does not come back
    assert paths(repo) == ["y", "y/d", "y/d/a", "y/top"]


def test_mkdir_makes_a_real_empty_directory(repo: s3fsv.Repo) -> None:
    with repo.transaction("main", message="m") as tx:
        assert tx.mkdir("e/f") is True
        assert tx.mkdir("e") is False  # there already (made above it)
        tx.write("file", b"")
        with pytest.raises(AlreadyExists):
            tx.mkdir("file")
    assert paths(repo) == ["e", "e/f", "file"]
    assert repo.ls("main", "e/f") == []


def test_copy_shares_content_sees_the_transaction_and_old_commits(repo: s3fsv.Repo) -> None:
    with repo.transaction("main", message="one") as tx:
        tx.write("a", b"first")
    with repo.transaction("main", message="two") as tx:
        tx.write("a", b"second")
        tx.write("new", b"pending")
        tx.copy("new", "dir/new")  # pending content is copied too
        tx.copy("a", "old-a", ref="main")  # as the branch's head has it
        tx.mkdir("dir/sub")
        with pytest.raises(IsADirectory):
            tx.copy("a", "dir")
        with pytest.raises(NotFound):
            tx.copy("missing", "b")
    assert repo.read_bytes("main", "dir/new") == b"pending"
    assert repo.read_bytes("main", "old-a") == b"first"
    assert repo.stat("main", "old-a").sha256 == repo.stat("main~1", "a").sha256
    with repo.transaction("main", message="three") as tx:
        tx.copy("dir", "dir2")

    def shape(path: str) -> list[tuple[str, str, str]]:
        return [(e.name, e.kind, e.sha256) for e in repo.ls("main", path)]

    assert (
        shape("dir2") == shape("dir") == [("new", "file", shape("dir")[0][2]), ("sub", "dir", "")]
    )


def test_separate_uploads_share_packs(repo: s3fsv.Repo, tmp_path: Path) -> None:
    files = []
    for i in range(30):
        f = tmp_path / f"f{i}"
        f.write_bytes(bytes([i]) * 1000)
        files.append(f)
    with repo.transaction("main", message="m") as tx:
        for f in files:
            tx.upload(f, f"u/{f.name}", mode=0o600)
    inner = repo._inner
    cid = repo.resolve("main")
    packs = {inner.stat(cid, f"u/{f.name}").pack for f in files}
    assert len(packs) == 1 and "" not in packs  # one pack object, not thirty
    assert {repo.stat("main", f"u/{f.name}").mode for f in files} == {0o600}


def test_resolving_a_full_id_reads_no_refs(
    repo: s3fsv.Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    cid = repo.resolve("main")

    def no_ref_reads(name: str) -> None:
        raise AssertionError(f"read ref {name}")

    monkeypatch.setattr(repo._inner.refs, "branch", no_ref_reads)
    monkeypatch.setattr(repo._inner.refs, "tag", no_ref_reads)
    assert repo.resolve(cid) == cid
    assert repo.ls(cid) == []
    with pytest.raises(NotFound):
        repo.resolve("0" * 64)
