"""``s3fsv import --watch`` on SeaweedFS: two importers and a ``kill -9`` import every
object exactly once; a batch left by a dead importer is finished once, whether or not it had
committed it."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections import Counter
from typing import Any

import pytest

import s3fsv
from s3fsv.ingest.cursor import NAMESPACE, Cursor
from s3fsv.ingest.importer import Importer
from s3fsv.ingest.source import parse_origin
from tests.ingest.conftest import Bucket
from tests.mounting import S3FSV

pytestmark = pytest.mark.s3

OBJECTS = 240


def _watcher(bucket: Bucket, name: str, logs: list[Any]) -> subprocess.Popen[bytes]:
    log = open(bucket.env["XDG_STATE_HOME"] + f"-{name}.log", "ab")  # noqa: SIM115
    logs.append(log)
    return subprocess.Popen(
        [*S3FSV, "import", f"s3://{bucket.name}/incoming/", "cams@main:cams", "--watch"]
        + ["--interval", "1", "--batch", "25", "--threads", "4"],
        env=bucket.env,
        stdout=log,
        stderr=log,
    )


def additions(store: s3fsv.Store) -> Counter[str]:
    """How many commits of main's history added each path."""
    repo = store.repo("cams")
    added: Counter[str] = Counter()
    for commit in repo.log("main"):
        if commit.parents:
            added.update(repo.diff(commit.parents[0], commit.id).added)
    return added


def test_two_watchers_and_a_kill9_import_each_object_once(bucket: Bucket) -> None:
    logs: list[Any] = []
    procs = [_watcher(bucket, "a", logs), _watcher(bucket, "b", logs)]

    def cameras() -> None:
        for i in range(OBJECTS):
            bucket.put(f"cam{i % 5}/{i:05d}.jpg", f"frame {i}".encode() * 30, device=f"cam{i % 5}")
            if i % 20 == 0:
                time.sleep(0.2)

    producer = threading.Thread(target=cameras)
    producer.start()
    try:
        with bucket.open() as store:
            deadline = time.monotonic() + 60
            while not additions(store) and time.monotonic() < deadline:
                time.sleep(0.3)
            procs[0].send_signal(signal.SIGKILL)  # mid-stream, maybe mid-batch
            procs[0].wait()
            procs.append(_watcher(bucket, "a2", logs))  # restarted
            producer.join()
            deadline = time.monotonic() + 180
            while len(additions(store)) < OBJECTS and time.monotonic() < deadline:
                time.sleep(1)
            added = additions(store)
    finally:
        producer.join()
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in logs:
            log.close()
    assert len(added) == OBJECTS, f"{len(added)} of {OBJECTS} imported"
    twice = [p for p, n in added.items() if n > 1]
    assert not twice, f"imported more than once: {twice[:5]}"
    with bucket.open() as store:
        claimed: Counter[str] = Counter()
        records = store.records(NAMESPACE)
        for name in records.names():
            if "/batches/" in name:
                claimed.update(list(records.get(name).value["objects"]))
        assert len(claimed) == OBJECTS and max(claimed.values()) == 1


def _dead_owner() -> dict[str, Any]:
    """An owner record naming a process of this host that has exited."""
    from s3fsv.pipelines.lease import me

    child = subprocess.Popen(["true"])
    child.wait()
    return {**me(), "pid": child.pid, "start": "1"}


def test_a_batch_of_a_dead_importer_is_finished_once(bucket: Bucket) -> None:
    for i in range(6):
        bucket.put(f"k{i}.jpg", f"object {i}".encode())
    origin = parse_origin(f"s3://{bucket.name}/incoming/")
    with bucket.open() as store:
        first = Importer(store, origin, "cams", "main")
        pending = first.pending()
        base = store.repo("cams").resolve("main")
        # A dies right after claiming the first three: nothing committed.
        claim = first.cursor.claim(pending[:3], base)
        assert claim is not None
        _give_to_the_dead(first.cursor, claim.number)
        # B dies after committing the next three, before recording the commit.
        claim2 = first.cursor.claim(pending[3:], base)
        assert claim2 is not None
        fetched, _ = first._fetch_all(claim2)
        committed = first._commit(claim2, fetched)
        _give_to_the_dead(first.cursor, claim2.number)

        successor = Importer(store, origin, "cams", "main")
        report = successor.run_once()
        assert report.imported == 3 and len(report.commits) == 1  # only the uncommitted batch
        added = additions(store)
        assert sorted(added) == [f"k{i}.jpg" for i in range(6)] and set(added.values()) == {1}
        batches = dict(successor.cursor.batches())
        assert batches[claim2.number]["commit"] == committed
        assert batches[claim.number]["commit"] == report.commits[0]
        assert successor.run_once().imported == 0


def _give_to_the_dead(cursor: Cursor, number: int) -> None:
    name = f"{cursor.id}/batches/{number:08d}"
    record = cursor.records.get(name)
    cursor.records.replace(name, {**record.value, "owner": _dead_owner()}, record.etag)


def test_watch_stops_on_sigterm(bucket: Bucket) -> None:
    logs: list[Any] = []
    proc = _watcher(bucket, "t", logs)
    try:
        time.sleep(3)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        for log in logs:
            log.close()
    assert os.path.exists(bucket.env["XDG_STATE_HOME"] + "-t.log")
