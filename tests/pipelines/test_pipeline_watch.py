"""Watchers: each input commit gets exactly one output commit, even with two watchers and one
of them killed with SIGKILL in the middle of a job; batches recorded before the kill are not
run again."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import s3fsv
from tests.mounting import S3FSV
from tests.pipelines.support import cli, hash_spec

DEADLINE = 120.0


def wait_until(what: str, check: object, logs: list[Path]) -> None:
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.2)
    said = "\n".join(f"{p.name}:\n{p.read_text()}" for p in logs)
    raise AssertionError(f"timed out waiting until {what}\n{said}")


def test_two_watchers_and_a_kill(
    pipeline_env: dict[str, str], store: s3fsv.Store, tmp_path: Path
) -> None:
    runlog = tmp_path / "runs.log"
    env = {**pipeline_env, "RUNLOG": str(runlog), "DATUM_SLEEP": "0.4"}
    spec = hash_spec(tmp_path, batch=1, workers=1)
    cli(env, "pipeline", "create", "-f", str(spec))
    records = store.records("pipelines")
    first = store.repo("cams").resolve("main")
    logs = [tmp_path / f"watcher{i}.log" for i in range(2)]
    watchers = [
        subprocess.Popen(
            [*S3FSV, "pipeline", "watch", "hash", "--interval", "0.3", "--quiet"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log.open("w"),
            start_new_session=True,
        )
        for log in logs
    ]
    try:
        # Kill whichever watcher holds the lease once two batches of the job are recorded.
        wait_until(
            "two batches are recorded",
            lambda: len(list(records.names(f"jobs/hash/{first}/batches"))) >= 2,
            logs,
        )
        owner = records.get("leases/hash").value["owner"]["pid"]
        victim = next(w for w in watchers if w.pid == owner)
        os.killpg(victim.pid, signal.SIGKILL)  # the watcher and the command it was running
        victim.wait()
        done_before = {
            d
            for n in records.names(f"jobs/hash/{first}/batches")
            for d in records.get(n).value["datums"]
        }
        with store.repo("cams").transaction("main", message="one more") as tx:
            tx.write("images/late.txt", b"late\n")
        second = store.repo("cams").resolve("main")
        wait_until(
            "both jobs have results",
            lambda: all(records.find(f"jobs/hash/{j}/result") for j in (first, second)),
            logs,
        )
    finally:
        for w in watchers:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(w.pid, signal.SIGTERM)
        for w in watchers:
            w.wait(timeout=60)
    survivor = next(w for w in watchers if w.pid != owner)
    assert survivor.returncode == 0, [p.read_text() for p in logs]
    jobs = Counter(
        c.provenance.get("pipeline", {}).get("job") for c in store.repo("out").log("main")
    )
    assert jobs[first] == 1 and jobs[second] == 1  # exactly one output commit each
    ran = Counter(line.split()[0] for line in runlog.read_text().splitlines())
    assert all(ran[f"f{i}.txt"] >= 1 for i in range(8))
    for datum in done_before:  # recorded before the kill: never run again
        assert ran[datum.removeprefix("images/")] == 1, (datum, ran)
    assert ran["late.txt"] == 1 and ran["f0.txt"] == 1  # the second job ran only the new file
    assert len(list(store.repo("out").walk("main"))) == 9
