"""A job: one input commit of a pipeline, planned, run in batches, and made one output commit.

Everything a job decides is a write-once record under ``_pipelines/jobs/<name>/<input>/``, so
a runner that dies can be succeeded by another that redoes nothing already recorded:

- ``plan``: the datums, which to run (in batches) and which to skip (unchanged since the last
  successful job, whose result it names), and which were removed;
- ``batches/<NNNNNN>``: each batch's result (``worker.run_batch``);
- ``attribution``: every datum's content id and the outputs it owns, after this job;
- ``result``: the outcome: state, counts, failed datums with their stderr, output commit.

And ``_pipelines/state/<name>`` (compare-and-swap) names the last input commit handled and
the last successful job. The output commit is made after ``attribution`` and before
``result``; a successor that finds the output branch's head made by this job already (its
provenance names the job) records that commit instead of making a second one.
"""

from __future__ import annotations

import contextlib
import os
import time
from concurrent.futures import Executor, Future
from typing import Any

from s3fsv.access.audit import record as audit_record
from s3fsv.api import FileRef, Store
from s3fsv.errors import AlreadyExists, NotFound, PreconditionFailed, S3fsvError
from s3fsv.pipelines.datums import AttributionError, find_datums
from s3fsv.pipelines.registry import NAMESPACE
from s3fsv.pipelines.spec import PipelineSpec
from s3fsv.runs.identity import code_identity
from s3fsv.runs.record import build_record
from s3fsv.store.provenance import provenance_context
from s3fsv.store.repo import utc_now


class JobNotReady(S3fsvError):
    """A job's batches are not all recorded yet (``pipeline finish`` before every shard)."""

    exit_code = 1


def job_prefix(name: str, job: str) -> str:
    return f"jobs/{name}/{job}"


def batch_name(name: str, job: str, index: int) -> str:
    return f"{job_prefix(name, job)}/batches/{index:06d}"


def read_state(store: Store, name: str) -> tuple[dict[str, Any], str | None]:
    record = store.records(NAMESPACE).find(f"state/{name}")
    if record is None:
        return {"last_input": None, "last_success": None}, None
    return record.value, record.etag


def plan_job(store: Store, spec: PipelineSpec, input_commit: str) -> dict[str, Any]:
    """The job's plan: made and recorded by the first runner to get here, read by others."""
    records = store.records(NAMESPACE)
    name = f"{job_prefix(spec.name, input_commit)}/plan"
    existing = records.find(name)
    if existing is not None:
        return existing.value
    state, _ = read_state(store, spec.name)
    previous_job = state.get("last_success")
    before: dict[str, Any] = {}
    if previous_job:
        prev_result = records.get(f"{job_prefix(spec.name, previous_job)}/result").value
        if prev_result.get("spec_version") == spec.version:
            before = records.get(f"{job_prefix(spec.name, previous_job)}/attribution").value
    datums = find_datums(store.repo(spec.input_repo), input_commit, spec.glob)
    current = {d.path: d.content for d in datums}
    skipped = sorted(p for p, c in current.items() if p in before and before[p]["content"] == c)
    to_run = sorted(p for p in current if p not in skipped)
    batches = [to_run[i : i + spec.batch] for i in range(0, len(to_run), spec.batch)]
    plan = {
        "pipeline": spec.name,
        "job": input_commit,
        "input": {"repo": spec.input_repo, "branch": spec.input_branch, "commit": input_commit},
        "spec_version": spec.version,
        "previous": previous_job if before else None,
        "datums": current,
        "batches": batches,
        "skipped": skipped,
        "removed": sorted(p for p in before if p not in current),
        "created": utc_now(),
        "created_ns": time.time_ns(),
    }
    try:
        records.create(name, plan)
    except AlreadyExists:
        return records.get(name).value
    return plan


def missing_batches(store: Store, spec: PipelineSpec, plan: dict[str, Any]) -> list[int]:
    """Indexes of the plan's batches that have no recorded result yet."""
    records = store.records(NAMESPACE)
    done = {
        n.rsplit("/", 1)[-1] for n in records.names(f"{job_prefix(spec.name, plan['job'])}/batches")
    }
    return [i for i in range(len(plan["batches"])) if f"{i:06d}" not in done]


def record_batch(store: Store, spec: PipelineSpec, job: str, result: dict[str, Any]) -> None:
    """Keep one batch's result; a result recorded first by another runner stands."""
    with contextlib.suppress(AlreadyExists):
        store.records(NAMESPACE).create(batch_name(spec.name, job, result["index"]), result)


