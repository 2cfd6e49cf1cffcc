"""Running one batch: its view of the input, the command, and what it made.

A worker needs read access to the input repo and write access to the output repo's objects
only: it uploads what the command wrote and returns references (``FileRef`` JSON), and the
coordinator alone moves the output branch. The result is plain JSON so that it can come back
from another process or machine (a Dask task, a shard) and be stored as a record.

The view: ``{in}`` is a fresh directory holding only the batch's datums at their paths in the
commit, downloaded and verified; ``{out}`` is a fresh empty directory. Both are removed when
the batch ends. With ``Slots`` (the local executor), only the command itself holds a slot:
the view of the next batch is made, and the outputs of the last one uploaded, while the
commands of others run, so the commands keep every slot busy; and each command's numeric
thread pools (OpenMP, OpenBLAS, MKL...) get its share of the cores unless the environment
already sizes them, so N commands at once do not each start a thread per core.

A failed invocation is retried ``retries`` times, then its batch is split in two and each half
runs on its own, down to single datums, so one bad input does not fail its neighbours; a
single datum that still fails is reported with the tail of its stderr.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from s3fsv.api import FileRef, Repo, Store
from s3fsv.pipelines.datums import Attributor
from s3fsv.pipelines.spec import PipelineSpec

STDERR_TAIL = 2000  # bytes of a failed datum's stderr kept in its job's record
THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


@dataclass(frozen=True)
class Slots:
    """Commands at once on this machine: each invocation holds one of ``workers`` slots while
    it runs, and its thread pools are sized to ``threads`` (its share of the cores)."""

    gate: threading.Semaphore
    threads: int

    @classmethod
    def of(cls, workers: int) -> Slots:
        workers = max(1, workers)
        return cls(threading.BoundedSemaphore(workers), max(1, (os.cpu_count() or 1) // workers))

    def environ(self) -> dict[str, str]:
        """The thread-pool sizes for a command, for those the environment does not set."""
        return {var: str(self.threads) for var in THREAD_VARS if var not in os.environ}


@dataclass(frozen=True)
class BatchTask:
    """Everything a worker needs to run one batch, as JSON-able fields."""

    spec: dict[str, Any]
    input_commit: str
    datums: list[str]
    job: str
    index: int
    cwd: str


def run_batch(
    store: Store,
    spec: PipelineSpec,
    task: BatchTask,
    slots: Slots | None = None,
) -> dict[str, Any]:
    """Run ``task`` with retries and splitting; return its result record::

        {"index": I, "datums": {datum: {"ok": bool, "outputs": [path, ...], "stderr": tail}},
         "outputs": {path: FileRef JSON}, "artifacts": {path: FileRef JSON},
         "invocations": [{"datums": [...], "exit": N, "ms": N, "stdout": ref, "stderr": ref}]}

    Output paths are relative to the spec's output path. Raises only for problems that are
    not the command's (the store unreachable, an attribution clash). Each invocation of the
    invocation holds one of ``slots`` while it runs (when given)."""
    batch = _Batch(store.repo(spec.input_repo), store.repo(spec.output_repo), spec, task, slots)
    _run_split(batch, task.datums)
    return batch.result


@dataclass
class _Batch:
    inputs: Repo
    output: Repo
    spec: PipelineSpec
    task: BatchTask
    slots: Slots | None = None
    result: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.result = {
            "index": self.task.index,
            "datums": {},
            "outputs": {},
            "artifacts": {},
            "invocations": [],
        }


def _run_split(batch: _Batch, datums: list[str]) -> None:
    for _attempt in range(batch.spec.retries + 1):
        if _invoke(batch, datums):
            return
    if len(datums) > 1:
        half = len(datums) // 2
        _run_split(batch, datums[:half])
        _run_split(batch, datums[half:])
        return
    result, output = batch.result, batch.output
    last = result["invocations"][-1]
    tail = output.read_ref(FileRef.from_json(last["stderr"]))[-STDERR_TAIL:].decode(
        errors="replace"
    )
    result["datums"][datums[0]] = {"ok": False, "outputs": [], "stderr": tail}


def _invoke(batch: _Batch, datums: list[str]) -> bool:
    """One invocation of the command on ``datums``; True when it exited 0 and its outputs
    were recorded in the batch's result."""
    spec, task, result, output = batch.spec, batch.task, batch.result, batch.output
    work = Path(tempfile.mkdtemp(prefix="s3fsv-batch-"))  # mkdtemp makes it 0700
    try:
        in_dir, out_dir, logs = work / "in", work / "out", work / "logs"
        for d in (in_dir, out_dir, logs):
            d.mkdir(mode=0o700)
        _materialise(batch.inputs, task.input_commit, datums, in_dir)
        argv = [a.replace("{in}", str(in_dir)).replace("{out}", str(out_dir)) for a in spec.command]
        env = {
            **os.environ,
            "S3FSV_IN": str(in_dir),
            "S3FSV_OUT": str(out_dir),
            "S3FSV_PIPELINE": spec.name,
            "S3FSV_JOB": task.job,
            **(batch.slots.environ() if batch.slots else {}),
        }
        with (
            batch.slots.gate if batch.slots else nullcontext(),
            open(logs / "stdout", "wb") as out,
            open(logs / "stderr", "wb") as err,
        ):
            started = time.monotonic_ns()
            try:
                code = subprocess.run(
                    argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=task.cwd, env=env
                ).returncode
            except OSError as exc:  # the program is missing or not executable
                err.write(f"s3fsv: cannot run {argv[0]}: {exc.strerror}\n".encode())
                code = 127
        ms = (time.monotonic_ns() - started) // 1_000_000
        logged = output.upload(logs, "logs")
        result["invocations"].append(
            {
                "datums": datums,
                "exit": code,
                "ms": ms,
                "stdout": logged["logs/stdout"].to_json(),
                "stderr": logged["logs/stderr"].to_json(),
            }
        )
        if code != 0:
            return False
        _collect(output, datums, out_dir, result)
        return True
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _materialise(repo: Repo, commit: str, datums: list[str], root: Path) -> None:
    """Download ``datums`` of ``commit`` below ``root`` at their paths, verified."""
    files: list[str] = []
    for datum in datums:
        for entry in repo.walk(commit, datum):
            local = root / entry.path if entry.path else root
            if entry.kind == "dir":
                local.mkdir(parents=True, exist_ok=True)
            elif entry.kind == "link":
                local.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(entry.target, local)
            else:
                files.append(entry.path)
    for path, data in repo.read_many(commit, files).items():
        local = root / path
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(data)


def _collect(output: Repo, datums: list[str], out_dir: Path, result: dict[str, Any]) -> None:
    refs = output.upload(out_dir) if any(out_dir.iterdir()) else {}
    owner = Attributor(datums)
    made: dict[str, list[str]] = {d: [] for d in datums}
    for path, ref in sorted(refs.items()):
        datum = owner.datum_of(path)
        if datum is None:
            result["artifacts"][path] = ref.to_json()
        else:
            made[datum].append(path)
            result["outputs"][path] = ref.to_json()
    for datum in datums:
        result["datums"][datum] = {"ok": True, "outputs": made[datum], "stderr": ""}
