"""Concurrent committers: disjoint changes all land, in one linear history; overlapping changes
from a common base let exactly one writer win and leave the loser's staged changes intact."""

from __future__ import annotations

import multiprocessing
import queue
import sys
import threading
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from s3fsv.errors import Conflict, PreconditionFailed
from s3fsv.store.backend import open_backend
from s3fsv.store.objects import TreeEntry, sha256_hex
from s3fsv.store.repo import Repository, related_paths
from s3fsv.store.store import Store
from s3fsv.store.tree import Change

WORKERS = 8
COMMITS_EACH = 5
CHUNK = 4096


def content(worker: int, seq: int) -> bytes:
    return f"worker {worker} commit {seq}\n".encode() * (seq + 1)


def path_of(worker: int, seq: int) -> str:
    return f"w{worker}/sub/f{seq}.txt"


def stage(repo: Repository, path: str, data: bytes, mtime: int = 0) -> TreeEntry:
    """Upload ``data`` as chunks and return the file entry for ``path``."""
    chunks = tuple(repo.objects.put_bytes(data[i : i + CHUNK]) for i in range(0, len(data), CHUNK))
    name = path.rsplit("/", 1)[-1]
    return TreeEntry(name, "file", 0o644, mtime, len(data), sha256_hex(data), chunks)


def commit_worker(url: str, worker: int, barrier: Any) -> list[str]:
    """One committer with its own Store and Repository objects: several commits to ``main``."""
    repo = Store.open(url).repo("r")
    barrier.wait(timeout=60)
    out = []
    for seq in range(COMMITS_EACH):
        entry = stage(repo, path_of(worker, seq), content(worker, seq), mtime=seq)
        cid = repo.commit(
            "main",
            {path_of(worker, seq): entry},
            f"worker {worker} commit {seq}",
            provenance={"worker": worker, "seq": seq},
        )
        out.append(cid)
    return out


def check_linear_history(url: str, results: dict[int, list[str]]) -> None:
    repo = Store.open(url).repo("r")
    log = list(repo.log("main"))
    ids = [cid for cid, _ in log]
    expected = {cid for cids in results.values() for cid in cids}
    assert len(expected) == WORKERS * COMMITS_EACH
    # Walking first parents from the head reaches the root and includes every commit, once.
    assert len(ids) == WORKERS * COMMITS_EACH + 1
    assert set(ids[:-1]) == expected
    root_id, root = log[-1]
    assert root.parents == () and root.message == "Create repository"
    for (cid, commit), (parent_id, _) in zip(log, log[1:], strict=False):
        assert commit.parents == (parent_id,), f"{cid} is not linear"
        # Each commit adds exactly its own file on top of its parent: nothing lost on rebase.
        diff = repo.diff(parent_id, cid)
        worker, seq = commit.provenance["worker"], commit.provenance["seq"]
        assert (diff.added, diff.modified, diff.deleted) == ([path_of(worker, seq)], [], [])
    # Each worker's commits appear in the order it made them.
    position = {cid: i for i, cid in enumerate(reversed(ids))}
    for cids in results.values():
        assert [position[c] for c in cids] == sorted(position[c] for c in cids)
    # Every change is in the branch head, with the right bytes.
    head = ids[0]
    files = {p: e for p, e in repo.walk(head) if e.kind == "file"}
    assert sorted(files) == sorted(
        path_of(w, s) for w in range(WORKERS) for s in range(COMMITS_EACH)
    )
    for worker in range(WORKERS):
        for seq in range(COMMITS_EACH):
            entry = files[path_of(worker, seq)]
            assert repo.read_range(entry, 0, entry.size) == content(worker, seq)
    assert root_id not in expected


