"""``s3fsv run``: a command on pinned inputs, its outputs committed with a run record.

Order: resolve every input to a commit and check the output branch and the command (so a
mistake fails before anything starts); start taking the code identity (in threads, while
the inputs are being shown); show the inputs (mount or download); run the command; take the
inputs away; then commit the outputs on exit 0, or keep them and say how to commit or discard
them otherwise. The files of the code identity (hashes, git state) are taken before the
command starts; the probe of a Python command's interpreter, a process of its own started as
early, may still be running then, and is waited for once the command has ended.
"""

from __future__ import annotations

import logging
import os
import platform
import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from s3fsv.api import Store
from s3fsv.errors import NotADirectory, NotFound, UsageError
from s3fsv.runs import owner, staging
from s3fsv.runs.execute import check_command, run_command
from s3fsv.runs.identity import (
    PLACEHOLDER,
    code_files,
    identity_of,
    python_identity,
    python_interpreter,
)
from s3fsv.runs.record import build_record, new_run_id
from s3fsv.runs.spec import (
    InputSpec,
    OutputSpec,
    PinnedInput,
    check_inputs,
    environment,
    substitute,
)
from s3fsv.runs.views import Say, StoreMount, input_views

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunRequest:
    """What to run. ``fuse`` False downloads the inputs instead of mounting them."""

    inputs: Sequence[InputSpec]
    output: OutputSpec
    argv: Sequence[str]
    message: str | None = None
    record_files: Sequence[str] = ()
    fuse: bool = True
    cwd: str | None = None  # default: this process's working directory
    stdout_to_stderr: bool = False  # the command's stdout goes to stderr (reproduce reports)
    extra: Mapping[str, Any] = field(default_factory=dict)  # further record keys


@dataclass(frozen=True)
class RunResult:
    run_id: str
    exit_code: int
    record: dict[str, Any]
    commit: str | None  # the commit made, on success
    kept: Path | None  # the run's directory, kept because the command failed


def pin_inputs(store: Store, inputs: Sequence[InputSpec]) -> list[PinnedInput]:
    """Each input resolved to the full id of the commit it is read from, its path checked to
    exist there."""
    pinned = []
    for spec in inputs:
        repo = store.repo(spec.repo)
        commit = repo.resolve(spec.ref)
        if spec.path:
            try:
                repo.stat(commit, spec.path)
            except (NotFound, NotADirectory):
                raise NotFound(
                    f"--in {spec}: no {spec.path} in {spec.repo}@{commit[:12]}"
                ) from None
        pinned.append(PinnedInput(spec, commit))
    return pinned


def run(
    store: Store | Callable[[], Store],
    request: RunRequest,
    *,
    say: Say,
    endpoint_url: str | None = None,
    store_url: str | None = None,
    code: Mapping[str, Any] | None = None,
    s3_options: Mapping[str, Any] | None = None,
) -> RunResult:
    """Run ``request`` and commit its outputs when the command exits 0.

    ``store`` is an open store, or a function that opens it (at ``store_url``; it is closed
    at the end). ``endpoint_url`` and ``s3_options`` (a gateway's credentials) are how the
    run's own mount reaches the store. ``code``, when the caller has taken it already
    (reproduce), is the code identity to record. Whatever fails before the command starts
    leaves nothing behind."""
    cwd = os.path.abspath(request.cwd or os.getcwd())
    _check_locally(request, cwd)
    if isinstance(store, Store):
        return _run(store, store.url, request, cwd, say, (endpoint_url, s3_options), code, None)
    if store_url is None:
        raise ValueError("run: a store opener needs store_url")
    opened: list[Store] = []
    try:
        return _run(store, store_url, request, cwd, say, (endpoint_url, s3_options), code, opened)
    finally:
        for handle in opened:
            handle.close()


