"""The lineage index (docs/format.md 11.2): a commit that records inputs writes one write-once
entry per input after its branch moved, so that what was made from a commit is one listing
away; readers check entries against the commits they name. Also the API around it: Store.
derived_from / index_lineage / forget_lineage, Repo.download, and transactions that upload to
the root or commit with no change."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

import s3fsv
from s3fsv.errors import PreconditionFailed
from s3fsv.store import lineage
from s3fsv.store.backend import Backend
from s3fsv.store.store import Store


def test_commit_with_inputs_writes_its_entries(backend: Backend) -> None:
    store = Store(backend)
    cams, det = store.create_repo("cams"), store.create_repo("det")
    source = cams.resolve("main")
    other = det.resolve("main")
    prov = {
        "inputs": [
            {"repo": "cams", "commit": source, "via": "run", "path": "images"},
            {"repo": "det", "commit": other, "via": "branch/main"},
            {"repo": "cams", "commit": source[:12], "via": "prefix: skipped"},
            {"repo": "../x", "commit": source},
            "not a dict",
        ]
    }
    cid = det.commit("main", {}, "derived", provenance=prov)
    keys = sorted(backend.list(lineage.PREFIX))
    assert keys == sorted(
        [lineage.edge_key("cams", source, "det", cid), lineage.edge_key("det", other, "det", cid)]
    )
    assert list(lineage.derived(backend, "cams", source)) == [("det", cid)]
    with pytest.raises(PreconditionFailed):  # write-once
        backend.put(keys[0], b"x", if_none_match=True)
    assert lineage.index_commit(backend, "det", cid, prov) == 2  # idempotent
    assert lineage.input_commits(prov) == [("cams", source), ("det", other)]
    lineage.forget_commit(backend, "det", cid, prov)
    # (SeaweedFS lists the emptied "directories" as keys ending in "/": no entries.)
    assert list(lineage.derived(backend, "cams", source)) == []
    assert list(lineage.derived(backend, "det", other)) == []
    assert store.repos() == ["cams", "det"]  # the index is no repo


def test_commit_without_inputs_writes_nothing(backend: Backend) -> None:
    store = Store(backend)
    repo = store.create_repo("cams")
    repo.commit("main", {}, "plain", provenance={"user": "u"})
    assert list(backend.list(lineage.PREFIX)) == []


@pytest.fixture
def api_store(tmp_path: Path) -> s3fsv.Store:
    url = f"file://{tmp_path}/store"
    Store.init(url)
    with s3fsv.open_store(url, cache_dir=tmp_path / "cache") as store:
        yield store


def test_derived_from_checks_entries(api_store: s3fsv.Store) -> None:
    cams, det = api_store.create_repo("cams"), api_store.create_repo("det")
    with cams.transaction(message="ingest") as tx:
        tx.write("a.txt", b"a")
    source = tx.commit_id
    assert source is not None
    prov = {"inputs": [{"repo": "cams", "commit": source}]}
    with det.transaction(message="derived", provenance=prov) as tx:
        tx.write("b.txt", b"b")
    assert api_store.derived_from("cams", source) == [("det", tx.commit_id)]
    # An entry naming a commit that does not name the input is ignored: the index is a cache.
    backend = api_store._inner.backend
    liar = det.resolve("main~1")
    backend.put(lineage.edge_key("cams", source, "det", liar), b"", if_none_match=True)
    backend.put(lineage.edge_key("cams", source, "det", "f" * 64), b"", if_none_match=True)
    assert api_store.derived_from("cams", source) == [("det", tx.commit_id)]
    api_store.forget_lineage("det", tx.commit_id)
    assert api_store.derived_from("cams", source) == []
    assert api_store.index_lineage("det", tx.commit_id) == 1
    assert api_store.derived_from("cams", source) == [("det", tx.commit_id)]


def test_download_and_root_upload(api_store: s3fsv.Store, tmp_path: Path) -> None:
    repo = api_store.create_repo("r")
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "top.txt").write_bytes(b"top")
    (src / "d" / "x.bin").write_bytes(b"x" * 5000)
    (src / "link").symlink_to("top.txt")
    with repo.transaction(message="root upload") as tx:
        assert tx.upload(src, "") == 2
    assert sorted(e.path for e in repo.walk("main")) == ["d", "d/x.bin", "link", "top.txt"]
    assert repo.stat("main", "link").kind == "link"
    assert api_store.commits_read() == []
    assert repo.download("main", "d", tmp_path / "got") == 1
    assert (tmp_path / "got" / "x.bin").read_bytes() == b"x" * 5000
    assert api_store.commits_read() == [{"repo": "r", "commit": repo.resolve("main")}]
    assert repo.download("main", "top.txt", tmp_path / "one.txt") == 1
    assert hashlib.sha256((tmp_path / "one.txt").read_bytes()).hexdigest() == (
        repo.stat("main", "top.txt").sha256
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    head = repo.resolve("main")
    with repo.transaction(message="nothing", allow_empty=True) as tx:
        assert tx.upload(empty, "/") == 0
    assert tx.commit_id != head and repo.resolve("main") == tx.commit_id
    with repo.transaction(message="nothing again") as tx:
        tx.upload(empty, "")
    assert tx.commit_id == repo.resolve("main")  # without allow_empty: no commit
