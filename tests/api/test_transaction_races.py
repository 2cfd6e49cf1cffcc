"""Transactions that race: disjoint changes rebase, overlapping ones are a ``Conflict`` naming
the paths and make no commit, and a block that raises commits nothing."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from api_support import new_store

import s3fsv
from s3fsv.errors import Conflict, NotFound, UsageError


def files(repo: s3fsv.Repo, ref: str) -> dict[str, bytes]:
    return {e.path: repo.read_bytes(ref, e.path) for e in repo.walk(ref) if e.kind == "file"}


@pytest.fixture
def seeded(repo: s3fsv.Repo) -> str:
    with repo.transaction("main", message="seed") as tx:
        tx.write("shared/keep", b"k")
        tx.write("shared/old", b"o")
        tx.write("dir/inner", b"i")
    assert tx.commit_id is not None
    return tx.commit_id


def test_disjoint_transactions_on_one_base_both_land(repo: s3fsv.Repo, seeded: str) -> None:
    first = repo.transaction("main", message="first")
    second = repo.transaction("main", message="second")
    assert first.base == second.base == seeded
    with first:
        first.write("shared/a", b"A")
        first.rename("shared/old", "moved/old")
    with second:  # its base is behind now: rebased onto the first's commit
        second.write("shared/b", b"B")
        second.delete("dir")
    assert second.commit_id not in (None, first.commit_id)
    assert repo.resolve("main") == second.commit_id
    assert repo.commit(second.commit_id).parents == (first.commit_id,)
    assert files(repo, "main") == {
        "shared/keep": b"k",
        "shared/a": b"A",
        "shared/b": b"B",
        "moved/old": b"o",
    }


@pytest.mark.parametrize(
    ("theirs", "mine", "paths"),
    [
        (
            lambda tx: tx.write("shared/old", b"1"),
            lambda tx: tx.write("shared/old", b"2"),
            ["shared/old"],
        ),
        (lambda tx: tx.write("dir/new", b"1"), lambda tx: tx.delete("dir"), ["dir"]),
        (
            lambda tx: tx.delete("shared/old"),
            lambda tx: tx.rename("shared", "gone"),
            ["shared"],
        ),
        (
            lambda tx: tx.write("dir/inner", b"1"),
            lambda tx: tx.write("dir/inner", b"1"),
            ["dir/inner"],
        ),
    ],
    ids=["same-file", "delete-dir-they-wrote-in", "rename-dir-they-changed", "same-bytes"],
)
def test_overlapping_transactions_conflict_and_commit_nothing(
    repo: s3fsv.Repo, seeded: str, theirs: object, mine: object, paths: list[str]
) -> None:
    loser = repo.transaction("main", message="loser")
    mine(loser)  # type: ignore[operator]
    loser.write("unrelated", b"u")
    with repo.transaction("main", message="winner") as winner:
        theirs(winner)  # type: ignore[operator]
    with pytest.raises(Conflict) as caught, loser:
        pass
    assert caught.value.paths == paths
    assert caught.value.branch == "main"
    message = str(caught.value)
    assert "\n" not in message and all(p in message for p in paths)
    assert loser.commit_id is None
    assert repo.resolve("main") == winner.commit_id
    assert "unrelated" not in files(repo, "main")
    with pytest.raises(UsageError):  # it is over
        loser.write("again", b"x")


def test_an_exception_in_the_block_commits_nothing(repo: s3fsv.Repo, seeded: str) -> None:
    with pytest.raises(KeyError), repo.transaction("main", message="half done") as tx:
        tx.write("shared/a", b"A")
        tx.delete("dir")
        raise KeyError("a bug in the caller's code")
    assert tx.commit_id is None
    assert repo.resolve("main") == seeded
    # A refused change raises inside the block too: nothing of the block is committed.
    with pytest.raises(NotFound), repo.transaction("main", message="typo") as tx:
        tx.write("shared/b", b"B")
        tx.delete("no/such/path")
    assert repo.resolve("main") == seeded
    assert files(repo, "main") == {"shared/keep": b"k", "shared/old": b"o", "dir/inner": b"i"}


def test_a_transaction_that_changes_nothing_makes_no_commit(repo: s3fsv.Repo, seeded: str) -> None:
    with repo.transaction("main", message="nothing") as tx:
        tx.write("tmp", b"x")
        tx.delete("tmp")
    assert tx.commit_id == seeded == repo.resolve("main")


def test_racing_threads_each_with_its_own_handle_all_land(tmp_path: Path) -> None:
    """Real contention: compare-and-swap loses are rebased until every commit is in."""
    new_store(tmp_path).close()
    url = (tmp_path / "store").as_uri()
    start = threading.Barrier(4)

    def committer(n: int) -> None:
        with s3fsv.open_store(url, cache_dir=tmp_path / f"cache{n}") as store:
            repo = store.repo("r")
            start.wait()
            for i in range(3):
                with repo.transaction("main", message=f"{n}.{i}") as tx:
                    tx.write(f"t{n}/{i}", f"{n}.{i}".encode())

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(committer, range(4)))  # raises what any of them raised
    with s3fsv.open_store(url, cache_dir=tmp_path / "check") as store:
        repo = store.repo("r")
        assert files(repo, "main") == {
            f"t{n}/{i}": f"{n}.{i}".encode() for n in range(4) for i in range(3)
        }
        assert len(list(repo.log("main"))) == 1 + 12  # the repo's first commit, then each