@pytest.fixture
def busy_switching() -> Iterator[None]:
    """Switch threads very often, so that races get a chance to show."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


@pytest.mark.usefixtures("busy_switching")
@pytest.mark.parametrize("round_", range(3))
def test_threads_with_separate_store_objects_commit_disjoint_paths(round_: int) -> None:
    url = f"memory://concurrency-{uuid.uuid4().hex}"
    Store.init(url).create_repo("r", chunk_size=CHUNK)
    barrier = threading.Barrier(WORKERS)
    results: dict[int, list[str]] = {}
    errors: list[str] = []

    def run(worker: int) -> None:
        try:
            results[worker] = commit_worker(url, worker, barrier)
        except BaseException:
            errors.append(traceback.format_exc())
            barrier.abort()

    threads = [threading.Thread(target=run, args=(w,)) for w in range(WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a committer hung"
    assert not errors, errors[0]
    check_linear_history(url, results)


def _process_main(url: str, worker: int, barrier: Any, out: Any) -> None:
    try:
        out.put((worker, commit_worker(url, worker, barrier), None))
    except BaseException:
        out.put((worker, None, traceback.format_exc()))


def test_processes_commit_disjoint_paths_to_a_file_store(tmp_path: Path) -> None:
    url = (tmp_path / "store").as_uri()
    Store.init(url).create_repo("r", chunk_size=CHUNK)
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(WORKERS)
    out = ctx.Queue()
    procs = [ctx.Process(target=_process_main, args=(url, w, barrier, out)) for w in range(WORKERS)]
    for p in procs:
        p.start()
    results: dict[int, list[str]] = {}
    try:
        for _ in procs:
            worker, cids, error = out.get(timeout=180)
            assert error is None, f"worker {worker} failed:\n{error}"
            results[worker] = cids
    except queue.Empty:
        pytest.fail("a committer process did not report")
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
    assert all(p.exitcode == 0 for p in procs)
    check_linear_history(url, results)


@pytest.mark.usefixtures("busy_switching")
@pytest.mark.parametrize("kind, increments", [("memory", 1000), ("file", 25)])
def test_compare_and_swap_from_separate_backend_objects_loses_nothing(
    kind: str, increments: int, tmp_path: Path
) -> None:
    """Threads, each with its own backend object on one store, increment a counter by
    read-then-``if_match``-put: every increment lands exactly once (no lost update)."""
    url = f"memory://cas-{uuid.uuid4().hex}" if kind == "memory" else (tmp_path / "s").as_uri()
    open_backend(url).put("counter", b"0")
    barrier = threading.Barrier(WORKERS)
    errors: list[str] = []

    def run() -> None:
        try:
            backend = open_backend(url)
            barrier.wait(timeout=60)
            done = 0
            while done < increments:
                etag = backend.head("counter").etag
                value = int(backend.get("counter"))
                try:
                    backend.put("counter", str(value + 1).encode(), if_match=etag)
                    done += 1
                except PreconditionFailed:
                    pass
        except BaseException:
            errors.append(traceback.format_exc())

    threads = [threading.Thread(target=run) for _ in range(WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors[0]
    assert int(open_backend(url).get("counter")) == WORKERS * increments


# -- overlapping changes ------------------------------------------------------------------------


@pytest.fixture
def repo() -> Repository:
    return Store.init(f"memory://conflict-{uuid.uuid4().hex}").create_repo("r", chunk_size=CHUNK)


def files_at(repo: Repository, ref: str) -> dict[str, bytes]:
    cid = repo.resolve(ref)
    return {p: repo.read_range(e, 0, e.size) for p, e in repo.walk(cid) if e.kind == "file"}


def test_same_path_from_a_common_base_one_wins_one_conflicts(repo: Repository) -> None:
    base = repo.commit("main", {"data/x": stage(repo, "data/x", b"base")}, "base")
    mine: dict[str, Change] = {"data/x": stage(repo, "data/x", b"mine")}
    theirs: dict[str, Change] = {
        "data/x": stage(repo, "data/x", b"theirs"),
        "data/y": stage(repo, "data/y", b"theirs too"),
        "old": None,
    }
    more = repo.commit("main", {"old": stage(repo, "old", b"old")}, "more", base=base)
    staged = dict(theirs)
    winner = repo.commit("main", mine, "winner", base=base)
    with pytest.raises(Conflict) as info:
        repo.commit("main", theirs, "loser", base=base)
    err = info.value
    assert err.paths == ["data/x", "old"]
    assert err.branch == "main"
    assert "data/x" in str(err) and "main" in str(err)
    assert repo.resolve("main") == winner
    assert files_at(repo, "main") == {"data/x": b"mine", "old": b"old"}
    # The loser's change set is untouched and can be committed elsewhere, intact.
    assert theirs == staged and all(theirs[k] is staged[k] for k in staged)
    repo.create_branch("rescue", more)
    repo.commit("rescue", theirs, "rescued")
    assert files_at(repo, "rescue") == {"data/x": b"theirs", "data/y": b"theirs too"}


def test_racing_threads_on_one_path_exactly_one_wins(busy_switching: None) -> None:
    url = f"memory://race-{uuid.uuid4().hex}"
    base = Store.init(url).create_repo("r", chunk_size=CHUNK).resolve("main")
    barrier = threading.Barrier(WORKERS)
    wins: list[tuple[int, str]] = []
    conflicts: dict[int, Conflict] = {}
    staged: dict[int, dict[str, Change]] = {}
    errors: list[str] = []

    def run(worker: int) -> None:
        try:
            repo = Store.open(url).repo("r")
            changes: dict[str, Change] = {
                "shared/file": stage(repo, "shared/file", f"from {worker}".encode()),
                f"own/{worker}": stage(repo, f"own/{worker}", b"mine"),
            }
            staged[worker] = changes
            barrier.wait(timeout=60)
            try:
                wins.append((worker, repo.commit("main", changes, f"w{worker}", base=base)))
            except Conflict as err:
                conflicts[worker] = err
        except BaseException:
            errors.append(traceback.format_exc())

    threads = [threading.Thread(target=run, args=(w,)) for w in range(WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors[0]
    assert len(wins) == 1 and len(conflicts) == WORKERS - 1
    ((winner, cid),) = wins
    repo = Store.open(url).repo("r")
    assert repo.resolve("main") == cid
    assert files_at(repo, "main") == {
        "shared/file": f"from {winner}".encode(),
        f"own/{winner}": b"mine",
    }
    for worker, err in conflicts.items():
        assert err.paths == ["shared/file"]
        # Each loser's staged changes still commit, intact, on a branch of their own.
        branch = f"loser-{worker}"
        repo.create_branch(branch, base)
        repo.commit(branch, staged[worker], "retry", base=base)
        assert files_at(repo, branch) == {
            "shared/file": f"from {worker}".encode(),
            f"own/{worker}": b"mine",
        }


def test_parent_and_child_paths_conflict(repo: Repository) -> None:
    base = repo.commit(
        "main", {"d/a": stage(repo, "d/a", b"a"), "e/b": stage(repo, "e/b", b"b")}, "base"
    )
    repo.commit("main", {"d/new": stage(repo, "d/new", b"n")}, "adds below d", base=base)
    with pytest.raises(Conflict) as info:
        repo.commit("main", {"d": None}, "deletes d", base=base)
    assert info.value.paths == ["d"]
    with pytest.raises(Conflict) as info:
        repo.commit("main", {"d/new/deeper": stage(repo, "deeper", b"x")}, "below", base=base)
    assert info.value.paths == ["d/new/deeper"]
    # A disjoint change from the same old base is rebased onto the new head.
    cid = repo.commit("main", {"e": None}, "deletes e", base=base)
    assert repo.resolve("main") == cid
    assert files_at(repo, "main") == {"d/a": b"a", "d/new": b"n"}


def test_related_paths_are_equal_above_or_below_never_siblings() -> None:
    theirs = {"a/b", "x", "deep/er/still"}
    mine = {"a/b", "a", "a/b/c", "a-1", "a/bc", "x/y/z", "xx", "deep/er", "deep/e", "other"}
    assert related_paths(mine, theirs) == {"a/b", "a", "a/b/c", "x/y/z", "deep/er"}
    assert related_paths(mine, set()) == set()