def finish_job(
    store: Store,
    spec: PipelineSpec,
    plan: dict[str, Any],
    *,
    before_commit: Any = None,
    started_ns: int | None = None,
    code: Future[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Merge the batches of a job whose batches are all recorded, make its output commit
    (when no datum failed), and record its result; return that result. Idempotent.
    ``before_commit()`` runs just before the output branch moves (the lease renewal).
    ``code``: the run record's code identity, taken when the job's commands started (see
    ``identify``); taken at the commit when None."""
    records = store.records(NAMESPACE)
    prefix = job_prefix(spec.name, plan["job"])
    done = records.find(f"{prefix}/result")
    if done is not None:
        return done.value
    missing = missing_batches(store, spec, plan)
    if missing:
        raise JobNotReady(
            f"job {plan['job'][:12]} of {spec.name}: {len(missing)} of "
            f"{len(plan['batches'])} batches have no result yet (first: {missing[0]})"
        )
    batches = [
        records.get(batch_name(spec.name, plan["job"], i)).value
        for i in range(len(plan["batches"]))
    ]
    result: dict[str, Any] = {
        "pipeline": spec.name,
        "job": plan["job"],
        "input": plan["input"],
        "spec_version": plan["spec_version"],
        "processed": sum(len(b) for b in plan["batches"]),
        "skipped": len(plan["skipped"]),
        "removed": len(plan["removed"]),
        "failed": {},
        "invocations": sum(len(b["invocations"]) for b in batches),
        "artifacts": {},
        "output_commit": None,
        "started": plan["created"],
        "ended": "",
        "ms": 0,
    }
    owners: dict[str, str] = {}
    outputs: dict[str, Any] = {}
    try:
        for batch in batches:
            result["artifacts"].update(
                {f"{batch['index']:06d}/{p}": ref for p, ref in batch["artifacts"].items()}
            )
            for datum, info in batch["datums"].items():
                if not info["ok"]:
                    result["failed"][datum] = info["stderr"]
                    continue
                for path in info["outputs"]:
                    if path in owners and owners[path] != datum:
                        raise AttributionError(
                            f"datums {owners[path]} and {datum} both wrote the output {path}"
                        )
                    owners[path] = datum
                    outputs[path] = batch["outputs"][path]
    except AttributionError as err:
        result["state"] = "failed"
        result["error"] = str(err)
        return _record_result(store, spec, plan, result, started_ns)
    if result["failed"]:
        result["state"] = "failed"
        return _record_result(store, spec, plan, result, started_ns)
    attribution = _attribution(store, spec, plan, batches)
    with contextlib.suppress(AlreadyExists):
        records.create(f"{prefix}/attribution", attribution)
    if before_commit is not None:
        before_commit()
    identity = code.result() if code is not None else None
    result["output_commit"] = _commit_outputs(store, spec, plan, result, outputs, batches, identity)
    result["state"] = "succeeded"
    return _record_result(store, spec, plan, result, started_ns)


def _previous_attribution(store: Store, spec: PipelineSpec, plan: dict[str, Any]) -> dict[str, Any]:
    """The attribution of the job this one builds on ({} for none)."""
    if not plan["previous"]:
        return {}
    name = f"{job_prefix(spec.name, plan['previous'])}/attribution"
    return dict(store.records(NAMESPACE).get(name).value)


def _attribution(
    store: Store, spec: PipelineSpec, plan: dict[str, Any], batches: list[dict[str, Any]]
) -> dict[str, Any]:
    """Every current datum's content id and outputs: carried over for skipped ones."""
    before = _previous_attribution(store, spec, plan)
    out = {d: before[d] for d in plan["skipped"]}
    for batch in batches:
        for datum, info in batch["datums"].items():
            out[datum] = {"content": plan["datums"][datum], "outputs": sorted(info["outputs"])}
    return out


def _commit_outputs(
    store: Store,
    spec: PipelineSpec,
    plan: dict[str, Any],
    result: dict[str, Any],
    outputs: dict[str, Any],
    batches: list[dict[str, Any]],
    code: dict[str, Any] | None,
) -> str:
    repo = store.repo(spec.output_repo)
    head = repo.commit(spec.output_branch)
    made_by = head.provenance.get("pipeline", {})
    if made_by.get("name") == spec.name and made_by.get("job") == plan["job"]:
        return head.id  # a runner before us committed and died before recording it
    before = _previous_attribution(store, spec, plan)
    base = f"{spec.output_path}/" if spec.output_path else ""
    record = build_record(
        run_id=f"pipeline-{spec.name}-{plan['job'][:12]}",
        inputs=[
            {
                "name": "in",
                "repo": spec.input_repo,
                "ref": spec.input_branch,
                "commit": plan["job"],
                "path": "",
            }
        ],
        output={"repo": spec.output_repo, "branch": spec.output_branch, "path": spec.output_path},
        argv=list(spec.command),
        cwd=os.getcwd(),
        exit_code=0,
        start_ns=plan["created_ns"],
        end_ns=time.time_ns(),
        mode="local",
        code=code,
    )
    provenance = {
        **provenance_context(),
        "inputs": [{"repo": spec.input_repo, "commit": plan["job"], "via": "pipeline"}],
        "run": record,
        "pipeline": {
            "name": spec.name,
            "job": plan["job"],
            "input": {
                "repo": spec.input_repo,
                "branch": spec.input_branch,
                "commit": plan["job"],
                "glob": spec.glob or "/",
            },
            "spec_version": plan["spec_version"],
            "datums": {
                "processed": result["processed"],
                "skipped": result["skipped"],
                "removed": result["removed"],
                "failed": 0,
            },
        },
    }
    message = (
        f"pipeline {spec.name}: job for {spec.input_repo}@{plan['job'][:12]} "
        f"({result['processed']} run, {result['skipped']} skipped, {result['removed']} removed)"
    )
    with repo.transaction(
        spec.output_branch, message=message, provenance=provenance, allow_empty=True
    ) as tx:
        for datum in [*[d for b in plan["batches"] for d in b], *plan["removed"]]:
            for path in before.get(datum, {}).get("outputs", []):
                if path not in outputs:
                    _delete_if_there(tx, base + path)
        for path, ref in sorted(outputs.items()):
            tx.put(base + path, FileRef.from_json(ref))
        if spec.artifacts == "output":
            for batch in batches:
                for path, ref in sorted(batch["artifacts"].items()):
                    tx.put(base + path, FileRef.from_json(ref))
    assert tx.commit_id is not None
    return tx.commit_id


def identify(spec: PipelineSpec, pool: Executor) -> Future[dict[str, Any]]:
    """The code identity of the run record (the command's files, its Python's packages, their
    git state), taken on ``pool`` while the job's first commands start: it is what they ran,
    and taking it (a Python probe, file hashes) then costs the job no time of its own."""
    return pool.submit(code_identity, list(spec.command), os.getcwd())


def _delete_if_there(tx: Any, path: str) -> None:
    with contextlib.suppress(NotFound):  # removed by hand since: nothing to do
        tx.delete(path)


def _record_result(
    store: Store,
    spec: PipelineSpec,
    plan: dict[str, Any],
    result: dict[str, Any],
    started_ns: int | None,
) -> dict[str, Any]:
    records = store.records(NAMESPACE)
    result["ended"] = utc_now()
    result["ms"] = (time.time_ns() - (started_ns or plan["created_ns"])) // 1_000_000
    try:
        records.create(f"{job_prefix(spec.name, plan['job'])}/result", result)
    except AlreadyExists:
        return records.get(f"{job_prefix(spec.name, plan['job'])}/result").value
    audit_record(
        store,
        "pipeline.job",
        repo=spec.output_repo,
        ref=spec.output_branch,
        new=result["output_commit"],
        pipeline=spec.name,
        input=f"{spec.input_repo}@{plan['input']}",
        state=result["state"],
        processed=result["processed"],
        failed=len(result["failed"]),
    )
    _advance_state(store, spec.name, plan["job"], result["state"] == "succeeded")
    return result


def _advance_state(store: Store, name: str, job: str, succeeded: bool) -> None:
    records = store.records(NAMESPACE)
    for _ in range(20):
        state, etag = read_state(store, name)
        new = {**state, "last_input": job}
        if succeeded:
            new["last_success"] = job
        try:
            if etag is None:
                records.create(f"state/{name}", new)
            else:
                records.replace(f"state/{name}", new, etag)
            return
        except (AlreadyExists, PreconditionFailed):
            continue
    raise PreconditionFailed(f"could not record the state of pipeline {name}: too much contention")
