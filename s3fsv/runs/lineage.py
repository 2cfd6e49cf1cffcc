"""Lineage both ways: what a commit was made from (its recorded inputs, back to commits that
record none: ingests), what was made from it (through the store's lineage index, one listing
per commit found), and which commit and run last wrote a file.

"Made from" is what commits record in ``provenance.inputs``: the pinned inputs of a run, and
the commits a mount read before a commit of its staged writes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from s3fsv.api import CommitInfo, Store
from s3fsv.errors import NotFound
from s3fsv.runs.record import run_record
from s3fsv.store.lineage import recorded_inputs

LIST_THREADS = 8  # index listings in flight at once (each is one request to the store)


def describe(repo: str, info: CommitInfo) -> dict[str, Any]:
    """One commit as lineage shows it: repo, id, time, author, first line of its message,
    and a summary of its run record (None when it has none)."""
    record = run_record(info.provenance)
    run = None
    if record is not None:
        run = {
            "id": record.get("id"),
            "argv": record.get("argv"),
            "exit_code": record.get("exit_code"),
            "user": record.get("user"),
            "host": record.get("host"),
            "mode": record.get("mode"),
            "start": record.get("start"),
        }
        if record.get("reproduces"):
            run["reproduces"] = record["reproduces"]
    return {
        "repo": repo,
        "commit": info.id,
        "time": info.time,
        "author": info.author,
        "message": (info.message or "").splitlines()[0] if info.message else "",
        "run": run,
    }


def upstream(store: Store, repo: str, ref: str) -> dict[str, Any]:
    """The tree of what ``repo@ref`` was made from: its description, with ``inputs`` (each
    input's ``path`` and ``via``, and the same tree for that input commit) down to commits
    that record no inputs. A commit reached a second time is shown with ``"repeat": True``
    and not expanded again."""
    seen: set[tuple[str, str]] = set()

    def node(name: str, info: CommitInfo) -> dict[str, Any]:
        out = describe(name, info)
        key = (name, info.id)
        if key in seen:
            out["repeat"] = True
            return out
        seen.add(key)
        out["inputs"] = []
        for item in recorded_inputs(info.provenance):
            try:
                child = store.repo(item["repo"]).commit(item["commit"])
            except NotFound:
                gone = {"repo": item["repo"], "commit": item["commit"], "missing": True}
                out["inputs"].append({"path": item["path"], "via": item["via"], **gone})
                continue
            sub = node(item["repo"], child)
            out["inputs"].append({"path": item["path"], "via": item["via"], **sub})
        return out

    return node(repo, store.repo(repo).commit(ref))


def downstream(store: Store, repo: str, ref: str) -> list[dict[str, Any]]:
    """Every commit made from ``repo@ref``, directly or through other commits' inputs,
    breadth first: each described, with ``depth`` (1 for direct) and ``from`` (the commits
    it recorded as inputs on the way here). Reads one index listing per commit found, never
    a log."""
    start = (repo, store.repo(repo).resolve(ref))
    found: dict[tuple[str, str], dict[str, Any]] = {}
    level = [start]
    depth = 0
    with ThreadPoolExecutor(max_workers=LIST_THREADS) as pool:
        while level:
            depth += 1
            nxt: list[tuple[str, str]] = []
            listed = pool.map(lambda k: store.derived_from(*k), level)
            for parent, children in zip(level, listed, strict=True):
                for child in children:
                    if child == start:
                        continue
                    if child in found:
                        _add_from(found[child], parent)
                        continue
                    found[child] = {"depth": depth, "from": []}
                    _add_from(found[child], parent)
                    nxt.append(child)
            level = nxt
        keys = list(found)
        infos = pool.map(lambda k: store.repo(k[0]).commit(k[1]), keys)
        return [{**describe(k[0], info), **found[k]} for k, info in zip(keys, infos, strict=True)]


def _add_from(entry: dict[str, Any], parent: tuple[str, str]) -> None:
    item = {"repo": parent[0], "commit": parent[1]}
    if item not in entry["from"]:
        entry["from"].append(item)


def blame(store: Store, repo: str, ref: str, path: str) -> dict[str, Any]:
    """Which commit last changed ``path`` as of ``repo@ref``, its run record (None when a
    mount or ``put`` wrote it) and its inputs."""
    handle = store.repo(repo)
    last = next(iter(handle.log(ref, path, limit=1)), None)
    if last is None:
        raise NotFound(f"no commit of {repo}@{ref} wrote {path}")
    return {
        "path": path,
        **describe(repo, last),
        "record": run_record(last.provenance),
        "inputs": recorded_inputs(last.provenance),
    }


def reindex(store: Store, progress: Callable[[int], None] | None = None) -> tuple[int, int]:
    """Write every missing lineage index entry, reading the history of every branch and tag
    of every repo once (for commits made before the index existed, or whose writer stopped
    between moving its branch and writing them). Returns (commits read, commits with
    inputs)."""
    read = with_inputs = 0
    for name in store.repos():
        handle = store.repo(name)
        seen: set[str] = set()
        for head in _heads(handle.branches().values(), handle.tags().values()):
            for info in handle.log(head):
                if info.id in seen:
                    break  # the rest of this history was read from another ref
                seen.add(info.id)
                read += 1
                if recorded_inputs(info.provenance):
                    store.index_lineage(name, info.id)
                    with_inputs += 1
                if progress is not None:
                    progress(1)
    return read, with_inputs


def _heads(*groups: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(c for group in groups for c in group))
