"""A run's local directory and the commit of its outputs.

Each run works in ``$XDG_STATE_HOME/s3fsv/runs/<run id>/`` (0700): ``out/`` is what the
command sees as ``{out}``, ``in/`` holds downloaded inputs, ``mnt/`` the run's own mount. A run
whose command succeeded commits ``out/`` and removes the directory. One that failed commits
nothing and keeps ``out/``, with ``run.json`` (0600) saying where it would have gone and with
which record, so that ``s3fsv run --commit ID`` can still commit it, or ``--discard ID`` drop
it. In both modes (mount or download) outputs are committed by :func:`commit_outputs`.

``run.json`` is written before the command starts too, naming who runs it (``running``:
``owner.here()``), and again once the command has ended: a run whose s3fsv was killed leaves
its outputs as a kept run all the same, to be finished once its command has ended too. Its
record then says ``interrupted`` (and ``exit_code`` is -1 when the command had not ended). It is
not synced to disk: after a machine went down it may be unreadable, which ``--discard`` allows.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import stat
import tempfile
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from s3fsv.api import Repo
from s3fsv.config import private_dir, state_dir
from s3fsv.errors import NotADirectory, NotFound, UsageError
from s3fsv.runs import owner
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


def kept_run(run_id: str, *, discarding: bool = False) -> tuple[Path, dict[str, Any]]:
    """(directory, what ``run.json`` says) of a run whose outputs were kept: its command
    failed, or its s3fsv process ended before the run did (a mount it left is detached).
    ``UsageError`` while the run is still running. ``discarding``: a ``run.json`` that
    cannot be read (a machine that went down as it was written) does not stop it."""
    if not run_id or "/" in run_id or run_id in (".", ".."):
        raise UsageError(f"bad run id {run_id!r}")
    top = runs_dir() / run_id
    try:
        info = _read(top / PENDING)
    except FileNotFoundError:
        kept = [rid for rid, state, _ in kept_runs() if not state.startswith("running")]
        known = f" (kept runs: {', '.join(kept)})" if kept else ""
        raise NotFound(f"no kept run {run_id!r} in {runs_dir()}{known}") from None
    except (OSError, ValueError) as err:
        if not discarding:
            raise UsageError(
                f"cannot read {top / PENDING} ({err}): its outputs are in {top}/out; "
                f"s3fsv run --discard {run_id} removes them"
            ) from None
        info = {}
    if not isinstance(info, dict):
        raise UsageError(f"{top / PENDING} is not a run description")
    running = owner.still_running(info.get("running"))
    if running is not None:
        raise UsageError(f"run {run_id} is still running ({running})")
    detach_left_mount(top / "mnt")
    return top, info


@contextlib.contextmanager
def finishing(top: Path) -> Iterator[None]:
    """Held while a kept run is committed or discarded: a second ``--commit``/``--discard`` of
    the same run meanwhile is refused (``UsageError``)."""
    try:
        fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        raise NotFound(f"run {top.name} was committed or discarded meanwhile") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(f"run {top.name} is being committed or discarded already") from None
        yield
    finally:
        os.close(fd)


def committed_as(repo: Repo, branch: str, record: Mapping[str, Any]) -> str | None:
    """The commit of ``branch`` that records the run ``record`` describes, if there is one: a
    run whose s3fsv process ended after committing but before removing its directory. Only
    commits made since the run started are looked at."""
    run_id, start = record.get("id"), _moment(record.get("start"))
    if not isinstance(run_id, str) or start is None:
        return None
    for info in repo.log(branch):
        made = _moment(info.time)
        if made is not None and made < start:
            return None
        run = info.provenance.get("run")
        if isinstance(run, dict) and run.get("id") == run_id:
            return info.id
    return None


def keep(top: Path, info: Mapping[str, Any]) -> None:
    """Write ``run.json`` for a run whose outputs stay for later; drop what else it held."""
    for part in ("in", "mnt"):
        remove_tree(top / part)
    write_pending(top, info)


def write_pending(
    top: Path, info: Mapping[str, Any], *, running: Mapping[str, Any] | None = None
) -> None:
    """Replace ``run.json`` (0600) with ``info``; with ``running`` (``owner.here()``), naming
    who runs it (until this is written again without)."""
    if running is not None:
        info = {**info, "running": dict(running)}
    fd, tmp = tempfile.mkstemp(prefix=f"{PENDING}.", dir=top)  # (0600)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(info, fh, indent=1, sort_keys=True)
        os.replace(tmp, top / PENDING)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _moment(text: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None


def _read(path: Path) -> Any:
    return json.loads(path.read_text())


def interrupted(info: Mapping[str, Any]) -> dict[str, Any]:
    """``info`` (what ``run.json`` says) as it should stay should this process end now, before
    the run does: its record says ``interrupted`` (its ``exit_code`` is -1 unless the
    command's is known already)."""
    provenance = dict(info["provenance"])
    run = provenance["run"]
    why = (
        "s3fsv ended before the command did: the outputs may be incomplete"
        if run.get("exit_code") == -1
        else "s3fsv ended after the command did, before committing its outputs"
    )
    provenance["run"] = {**run, "interrupted": why}
    return {**info, "provenance": provenance}


def kept_runs() -> list[tuple[str, str, str]]:
    """Every run this user has on this machine that is not finished, oldest first, as (id,
    state, where its outputs go): ``running (...)``, ``failed (exit N)``, ``interrupted``
    (its s3fsv ended before it did), or ``unreadable`` (its ``run.json`` cannot be read)."""
    found = []
    for top in sorted(p for p in runs_dir().iterdir() if p.is_dir()):
        try:
            info = _read(top / PENDING)
            record = info["provenance"]["run"]
            where = str(OutputSpec(**info["output"]))
        except FileNotFoundError:
            continue  # (being set up: nothing ran yet)
        except (OSError, ValueError, KeyError, TypeError):
            found.append((top.name, "unreadable", "?"))
            continue
        running = owner.still_running(info.get("running"))
        if running is not None:
            state = f"running ({running})"
        elif "interrupted" in record:
            state = "interrupted"
        else:
            state = f"failed (exit {record.get('exit_code')})"
        found.append((top.name, state, where))
    return found


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
