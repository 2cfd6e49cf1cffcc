"""``s3fsv reproduce COMMIT``: run a recorded command again on the recorded input commits,
into a scratch branch, and compare its outputs with the original's, file by file.

The scratch branch (``reproduce-<commit>-<hex>``) starts at the original commit's parent, so
the re-run commits onto what the original run committed onto; the original branch never
moves. Unless kept, the scratch branch is deleted afterwards, and so are its commit's lineage
index entries (a discarded commit is downstream of nothing).
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from s3fsv.api import Repo, Store
from s3fsv.errors import NotADirectory, NotFound, UsageError
from s3fsv.runs import staging
from s3fsv.runs.identity import code_changes, code_identity
from s3fsv.runs.record import run_record
from s3fsv.runs.run import RunRequest, RunResult, run
from s3fsv.runs.spec import InputSpec, OutputSpec
from s3fsv.runs.views import Say

# What a snapshot holds at a path: ("file", sha256) or ("link", target).
Snapshot = dict[str, tuple[str, str]]


@dataclass(frozen=True)
class Comparison:
    """Paths (relative to the output path) of the original's outputs and the new ones."""

    identical: list[str] = field(default_factory=list)
    different: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # in the original only
    extra: list[str] = field(default_factory=list)  # in the re-run only

    @property
    def total(self) -> int:
        return len(self.identical) + len(self.different) + len(self.missing) + len(self.extra)

    @property
    def all_identical(self) -> bool:
        return len(self.identical) == self.total


@dataclass(frozen=True)
class Reproduction:
    original: str
    repo: str
    branch: str  # the scratch branch
    kept: bool  # whether the scratch branch (and a failed re-run's outputs) still exist
    changes: list[str]  # how the code identity differs from the record
    result: RunResult
    comparison: Comparison


def compare(old: Snapshot, new: Snapshot) -> Comparison:
    out = Comparison()
    for path in sorted(old.keys() | new.keys()):
        a, b = old.get(path), new.get(path)
        bucket = (
            out.missing
            if b is None
            else out.extra
            if a is None
            else out.identical
            if a == b
            else out.different
        )
        bucket.append(path)
    return out


def committed(repo: Repo, commit: str, path: str) -> Snapshot:
    """The files and links below ``path`` of ``commit``, by their recorded hashes (nothing
    is downloaded)."""
    try:
        entries = list(repo.walk(commit, path))
    except (NotFound, NotADirectory):
        return {}
    prefix = f"{path}/" if path else ""
    return {
        e.path[len(prefix) :]: ("file", e.sha256) if e.kind == "file" else ("link", e.target)
        for e in entries
        if e.kind != "dir" and e.path != path
    }


def local(top: Path) -> Snapshot:
    """The files and links below local directory ``top``, hashed."""
    out: Snapshot = {}
    for dirpath, _dirs, files in os.walk(top):
        for name in files + [d for d in _dirs if os.path.islink(os.path.join(dirpath, d))]:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, top).replace(os.sep, "/")
            if os.path.islink(full):
                out[rel] = ("link", os.readlink(full))
                continue
            digest = hashlib.sha256()
            with open(full, "rb") as fh:
                while block := fh.read(1 << 20):
                    digest.update(block)
            out[rel] = ("file", digest.hexdigest())
    return out


def reproduce(
    store: Store,
    repo_name: str,
    ref: str,
    *,
    keep: bool = False,
    fuse: bool = True,
    endpoint_url: str | None = None,
    s3_options: Mapping[str, Any] | None = None,
    say: Say,
    warn: Callable[[str], None] | None = None,
) -> Reproduction:
    """Re-run the run that made ``repo_name@ref`` and compare. ``warn`` gets one line per
    difference in code identity (``say`` when not given); ``endpoint_url`` and ``s3_options``
    as for :func:`s3fsv.runs.run.run`."""
    warn = warn or say
    repo = store.repo(repo_name)
    original = repo.commit(ref)
    record = run_record(original.provenance)
    if record is None:
        raise UsageError(
            f"{repo_name}@{original.id[:12]} has no run record: only commits made by "
            "s3fsv run can be reproduced"
        )
    output = record["output"]
    if output.get("repo") != repo_name:
        raise UsageError(
            f"{repo_name}@{original.id[:12]}'s run record names another output repo "
            f"({output.get('repo')!r})"
        )
    cwd = record["cwd"]
    if not os.path.isdir(cwd):
        warn(f"the recorded working directory {cwd} is gone: running in {os.getcwd()}")
        cwd = os.getcwd()
    record_files = [
        f["path"] for f in record["code"].get("files", ()) if f.get("named_by") == "--record-file"
    ]
    if record.get("interrupted"):
        warn(f"the recorded run was interrupted: {record['interrupted']}")
    now = code_identity(record["argv"], cwd, os.environ, record_files)
    changes = code_changes(record["code"], now)
    if changes:
        warn("the code differs from the recorded run:")
        for line in changes:
            warn(f"  {line}")
    branch = f"reproduce-{original.id[:12]}-{secrets.token_hex(2)}"
    repo.create_branch(branch, original.parents[0] if original.parents else original.id)
    say(f"re-running on scratch branch {repo_name}@{branch}")
    request = RunRequest(
        inputs=[InputSpec(i["name"], i["repo"], i["commit"], i["path"]) for i in record["inputs"]],
        output=OutputSpec(repo_name, branch, output["path"]),
        argv=record["argv"],
        message=f"reproduce {original.id[:12]}: {original.message.splitlines()[0]}"[:200],
        fuse=fuse,
        cwd=cwd,
        extra={"reproduces": original.id},
        stdout_to_stderr=True,  # stdout is the report's
    )
    result: RunResult | None = None
    try:
        result = run(
            store, request, say=say, endpoint_url=endpoint_url, s3_options=s3_options, code=now
        )
        old = committed(repo, original.id, output["path"])
        if result.commit is not None:
            new = committed(repo, result.commit, output["path"])
        else:
            assert result.kept is not None
            new = local(result.kept / "out")
        return Reproduction(
            original.id, repo_name, branch, keep, changes, result, compare(old, new)
        )
    finally:
        if not keep:
            _remove_scratch(store, repo, branch, result)


def _remove_scratch(store: Store, repo: Repo, branch: str, result: RunResult | None) -> None:
    if result is not None and result.commit is not None:
        store.forget_lineage(repo.name, result.commit)
    if result is not None and result.kept is not None:
        staging.discard(result.kept)  # its branch is going: it could not be committed
    repo.delete_branch(branch)


def summary(found: Comparison) -> str:
    return f"reproduced: {len(found.identical)}/{found.total} files identical"


def details(found: Comparison) -> list[str]:
    """One line per file that is not identical: ``different``, ``missing`` (the re-run did
    not write it) or ``extra`` (only the re-run wrote it)."""
    lines = [f"different: {p}" for p in found.different]
    lines += [f"missing:   {p}" for p in found.missing]
    lines += [f"extra:     {p}" for p in found.extra]
    return lines


def as_json(rep: Reproduction) -> dict[str, Any]:
    c = rep.comparison
    return {
        "original": rep.original,
        "repo": rep.repo,
        "scratch_branch": rep.branch,
        "kept": rep.kept,
        "commit": rep.result.commit,
        "exit_code": rep.result.exit_code,
        "code_changes": rep.changes,
        "identical": c.identical,
        "different": c.different,
        "missing": c.missing,
        "extra": c.extra,
        "summary": summary(c),
    }
