"""Running pipelines: pending jobs in input-commit order, under the pipeline's lease.

``run_pending`` is ``pipeline run``; ``watch`` repeats it until stopped; ``work_shard`` and
``finish_sharded`` are the two halves of a sharded job (``pipeline work`` on each of N
machines, then ``pipeline finish``).

Which input commits are pending: the first-parent history of the input branch after the last
input commit this pipeline handled. A new pipeline starts with the branch head (history before
it is not back-filled); a branch rewritten so that the last handled commit is no longer in its
history (a purge) restarts from its head likewise.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from s3fsv.api import Store
from s3fsv.errors import S3fsvError, UsageError
from s3fsv.pipelines import executors
from s3fsv.pipelines.jobs import (
    finish_job,
    identify,
    missing_batches,
    plan_job,
    read_state,
    record_batch,
)
from s3fsv.pipelines.lease import Lease, LeaseLost
from s3fsv.pipelines.registry import NAMESPACE, Registry
from s3fsv.pipelines.spec import PipelineSpec
from s3fsv.pipelines.worker import BatchTask

log = logging.getLogger(__name__)

Progress = Callable[[int], None]  # called with datums just finished


@dataclass
class RunOptions:
    """How this process runs batches: ``workers`` overrides the spec's local workers."""

    workers: int = 0
    cwd: str = ""
    progress: Callable[[PipelineSpec, dict[str, Any]], Progress] | None = None


def pending_inputs(store: Store, spec: PipelineSpec) -> list[str]:
    """Input commits not handled yet, oldest first."""
    state, _ = read_state(store, spec.name)
    last = state.get("last_input")
    repo = store.repo(spec.input_repo)
    head = repo.resolve(spec.input_branch)
    if last is None:
        first = _first_job(store, spec)
        if first is None:
            return [head]
        return [first, *_after(repo, head, first)]
    return _after(repo, head, last) if last != head else []


def _first_job(store: Store, spec: PipelineSpec) -> str | None:
    """The input commit of the pipeline's first job, when one was planned but none has
    finished (its runner died): that job comes first, then the commits after it."""
    records = store.records(NAMESPACE)
    plans = []
    for child in records.children(f"jobs/{spec.name}"):
        plan = records.find(f"{child}/plan")
        if plan is not None:
            plans.append((plan.value["created_ns"], plan.value["job"]))
    return min(plans)[1] if plans else None


def _after(repo: Any, head: str, last: str) -> list[str]:
    """The first-parent commits after ``last`` up to ``head``, oldest first."""
    pending: list[str] = []
    for commit in repo.log(head):
        if commit.id == last:
            return list(reversed(pending))
        pending.append(commit.id)
    log.warning("%s is no longer on the input branch; starting from %s", last[:12], head[:12])
    return [head]


def order(specs: list[PipelineSpec]) -> list[PipelineSpec]:
    """``specs`` with each pipeline after those whose output it reads."""
    by_output = {(s.output_repo, s.output_branch): s.name for s in specs}
    done: list[PipelineSpec] = []
    seen: set[str] = set()
    names = {s.name: s for s in specs}

    def visit(spec: PipelineSpec, trail: tuple[str, ...]) -> None:
        if spec.name in seen:
            return
        if spec.name in trail:
            raise UsageError(f"pipelines feed each other in a circle: {' -> '.join(trail)}")
        upstream = by_output.get((spec.input_repo, spec.input_branch))
        if upstream is not None and upstream != spec.name:
            visit(names[upstream], (*trail, spec.name))
        seen.add(spec.name)
        done.append(spec)

    for spec in sorted(specs, key=lambda s: s.name):
        visit(spec, ())
    return done


def run_pending(
    store: Store,
    names: Iterable[str] | None,
    options: RunOptions,
    *,
    wait: bool = True,
    stop: threading.Event | None = None,
) -> list[dict[str, Any]]:
    """Run every pending job of the named pipelines (all when None), upstream pipelines first;
    return the job results. A pipeline whose lease another runner holds is waited for when
    ``wait``, else skipped. Once ``stop`` is set, no further job starts."""
    registry = Registry(store)
    specs = order([registry.get(n) for n in (names or registry.names())])
    results: list[dict[str, Any]] = []
    for spec in specs:
        lease = Lease(store.records(NAMESPACE), spec.name)
        while not lease.try_acquire():
            if not wait:
                break
            time.sleep(1.0)
        else:
            try:
                for commit in pending_inputs(store, spec):
                    if stop is not None and stop.is_set():
                        break
                    results.append(run_job(store, spec, commit, options, lease))
            finally:
                lease.release()
    return results


