"""Downstream of a purge: pipeline outputs made from the purged files.

A pipeline's jobs record, per input commit, which outputs each datum owns (its
``attribution``, docs/pipelines.md). A purge of a repo that a pipeline reads finds the jobs
of the commits it rewrote, the datums that held purged files, and their outputs and output
commits. ``purge`` lists them; with ``--cascade`` it purges those outputs from the output
repo too (and so on down a chain of pipelines).
"""

from __future__ import annotations

from dataclasses import dataclass

from s3fsv.api import Store
from s3fsv.pipelines.registry import NAMESPACE, Registry


@dataclass(frozen=True)
class Downstream:
    """The outputs one pipeline made from purged files: in ``repo`` (on ``branch``), the
    commits that hold them and their paths (a job's output commit and those after it)."""

    pipeline: str
    repo: str
    branch: str
    commits: tuple[str, ...]
    outputs: tuple[str, ...]


def _covering(purged: set[str]) -> set[str]:
    """Every datum path that holds a purged file: the files, their directories, and ``""``
    (a whole-commit datum)."""
    out = {""}
    for path in purged:
        parts = path.split("/")
        out.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
    return out


def downstream(store: Store, repo: str, rewritten: set[str], purged: set[str]) -> list[Downstream]:
    """The pipelines reading ``repo`` whose jobs ran on a commit of ``rewritten`` (old ids)
    and gave outputs to a datum holding one of the ``purged`` paths."""
    registry = Registry(store)
    records = store.records(NAMESPACE)
    covering = _covering(purged)
    out: list[Downstream] = []
    for name in registry.names():
        spec = registry.get(name)
        if spec.input_repo != repo:
            continue
        commits: set[str] = set()
        outputs: set[str] = set()
        for job in records.children(f"jobs/{name}"):
            if job.rsplit("/", 1)[-1] not in rewritten:
                continue
            attribution = records.find(f"{job}/attribution")
            if attribution is None:
                continue
            hit = [info for datum, info in attribution.value.items() if datum in covering]
            if not hit:
                continue
            base = f"{spec.output_path}/" if spec.output_path else ""
            outputs.update(base + o for info in hit for o in info.get("outputs", ()))
            result = records.find(f"{job}/result")
            if result is not None and result.value.get("output_commit"):
                commits.add(result.value["output_commit"])
        if outputs:
            out.append(
                Downstream(
                    name,
                    spec.output_repo,
                    spec.output_branch,
                    tuple(sorted(commits)),
                    tuple(sorted(outputs)),
                )
            )
    return out