def _run(
    store_or_opener: Store | Callable[[], Store],
    url: str,
    request: RunRequest,
    cwd: str,
    say: Say,
    reach: tuple[str | None, Mapping[str, Any] | None],
    code: Mapping[str, Any] | None,
    opened: list[Store] | None,
) -> RunResult:
    run_id = new_run_id()
    top = staging.new_run_dir(run_id)
    out_dir = top / "out"
    message = request.message or default_message(request.argv)
    record: dict[str, Any] | None = None
    pool = ThreadPoolExecutor(max_workers=3, thread_name_prefix="s3fsv-run-identity")
    identity = None if code is not None else _start_identity(pool, request, cwd)
    pool.submit(platform.platform)  # (cached: the record's, taken before the command)
    repos = {spec.repo for spec in request.inputs}
    mount = None
    if request.fuse:
        endpoint_url, s3_options = reach
        mount = StoreMount(url.rstrip("/"), repos, top, endpoint_url, say, dict(s3_options or {}))

    def finish_mount() -> None:
        """Wait until the run's own mount is gone: before its directory may be removed."""
        if mount is not None:
            t = time.monotonic()
            mount.finish()
            log.debug("mount gone after another %.2f s", time.monotonic() - t)

    try:
        t0 = time.monotonic()
        log.debug("run starts after %.2f s of CPU (this process so far)", time.process_time())
        if isinstance(store_or_opener, Store):
            store = store_or_opener
        else:
            store = store_or_opener()
            assert opened is not None
            opened.append(store)
        log.debug("store opened after %.2f s", time.monotonic() - t0)
        pinned = pin_inputs(store, request.inputs)
        log.debug("inputs pinned after %.2f s", time.monotonic() - t0)
        if mount is not None:
            mount.begin(pinned)  # mounted while the output is checked
        out_repo = store.repo(request.output.repo)
        staging.check_output(out_repo, request.output)
        log.debug("output checked after %.2f s", time.monotonic() - t0)
        for item in pinned:  # (only once everything checked out: a mistake is one line)
            pinned_by = "" if item.spec.ref == item.commit else f" = commit {item.commit}"
            say(f"input {item.spec.name}: {item.spec}{pinned_by}")
        with input_views(store, pinned, top, mount=mount, say=say) as views:
            t1 = time.monotonic()
            argv = substitute(request.argv, views.paths, str(out_dir))
            env = {**os.environ, **environment(views.paths, str(out_dir), run_id)}
            # The files are taken before the command starts (it might change them).
            files = _taken_files(identity[0]) if identity is not None else None
            log.debug("inputs shown after %.2f s, code files after %.2f s more (CPU %.2f s)",
                      t1 - t0, time.monotonic() - t1, time.process_time())  # fmt: skip

            def record_of(exit_code: int, start: int, end: int) -> dict[str, Any]:
                return build_record(
                    run_id=run_id,
                    inputs=[p.as_record() for p in pinned],
                    output=request.output.as_record(),
                    argv=request.argv,
                    cwd=cwd,
                    exit_code=exit_code,
                    start_ns=start,
                    end_ns=end,
                    mode=views.mode,
                    code=code
                    if identity is None
                    else _taken_identity(files, identity[1], wait=False),
                    extra=request.extra,
                )

            start = time.time_ns()
            # Should this process be killed, the outputs are a kept run all the same.
            pending = _pending(url, request.output, message, record_of(-1, start, start))
            me = owner.here()
            _note(top, pending, me)
            exit_code = run_command(
                argv,
                cwd=cwd,
                env=env,
                stdout_to_stderr=request.stdout_to_stderr,
                on_start=lambda pid: _note(top, pending, owner.here(pid)),
            )
            end = time.time_ns()
            # (Made first, so that outputs are kept with a record should a signal stop the
            # wait for the probe: the interpreter's part then says it was not taken.)
            record = record_of(exit_code, start, end)
            if identity is not None:
                record["code"] = _taken_identity(files, identity[1])
            _note(top, _pending(url, request.output, message, record), me)
        log.debug("command took %.2f s (CPU here %.2f s)", (end - start) / 1e9, time.process_time())
        if exit_code == 0:  # committed while the mount is being taken away
            t2 = time.monotonic()
            cid = staging.commit_outputs(
                out_repo,
                request.output,
                out_dir,
                message=message,
                provenance=run_provenance(record),
                say=say,
            )
            log.debug("outputs committed in %.2f s (CPU %.2f s)", time.monotonic() - t2,
                      time.process_time())  # fmt: skip
    except BaseException:
        finish_mount()
        if record is None:  # nothing ran, or it was stopped before it could end
            staging.discard(top)
        else:  # it ran: its outputs stay, whatever stopped the rest
            _keep(top, url, request.output, message, record)
            say(f"the command exited with {record['exit_code']}, but nothing was committed:")
            for line in staging.kept_lines(run_id, top):
                say(line)
        raise
    finally:
        finish_mount()
        pool.shutdown(wait=True)
    if exit_code != 0:
        _keep(top, url, request.output, message, record)
        return RunResult(run_id, exit_code, record, None, top)
    staging.discard(top)
    return RunResult(run_id, exit_code, record, cid, None)


