"""The same spec on every executor gives the same output tree: local threads, a Dask
cluster of two worker processes, and three shards plus a finish (as Kubernetes Indexed Jobs
would run them), and a datum that always fails is reported without failing its neighbours."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

import s3fsv
from tests.pipelines.support import cli, hasher_command, toml, tree


def make(env: dict[str, str], tmp_path: Path, name: str, branch: str, **extra: object) -> None:
    cli(env, "branch", "create", "out", branch)
    spec = tmp_path / f"{name}.toml"
    command = hasher_command(tmp_path / "hasher.py")
    spec.write_text(
        toml(
            name=name,
            input="cams@main:images/*",
            output=f"out@{branch}",
            command=command,
            **{"batch": 3, **extra},
        )
    )
    cli(env, "pipeline", "create", "-f", str(spec))


def test_local_dask_and_sharded_give_identical_outputs(
    pipeline_env: dict[str, str], store: s3fsv.Store, tmp_path: Path
) -> None:
    distributed = pytest.importorskip("dask.distributed")
    env = pipeline_env
    make(env, tmp_path, "local", "a")
    cli(env, "pipeline", "run", "local")
    expected = tree(store.repo("out"), "a")
    assert len(expected) == 8 and all(p.endswith(".txt.sha") for p in expected)

    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    ) as cluster:
        make(env, tmp_path, "ondask", "b", executor="dask", address=cluster.scheduler_address)
        cli(env, "pipeline", "run", "ondask")
    assert tree(store.repo("out"), "b") == expected

    make(env, tmp_path, "sharded", "c")
    job = cli(env, "pipeline", "pending", "sharded").stdout.split()
    assert len(job) == 1
    for shard in range(3):
        ran = cli(env, "pipeline", "work", "sharded", "--job", job[0], "--shard", f"{shard}/3")
        assert "ran 1 batches" in ran.stdout  # 8 datums, batch 3: batches 0, 1, 2
    assert store.repo("out").resolve("c") == store.repo("out").resolve("main")  # not moved
    cli(env, "pipeline", "finish", "sharded", "--job", job[0][:12])
    assert tree(store.repo("out"), "c") == expected
    again = cli(env, "pipeline", "finish", "sharded", "--job", job[0])  # idempotent
    assert "succeeded" in again.stdout
    assert len(list(store.repo("out").log("c"))) == 2  # the branch's start and one job


def test_finish_before_every_shard_is_refused(pipeline_env: dict[str, str], tmp_path: Path) -> None:
    env = pipeline_env
    make(env, tmp_path, "sharded", "c")
    job = cli(env, "pipeline", "pending", "sharded").stdout.split()[0]
    cli(env, "pipeline", "work", "sharded", "--job", job, "--shard", "1/3")
    early = cli(env, "pipeline", "finish", "sharded", "--job", job, check=False)
    assert early.returncode == 1
    assert "2 of 3 batches have no result yet" in early.stderr
    assert "Traceback" not in early.stderr
    bad = cli(env, "pipeline", "work", "sharded", "--job", job, "--shard", "3/3", check=False)
    assert bad.returncode == 2 and "from 0 to 2" in bad.stderr


def test_a_failing_datum_fails_alone(
    pipeline_env: dict[str, str], store: s3fsv.Store, tmp_path: Path
) -> None:
    env = pipeline_env
    with store.repo("cams").transaction("main", message="one bad file") as tx:
        tx.write("images/bad.txt", b"cannot be processed")
    make(env, tmp_path, "hash", "a", retries=0)
    run = cli(env, "pipeline", "run", "hash", check=False)
    assert run.returncode == 1 and "failed" in run.stdout
    status = cli(env, "pipeline", "status", "hash").stdout
    assert "failed: images/bad.txt: cannot process bad.txt: bad input" in status
    assert store.repo("out").resolve("a") == store.repo("out").resolve("main")  # no commit
    records = store.records("pipelines")
    job = store.repo("cams").resolve("main")
    ok: dict[str, bool] = {}
    for name in records.names(f"jobs/hash/{job}/batches"):
        for datum, info in records.get(name).value["datums"].items():
            ok[datum] = info["ok"]
    assert ok.pop("images/bad.txt") is False
    assert len(ok) == 8 and all(ok.values())  # its neighbours in the batch succeeded
    logs = cli(env, "pipeline", "logs", "hash", "--datum", "images/bad.txt").stdout
    assert "exit 3" in logs and "bad input" in logs


# A command that proves how many invocations run at once: it registers itself in $SLOTS,
# notes how many it found there and the thread-pool size it was given (in $RUNLOG), and
# waits until it has met another invocation or every other one has finished, so it cannot
# succeed when invocations never overlap.
RENDEZVOUS = r"""
import os, sys, time
slots, done, total = os.environ["SLOTS"], os.environ["DONE"], int(os.environ["TOTAL"])
me = os.path.join(slots, str(os.getpid()))
open(me, "w").close()
deadline = time.monotonic() + 60
while len(os.listdir(slots)) < 2 and len(os.listdir(done)) < total - 1:
    if time.monotonic() > deadline:
        sys.exit("never met another invocation")
    time.sleep(0.02)
with open(os.environ["RUNLOG"], "a") as log:
    log.write(f"{len(os.listdir(slots))} {os.environ.get('OPENBLAS_NUM_THREADS')}\n")
os.rename(me, os.path.join(done, str(os.getpid())))
"""


def test_concurrent_batches_match_sequential(
    pipeline_env: dict[str, str], store: s3fsv.Store, tmp_path: Path
) -> None:
    env = pipeline_env
    make(env, tmp_path, "one", "a", batch=1, workers=1)
    make(env, tmp_path, "three", "b", batch=1, workers=3)
    cli(env, "pipeline", "run", "one")
    cli(env, "pipeline", "run", "three")
    expected = tree(store.repo("out"), "a")
    assert len(expected) == 8
    assert tree(store.repo("out"), "b") == expected
    records = store.records("pipelines")
    job = store.repo("cams").resolve("main")
    one, three = (records.get(f"jobs/{n}/{job}/attribution").value for n in ("one", "three"))
    assert one == three and len(one) == 8

    # With two workers, two invocations overlap and never more than two, and each gets half
    # the cores for its thread pools (unless the environment sizes them already).
    script = tmp_path / "rendezvous.py"
    script.write_text(RENDEZVOUS)
    slots, done, runlog = tmp_path / "slots", tmp_path / "done", tmp_path / "runlog"
    slots.mkdir()
    done.mkdir()
    cli(env, "branch", "create", "out", "c")
    spec = tmp_path / "meet.toml"
    command = [sys.executable, str(script), "{in}", "{out}"]
    spec.write_text(
        toml(name="meet", input="cams@main:images/*", output="out@c", command=command, retries=0)
    )
    cli(env, "pipeline", "create", "-f", str(spec))
    run_env = {**env, "SLOTS": str(slots), "DONE": str(done), "TOTAL": "8", "RUNLOG": str(runlog)}
    cli(run_env, "pipeline", "run", "meet", "--workers", "2")
    seen = [line.split() for line in runlog.read_text().splitlines()]
    assert len(seen) == 8 and max(int(count) for count, _ in seen) == 2
    share = os.environ.get("OPENBLAS_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // 2)))
    assert {threads for _, threads in seen} == {share}
