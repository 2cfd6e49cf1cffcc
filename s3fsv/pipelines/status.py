"""What pipelines did: their jobs, newest first, and the logs of each invocation."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from s3fsv.api import FileRef, Store
from s3fsv.errors import NotFound
from s3fsv.pipelines.jobs import job_prefix, missing_batches
from s3fsv.pipelines.registry import NAMESPACE, Registry


def jobs(store: Store, name: str, limit: int = 20) -> list[dict[str, Any]]:
    """The pipeline's most recent jobs, newest first: each its result, or (still running or
    interrupted) its plan's counts with ``state: "running"``."""
    records = store.records(NAMESPACE)
    spec = Registry(store).get(name)
    rows: list[dict[str, Any]] = []
    for child in records.children(f"jobs/{name}"):
        job = child.rsplit("/", 1)[-1]
        plan = records.find(f"{job_prefix(name, job)}/plan")
        if plan is None:
            continue
        result = records.find(f"{job_prefix(name, job)}/result")
        if result is not None:
            row = dict(result.value)
        else:
            p = plan.value
            left = missing_batches(store, spec, p)
            row = {
                "pipeline": name,
                "job": job,
                "state": "running",
                "processed": sum(len(b) for i, b in enumerate(p["batches"]) if i not in left),
                "skipped": len(p["skipped"]),
                "removed": len(p["removed"]),
                "failed": {},
                "output_commit": None,
                "started": p["created"],
                "ms": None,
                "batches_left": len(left),
            }
        row["_created_ns"] = plan.value["created_ns"]
        rows.append(row)
    rows.sort(key=lambda r: r.pop("_created_ns"), reverse=True)
    return rows[:limit]


def find_job(store: Store, name: str, job: str | None, *, datum: str | None = None) -> str:
    """The full id of job ``job`` (a prefix will do); when None, of the newest job, or with
    ``datum`` of the newest job that ran that datum."""
    recent = jobs(store, name, limit=10**9)
    if not recent:
        raise NotFound(f"pipeline {name!r} has run no job yet")
    if job is None and datum is not None:
        for row in recent:
            if next(invocations(store, name, str(row["job"]), datum, read=False), None):
                return str(row["job"])
        raise NotFound(f"no job of pipeline {name!r} ran datum {datum!r}")
    if job is None:
        return str(recent[0]["job"])
    found = [r["job"] for r in recent if str(r["job"]).startswith(job.lower())]
    if len(found) != 1:
        what = "no job" if not found else "more than one job"
        raise NotFound(f"pipeline {name!r} has {what} starting with {job!r}")
    return str(found[0])


def invocations(
    store: Store, name: str, job: str, datum: str | None = None, *, read: bool = True
) -> Iterator[tuple[int, dict[str, Any], bytes, bytes]]:
    """(batch index, invocation, stdout, stderr) of a job's invocations, in batch order; only
    those that ran ``datum`` when it is given. Without ``read``, stdout and stderr are b""."""
    spec = Registry(store).get(name)
    records = store.records(NAMESPACE)
    output = store.repo(spec.output_repo)
    for batch_name in records.names(f"{job_prefix(name, job)}/batches"):
        batch = records.get(batch_name).value
        for inv in batch["invocations"]:
            if datum is not None and datum not in inv["datums"]:
                continue
            if not read:
                yield batch["index"], inv, b"", b""
                continue
            out = output.read_ref(FileRef.from_json(inv["stdout"]))
            err = output.read_ref(FileRef.from_json(inv["stderr"]))
            yield batch["index"], inv, out, err
