"""What an API transaction's commit records: who, where, with which tool and command, and
``inputs``, the commits read through the same Store handle (docs/format.md, section 11)."""

from __future__ import annotations

import getpass
import os
import socket
from pathlib import Path
from typing import Any

import pytest
from api_support import new_store

import s3fsv
from s3fsv.errors import UsageError
from s3fsv.store.provenance import command_of


def commit_files(repo: s3fsv.Repo, message: str, files: dict[str, bytes]) -> str:
    with repo.transaction("main", message=message) as tx:
        for path, data in files.items():
            tx.write(path, data)
    assert tx.commit_id is not None
    return tx.commit_id


def test_a_transaction_records_who_where_how_and_what_was_read(
    tmp_path: Path, store: s3fsv.Store
) -> None:
    other = store.create_repo("other")
    repo = store.repo("r")
    first = commit_files(repo, "one", {"in/a": b"a", "in/b": b"b"})
    second = commit_files(repo, "two", {"in/c": b"c"})
    theirs = commit_files(other, "theirs", {"x": b"x"})
    # Commits are inputs once files of them are read, in the order first read.
    assert store.commits_read() == []
    repo.read_bytes(first, "in/a")
    other.read_many("main", ["x"])
    with repo.open(second[:10], "in/c") as fh:
        fh.read()
    repo.read_bytes(first, "in/b")  # read before: listed once
    repo.stat("main", "in")  # listings are not reads of files
    list(repo.walk(first))
    with repo.transaction("main", message="results", provenance={"run": "r-17"}) as tx:
        tx.write("out/result", b"r")
    info = repo.commit(tx.commit_id or "")
    prov: dict[str, Any] = dict(info.provenance)
    assert prov.pop("inputs") == [
        {"repo": "r", "commit": first, "via": "api"},
        {"repo": "other", "commit": theirs, "via": "api"},
        {"repo": "r", "commit": second, "via": "api"},
    ]
    commands = prov.pop("commands")
    assert commands == [command_of(os.getpid())]
    assert commands[0].startswith(f"cd {os.getcwd()} && ") and "pytest" in commands[0]
    assert prov == {
        "user": getpass.getuser(),
        "host": socket.gethostname(),
        "tool": f"s3fsv {s3fsv.__version__}",
        "run": "r-17",
    }
    assert info.author == f"{getpass.getuser()}@{socket.gethostname()}"
    assert info.message == "results" and info.parents == (second,)


def test_reads_through_another_handle_are_not_inputs(tmp_path: Path) -> None:
    with new_store(tmp_path) as writer:
        repo = writer.repo("r")
        first = commit_files(repo, "one", {"a": b"a"})
        with s3fsv.open_store(writer.url, cache_dir=tmp_path / "other-cache") as reader:
            reader.repo("r").read_bytes(first, "a")
        commit_files(repo, "two", {"b": b"b"})
        assert repo.commit("main").provenance["inputs"] == []


def test_provenance_a_commit_cannot_hold_is_refused_before_anything_is_done(
    repo: s3fsv.Repo,
) -> None:
    head = repo.resolve("main")
    for bad in (
        {"score": 0.5},
        {"nested": {"deeper": [1, 2, float("nan")]}},
        {1: "not a string key"},
        {"when": object()},
        {"text": "\udc80"},
    ):
        with pytest.raises(UsageError) as caught:
            repo.transaction("main", message="m", provenance=bad)  # type: ignore[arg-type]
        assert "\n" not in str(caught.value)
    for message in ("", "  ", "\udc80"):
        with pytest.raises(UsageError):
            repo.transaction("main", message=message)
    assert repo.resolve("main") == head
    with repo.transaction("main", message="m", provenance={"t": ("a", 1, None, True)}) as tx:
        tx.write("f", b"1")
    assert repo.commit("main").provenance["t"] == ["a", 1, None, True]


def test_commit_info_is_a_copy(repo: s3fsv.Repo) -> None:
    commit_files(repo, "one", {"a": b"a"})
    info = repo.commit("main")
    info.provenance["user"] = "someone else"  # type: ignore[index]
    info.provenance["inputs"].append("x")  # type: ignore[index]
    again = repo.commit("main")
    assert again.provenance["user"] == getpass.getuser()
    assert again.provenance["inputs"] == []
