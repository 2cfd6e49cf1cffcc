"""A run's local directory and the commit of its outputs.

Each run works in ``$XDG_STATE_HOME/s3fsv/runs/<run id>/`` (0700): ``out/`` is what the
command sees as ``{out}``, ``in/`` holds downloaded inputs, ``mnt/`` the run's own mount. A run
whose command succeeded commits ``out/`` and removes the directory. One that failed commits
nothing and keeps ``out/``, with ``run.json`` (0600) saying where it would have gone and with
which record, so that ``s3fsv run --commit ID`` can still commit it, or ``--discard ID`` drop
it. In both modes (mount or download) outputs are committed by :func:`commit_outputs`.

``run.json`` is written before the command starts too, naming the s3fsv process that runs it
(``running``: pid and start time), and again once the command has ended: a run whose s3fsv was
killed, or whose machine went down, leaves its outputs as a kept run all the same. Its record
then says ``interrupted`` (and ``exit_code`` -1 when the command had not ended).
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
from s3fsv.runs.views import detach_left_mount, remove_tree

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
    """(directory, what ``run.json`` says) of a run whose outputs were kept: its command
    failed, or its s3fsv process ended before the run did. ``UsageError`` while that process
    still runs it."""
    if not run_id or "/" in run_id or run_id in (".", ".."):
        raise UsageError(f"bad run id {run_id!r}")
    top = runs_dir() / run_id
    try:
        info = _read(top / PENDING)
    except FileNotFoundError:
        kept = sorted(p.parent.name for p in runs_dir().glob(f"*/{PENDING}") if _ended(p))
        known = f" (kept runs: {', '.join(kept)})" if kept else ""
        raise NotFound(f"no kept run {run_id!r} in {runs_dir()}{known}") from None
    except (OSError, ValueError) as err:
        raise UsageError(f"cannot read {top / PENDING}: {err}") from None
    if not isinstance(info, dict):
        raise UsageError(f"{top / PENDING} is not a run description")
    pid = running_pid(info)
    if pid is not None:
        raise UsageError(f"run {run_id} is still running (s3fsv process {pid})")
    detach_left_mount(top / "mnt")  # of a run whose process was killed
    return top, info


def committed_as(repo: Repo, branch: str, run_id: str, *, depth: int = 100) -> str | None:
    """The commit, among the last ``depth`` of ``branch``, that records run ``run_id``: a run
    whose s3fsv process ended after committing but before removing its directory."""
    for info in repo.log(branch, limit=depth):
        run = info.provenance.get("run")
        if isinstance(run, dict) and run.get("id") == run_id:
            return info.id
    return None


def keep(top: Path, info: Mapping[str, Any]) -> None:
    """Write ``run.json`` for a run whose outputs stay for later; drop what else it held."""
    for part in ("in", "mnt"):
        remove_tree(top / part)
    write_pending(top, info)


def write_pending(top: Path, info: Mapping[str, Any], *, running: bool = False) -> None:
    """Replace ``run.json`` (0600) with ``info``; with ``running``, naming this process as the
    one that runs it (until this is written again without)."""
    if running:
        info = {**info, "running": {"pid": os.getpid(), "since": _started(os.getpid())}}
    tmp = top / f"{PENDING}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(info, fh, indent=1, sort_keys=True)
    os.replace(tmp, top / PENDING)


def running_pid(info: Mapping[str, Any]) -> int | None:
    """The pid of the s3fsv process that ``info`` says runs the run, while it still does (the
    same process: a pid reused since does not count); else None."""
    owner = info.get("running")
    pid = owner.get("pid") if isinstance(owner, dict) else None
    if type(pid) is not int or pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # another user's process: it exists
    since = owner.get("since") if isinstance(owner, dict) else None
    state = _stat(pid)
    if state is not None and (state[0] in ("Z", "X") or (since is not None and state[1] != since)):
        return None  # ended (a zombie its parent has not reaped yet), or a reused pid
    return pid


def _started(pid: int) -> int | None:
    state = _stat(pid)
    return None if state is None else state[1]


def _stat(pid: int) -> tuple[str, int] | None:
    """Process ``pid``'s state letter and when it started, in clock ticks since boot (fields 3
    and 22 of ``/proc/PID/stat``); None where that cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return fields[0], int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


def _read(path: Path) -> Any:
    return json.loads(path.read_text())


def _ended(pending: Path) -> bool:
    try:
        info = _read(pending)
    except (OSError, ValueError):
        return True  # (listed: asking for it says what is wrong)
    return not isinstance(info, dict) or running_pid(info) is None


def interrupted(info: Mapping[str, Any]) -> dict[str, Any]:
    """``info`` (what ``run.json`` says) as it should stay should this process end now, before
    the run does: its record says ``interrupted`` (its ``exit_code`` is -1 unless the
    command's is known already)."""
    provenance = dict(info["provenance"])
    provenance["run"] = {
        **provenance["run"],
        "interrupted": "s3fsv ended before the run did: the outputs may be incomplete",
    }
    return {**info, "provenance": provenance}


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
