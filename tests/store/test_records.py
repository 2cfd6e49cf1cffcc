"""Records: write-once creation and compare-and-swap replacement, on every backend."""

from __future__ import annotations

import threading

import pytest

from s3fsv.errors import AlreadyExists, InvalidName, NotFound, PreconditionFailed
from s3fsv.store.backend import Backend
from s3fsv.store.records import Records


def test_create_is_write_once_and_replace_needs_the_etag_read(backend: Backend) -> None:
    records = Records(backend, "pipelines")
    etag = records.create("jobs/a/claim", {"owner": "x", "n": 1})
    with pytest.raises(AlreadyExists):
        records.create("jobs/a/claim", {"owner": "y"})
    got = records.get("jobs/a/claim")
    assert got.value == {"owner": "x", "n": 1} and got.etag == etag
    new = records.replace("jobs/a/claim", {"owner": "y"}, got.etag)
    with pytest.raises(PreconditionFailed):
        records.replace("jobs/a/claim", {"owner": "z"}, got.etag)  # stale etag loses
    assert records.get("jobs/a/claim") == records.find("jobs/a/claim")
    assert records.get("jobs/a/claim").value == {"owner": "y"}
    assert records.get("jobs/a/claim").etag == new


def test_listing_missing_and_delete(backend: Backend) -> None:
    records = Records(backend, "lineage")
    for name in ("b/2", "a/1", "a/2", "c"):
        records.create(name, [name])
    assert list(records.names()) == ["a/1", "a/2", "b/2", "c"]
    assert list(records.names("a")) == ["a/1", "a/2"]
    assert list(records.children()) == ["a", "b"]
    assert records.find("nope") is None
    with pytest.raises(NotFound):
        records.get("nope")
    records.delete("a/1")
    records.delete("a/1")  # a missing record is not an error
    assert list(records.names("a")) == ["a/2"]
    # Another namespace sees none of them, and a repo named like it cannot exist.
    assert list(Records(backend, "other").names()) == []


@pytest.mark.parametrize("name", ["../x", "a//b", "a/./b", "", "a\0b"])
def test_bad_names_are_refused(name: str) -> None:
    from s3fsv.store.backend.memory import MemoryBackend

    with pytest.raises(InvalidName):
        Records(MemoryBackend(), "ns").create(name, 1)


def test_racing_creators_have_exactly_one_winner(backend: Backend, backend_kind: str) -> None:
    records = Records(backend, "claims")
    wins: list[int] = []
    lock = threading.Lock()

    def claim(i: int) -> None:
        try:
            records.create("job", {"owner": i})
        except AlreadyExists:
            return
        with lock:
            wins.append(i)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    assert records.get("job").value == {"owner": wins[0]}
