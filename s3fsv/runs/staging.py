"""A run's local directory and the commit of its outputs.

Each run works in ``$XDG_STATE_HOME/s3fsv/runs/<run id>/`` (0700): ``out/`` is what the
command sees as ``{out}``, ``in/`` holds downloaded inputs, ``mnt/`` the run's own mount. A run
whose command succeeded commits ``out/`` and removes the directory. One that failed commits
nothing and keeps ``out/``, with ``run.json`` (0600) saying where it would have gone and with
which record, so that ``s3fsv run --commit ID`` can still commit it, or ``--discard ID`` drop
it. In both modes (mount or download) outputs are committed by :func:`commit_outputs`.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from s3fsv.api import Repo
from s3fsv.config import private_dir, state_dir
from s3fsv.errors import NotADirectory, NotFound, UsageError
from s3fsv.runs.spec import OutputSpec
from s3fsv.runs.views import remove_tree

PENDING = "run.json"


def runs_dir() -> Path:
    return private_dir(state_dir() / "runs")


def new_run_dir(run_id: str) -> Path:
    """The run's directory, with an empty ``out/``; both 0700."""
    top = runs_dir() / run_id
    top.mkdir(mode=0o700)
    (top / "out").mkdir(mode=0o700)
    return top


def kept_run(run_id: str) -> tuple[Path, dict[str, Any]]:
    """(directory, what ``run.json`` says) of a failed run whose outputs were kept."""
    if not run_id or "/" in run_id or run_id in (".", ".."):
        raise UsageError(f"bad run id {run_id!r}")
    top = runs_dir() / run_id
    try:
        info = json.loads((top / PENDING).read_text())
    except FileNotFoundError:
        kept = sorted(p.parent.name for p in runs_dir().glob(f"*/{PENDING}"))
        known = f" (kept runs: {', '.join(kept)})" if kept else ""
        raise NotFound(f"no kept run {run_id!r} in {runs_dir()}{known}") from None
    except (OSError, ValueError) as err:
        raise UsageError(f"cannot read {top / PENDING}: {err}") from None
    if not isinstance(info, dict):
        raise UsageError(f"{top / PENDING} is not a run description")
    return top, info


def keep(top: Path, info: Mapping[str, Any]) -> None:
    """Write ``run.json`` for a run whose outputs stay for later; drop what else it held."""
    for part in ("in", "mnt"):
        remove_tree(top / part)
    fd = os.open(top / PENDING, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(info, fh, indent=1, sort_keys=True)


def kept_lines(run_id: str, top: Path) -> list[str]:
    """What to tell a user whose run's outputs were kept: where, and how to finish them."""
    return [
        f"its outputs are kept in {top}/out",
        f"commit them anyway: s3fsv run --commit {run_id} [-m MESSAGE]",
        f"or discard them:    s3fsv run --discard {run_id}",
    ]


def discard(top: Path) -> None:
    remove_tree(top)


def check_output(repo: Repo, output: OutputSpec) -> str:
    """The head of the output branch, once checked to be a branch whose PATH is a directory
    or absent (the command writes a directory there)."""
    heads = repo.branches()
    if output.branch not in heads:
        hint = f"{output.branch} is a tag" if output.branch in repo.tags() else "no such branch"
        raise UsageError(
            f"--out {output}: outputs go to a branch ({hint}; s3fsv branch create {output.repo} "
            f"{output.branch} makes one)"
        )
    head = heads[output.branch]
    if output.path:
        try:
            kind = repo.stat(head, output.path).kind
        except (NotFound, NotADirectory):
            return head
        if kind != "dir":
            raise UsageError(f"--out {output}: {output.path} is a {kind}, not a directory")
    return head


def commit_outputs(
    repo: Repo,
    output: OutputSpec,
    out_dir: Path,
    *,
    message: str,
    provenance: Mapping[str, Any],
    say: Callable[[str], None] | None = None,
) -> str:
    """Commit ``out_dir`` to ``output`` as one commit with ``provenance``, and return its id.
    Afterwards ``output.path`` (the whole branch when it is "") holds exactly what ``out_dir``
    holds: what the branch had there and ``out_dir`` lacks is deleted (said through ``say``).
    A commit is made even when nothing changed, so that the run is recorded."""
    with repo.transaction(
        output.branch, message=message, provenance=provenance, allow_empty=True
    ) as tx:
        stale, replaced = _to_delete(repo, tx.base, output.path, out_dir)
        for path in stale + replaced:  # (a file where a directory was, or the other way)
            tx.delete(path)
        if output.path or any(out_dir.iterdir()):
            tx.upload(out_dir, output.path)
        if stale and say is not None:
            where = f"{output.path}/" if output.path else "the branch"
            say(
                f"the run's outputs replace {where} of {output.repo}@{output.branch}: "
                f"{len(stale)} path(s) there that the command did not write are deleted "
                f"(e.g. {stale[0]})"
            )
    assert tx.commit_id is not None
    return tx.commit_id


def _to_delete(repo: Repo, base: str, path: str, out_dir: Path) -> tuple[list[str], list[str]]:
    """The topmost paths below ``path`` at ``base`` that ``out_dir`` does not have (stale),
    and those it has as another kind, a directory for a file or the other way (replaced)."""
    try:
        entries = list(repo.walk(base, path))
    except (NotFound, NotADirectory):
        return [], []
    prefix = f"{path}/" if path else ""
    stale: list[str] = []
    replaced: list[str] = []
    skip: set[str] = set()
    for entry in entries:
        if entry.path == path:
            continue
        rel = entry.path[len(prefix) :]
        parent = rel.rpartition("/")[0]
        if parent and parent in skip:
            skip.add(rel)
            continue
        try:
            local_dir = stat.S_ISDIR(os.lstat(out_dir / rel).st_mode)
        except FileNotFoundError:
            stale.append(entry.path)
            skip.add(rel)
            continue
        if local_dir != (entry.kind == "dir"):
            replaced.append(entry.path)
            skip.add(rel)
    return stale, replaced