def _check_locally(request: RunRequest, cwd: str) -> None:
    """What can be checked without the store: a command, names that its placeholders know,
    the command found, the record files there."""
    if not request.argv:
        raise UsageError("no command given: s3fsv run --in ... --out ... -- COMMAND [ARGS...]")
    check_inputs(request.inputs)
    substitute(request.argv, {spec.name: "" for spec in request.inputs}, "")
    if not PLACEHOLDER.search(request.argv[0]):
        check_command(request.argv, cwd, os.environ)
    for extra in request.record_files:
        if not os.path.isfile(os.path.join(cwd, extra)):
            raise UsageError(f"--record-file {extra}: no such file")


def _keep(top: Path, url: str, output: OutputSpec, message: str, record: Mapping[str, Any]) -> None:
    staging.keep(top, _pending(url, output, message, record))


def _note(top: Path, pending: Mapping[str, Any], running: Mapping[str, Any]) -> None:
    """Write ``run.json`` of a run in progress (what is kept should this process be killed).
    A failure to write it is said, not raised: it must not cost the run itself."""
    try:
        staging.write_pending(top, staging.interrupted(pending), running=running)
    except OSError as err:
        log.warning("cannot write %s/%s: %s", top, staging.PENDING, err)


def _pending(
    url: str, output: OutputSpec, message: str, record: Mapping[str, Any]
) -> dict[str, Any]:
    """What ``run.json`` says of a run whose outputs are kept (``s3fsv run --commit``)."""
    return {
        "store": url,
        "output": output.as_record(),
        "message": message,
        "provenance": run_provenance(record),
    }


_Identity = tuple["Future[list[dict[str, Any]]]", "Future[dict[str, Any] | None]"]


def _start_identity(pool: ThreadPoolExecutor, request: RunRequest, cwd: str) -> _Identity:
    """Start taking the code identity of ``request``'s command: its files, and the probe of
    its Python interpreter (whose answer is None for a command that runs no Python)."""
    env = dict(os.environ)
    probe = pool.submit(_python_part, request.argv, cwd, env)
    files = pool.submit(code_files, request.argv, cwd, env, request.record_files)
    return files, probe


def _python_part(argv: Sequence[str], cwd: str, env: Mapping[str, str]) -> dict[str, Any] | None:
    try:
        interpreter = python_interpreter(argv, cwd, env)
    except (OSError, ValueError) as err:  # a ``#!`` line shlex cannot split
        return {"error": str(err)}
    return python_identity(interpreter, cwd, env) if interpreter else None


def _taken_files(files: Future[list[dict[str, Any]]]) -> list[dict[str, Any]] | str:
    """The code's files, taken while the inputs were being shown; or why they could not be
    (a file unreadable), which is recorded rather than losing the run."""
    try:
        return files.result()
    except (OSError, ValueError) as err:
        return str(err)


def _taken_identity(
    files: list[dict[str, Any]] | str, probe: Future[dict[str, Any] | None], *, wait: bool = True
) -> dict[str, Any]:
    """The code identity to record: :func:`_taken_files` and the interpreter's ``probe``,
    waited for; without ``wait``, the identity to record should the wait be interrupted."""
    if isinstance(files, str):
        return {"files": [], "error": files}
    if not wait and not probe.done():
        return identity_of(files, {"error": "interrupted before the interpreter answered"})
    try:
        python = probe.result()
    except Exception as err:  # (python_identity reports the failures it expects itself)
        python = {"error": str(err) or type(err).__name__}
    return identity_of(files, python)


def run_provenance(record: Mapping[str, Any]) -> dict[str, Any]:
    """The commit provenance of a run: ``inputs`` as every commit with inputs has them
    (what lineage follows), and the record under ``run``."""
    inputs = [
        {"repo": i["repo"], "commit": i["commit"], "path": i["path"], "via": "run"}
        for i in record["inputs"]
    ]
    return {"inputs": inputs, "run": dict(record)}


def default_message(argv: Sequence[str]) -> str:
    line = shlex.join(argv)
    return f"run: {line if len(line) <= 200 else line[:197] + '...'}"
