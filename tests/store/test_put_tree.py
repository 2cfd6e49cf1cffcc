"""``put`` of a directory as a stream (``put_tree``): the commit holds exactly the local tree,
merges into what the branch already has, and stays correct when pending files force flushes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from s3fsv.errors import InvalidName
from s3fsv.store import put_tree, transfer
from s3fsv.store.repo import Repository
from s3fsv.store.store import Store


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    store = Store.init(f"file://{tmp_path}/store")
    return store.create_repo("r", chunk_size=64 * 1024)


def make_tree(root: Path) -> dict[str, bytes]:
    files = {
        "a.txt": b"alpha\n",
        "big.bin": os.urandom(200_000),  # several chunks
        "empty": b"",
        "sub/x.txt": b"x" * 100,
        "sub/deeper/y.txt": b"y" * 3000,
        "sub-2/z.txt": b"zz",
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    os.chmod(root / "a.txt", 0o600)
    (root / "sub" / "link").symlink_to("x.txt")
    (root / "emptydir").mkdir()
    return files


def content(repo: Repository, cid: str, below: str = "") -> dict[str, bytes]:
    out = {}
    for path, entry in repo.walk(cid, below):
        if entry.kind == "file":
            out[path] = b"".join(repo.read_file(entry))
    return out


def test_streamed_put_holds_the_local_tree(repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    files = make_tree(src)
    cid, n = transfer.put(repo, "main", src, "", "all")
    assert n == len(files)
    assert content(repo, cid) == files
    assert repo.stat(cid, "a.txt").mode == 0o600
    assert repo.stat(cid, "sub/link").target == "x.txt"
    assert repo.stat(cid, "emptydir").kind == "dir"
    assert [e.name for e in repo.listdir(cid, "")] == sorted(
        ["a.txt", "big.bin", "empty", "emptydir", "sub", "sub-2"]
    )


def test_streamed_put_merges_into_the_branch(repo: Repository, tmp_path: Path) -> None:
    first = tmp_path / "first"
    (first / "d").mkdir(parents=True)
    (first / "d" / "keep.txt").write_bytes(b"keep")
    (first / "d" / "change.txt").write_bytes(b"old")
    (first / "top.txt").write_bytes(b"top")
    transfer.put(repo, "main", first, "data", "first")
    second = tmp_path / "second"
    (second / "d").mkdir(parents=True)
    (second / "d" / "change.txt").write_bytes(b"new")
    (second / "d" / "added.txt").write_bytes(b"added")
    cid, _ = transfer.put(repo, "main", second, "data", "second")
    assert content(repo, cid) == {
        "data/d/keep.txt": b"keep",
        "data/d/change.txt": b"new",
        "data/d/added.txt": b"added",
        "data/top.txt": b"top",
    }
    again, _ = transfer.put(repo, "main", second, "data", "nothing new")
    assert again == cid  # no change, no commit


def test_flushes_keep_the_tree_right(
    repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(put_tree, "PENDING_MAX", 3)
    src = tmp_path / "src"
    files = {f"d{d}/e{e}/f{i}.txt": b"%d-%d-%d" % (d, e, i) for d in range(3) for e in range(3)
             for i in range(5)}  # fmt: skip
    for rel, data in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    cid, n = transfer.put(repo, "main", src, "", "all")
    assert n == len(files)
    assert content(repo, cid) == files
    packs = {e.pack for _, e in repo.walk(cid) if e.kind == "file"}
    assert len(packs) > 1  # flushed on the way: several packs, each referenced correctly


def test_a_name_that_is_not_utf8_is_refused(repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "ok.txt").write_bytes(b"ok")
    with open(os.path.join(os.fsencode(src), b"bad-\xff.txt"), "wb") as fh:
        fh.write(b"fine on disk")
    head = repo.branch_head("main").commit
    with pytest.raises(InvalidName, match="cannot upload"):
        transfer.put(repo, "main", src, "", "all")
    assert repo.branch_head("main").commit == head