def run_job(
    store: Store, spec: PipelineSpec, commit: str, options: RunOptions, lease: Lease
) -> dict[str, Any]:
    """Plan (or resume) the job for ``commit``, run its missing batches, finish it."""
    started = time.time_ns()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="s3fsv-identity") as pool:
        code = identify(spec, pool)
        plan = plan_job(store, spec, commit)
        todo = missing_batches(store, spec, plan)
        tasks = [_task(spec, plan, i, options) for i in todo]
        progress = options.progress(spec, plan) if options.progress else None
        for result in _execute(store, spec, tasks, options):
            if lease.lost:
                raise LeaseLost(f"pipeline {spec.name}: another runner took over the job")
            record_batch(store, spec, plan["job"], result)
            if progress is not None:
                progress(len(result["datums"]))
        return finish_job(
            store, spec, plan, before_commit=lease.renew, started_ns=started, code=code
        )


def work_shard(
    store: Store, name: str, job: str, shard: int, shards: int, options: RunOptions
) -> int:
    """Run shard ``shard`` of ``shards`` of a job: batches whose index is ``shard`` modulo
    ``shards``, those without a result yet. Returns how many it ran. Moves no branch."""
    if not 0 <= shard < shards:
        raise UsageError(f"shard {shard}/{shards}: the shard must be from 0 to {shards - 1}")
    spec = Registry(store).get(name)
    commit = _job_commit(store, spec, job)
    plan = plan_job(store, spec, commit)
    mine = [i for i in missing_batches(store, spec, plan) if i % shards == shard]
    tasks = [_task(spec, plan, i, options) for i in mine]
    progress = options.progress(spec, plan) if options.progress else None
    for result in _execute(store, spec, tasks, options):
        record_batch(store, spec, plan["job"], result)
        if progress is not None:
            progress(len(result["datums"]))
    return len(tasks)


def finish_sharded(store: Store, name: str, job: str) -> dict[str, Any]:
    """Make the output commit of a job whose shards have all run."""
    spec = Registry(store).get(name)
    commit = _job_commit(store, spec, job)
    lease = Lease(store.records(NAMESPACE), spec.name)
    if not lease.try_acquire():
        raise LeaseLost(f"pipeline {name}: another runner holds its lease; try again later")
    try:
        state, _ = read_state(store, spec.name)
        pending = pending_inputs(store, spec)
        if commit in pending and pending[0] != commit:
            raise UsageError(
                f"job {commit[:12]} of {name} must wait for the job of {pending[0][:12]} "
                "(jobs finish in input-commit order)"
            )
        plan = plan_job(store, spec, commit)
        return finish_job(store, spec, plan, before_commit=lease.renew)
    finally:
        lease.release()


def watch(
    store: Store,
    names: list[str] | None,
    options: RunOptions,
    *,
    interval: float,
    stop: threading.Event,
    on_result: Callable[[dict[str, Any]], None] | None = None,
    on_error: Callable[[S3fsvError], None] | None = None,
) -> None:
    """Run pending jobs every ``interval`` seconds until ``stop`` is set. Errors of one round
    are logged (and given to ``on_error``) and the next round tries again."""
    while not stop.is_set():
        try:
            for result in run_pending(store, names, options, wait=False, stop=stop):
                if on_result is not None:
                    on_result(result)
        except LeaseLost as err:
            log.warning("%s", err)
            if on_error is not None:
                on_error(err)
        except S3fsvError as err:
            log.error("pipeline watch: %s", err)
            if on_error is not None:
                on_error(err)
        stop.wait(interval)


def _job_commit(store: Store, spec: PipelineSpec, job: str) -> str:
    """The input commit a job id (a commit id or unique prefix) names."""
    return store.repo(spec.input_repo).resolve(job)


def _task(spec: PipelineSpec, plan: dict[str, Any], index: int, options: RunOptions) -> BatchTask:
    return BatchTask(
        spec=spec.to_json(),
        input_commit=plan["job"],
        datums=plan["batches"][index],
        job=plan["job"],
        index=index,
        cwd=options.cwd or os.getcwd(),
    )


def _execute(
    store: Store, spec: PipelineSpec, tasks: list[BatchTask], options: RunOptions
) -> Iterable[dict[str, Any]]:
    if spec.executor == "dask":
        return executors.run_dask(store, spec, tasks, spec.address)
    return executors.run_local(store, spec, tasks, options.workers or spec.local_workers())
