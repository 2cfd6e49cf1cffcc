"""The run record: what a commit made by ``s3fsv run`` says about how it was made
(docs/format.md, section 11.1). :func:`build_record` is the one place that makes it, from plain
arguments, so every capability that runs commands (runs, pipelines) records the same thing."""

from __future__ import annotations

import platform
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from s3fsv.runs.identity import code_identity
from s3fsv.store.provenance import provenance_context
from s3fsv.version import __version__

RECORD_VERSION = 1
MODES = ("fuse", "local")
_INPUT_KEYS = ("name", "repo", "ref", "commit", "path")
_OUTPUT_KEYS = ("repo", "branch", "path")


def build_record(
    *,
    run_id: str,
    inputs: Sequence[Mapping[str, str]],
    output: Mapping[str, str],
    argv: Sequence[str],
    cwd: str,
    exit_code: int,
    start_ns: int,
    end_ns: int,
    mode: str,
    record_files: Iterable[str] = (),
    code: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The run record, a JSON-able dict with no floats (canonical JSON refuses them).

    ``inputs``: one mapping per input with ``name``, ``repo``, ``ref`` (as given), ``commit``
    (the full id it resolved to) and ``path`` ("" for the root). ``output``: ``repo``,
    ``branch``, ``path``. ``argv``: the command exactly as given, placeholders (``{in}``,
    ``{in.NAME}``, ``{out}``) unsubstituted. ``start_ns``/``end_ns``: wall-clock times
    (``time.time_ns()``). ``mode``: ``"fuse"`` (inputs through a mount) or ``"local"``
    (downloaded). ``code``: the :func:`~s3fsv.runs.identity.code_identity` taken when the
    command started; when None it is taken now, from ``argv``, ``cwd``, ``env`` and
    ``record_files``. ``extra``: further keys (``reproduces``), which may not replace these.
    Raises ``ValueError`` for malformed arguments.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    if not argv or not all(isinstance(a, str) for a in argv):
        raise ValueError("argv must be a non-empty list of strings")
    if type(exit_code) is not int or type(start_ns) is not int or type(end_ns) is not int:
        raise ValueError("exit_code, start_ns and end_ns must be integers")
    if code is None:
        code = code_identity(argv, cwd, env, record_files)
    who = provenance_context()
    record: dict[str, Any] = {
        "version": RECORD_VERSION,
        "id": run_id,
        "mode": mode,
        "inputs": [_plain(item, _INPUT_KEYS, "input") for item in inputs],
        "output": _plain(output, _OUTPUT_KEYS, "output"),
        "argv": list(argv),
        "cwd": cwd,
        "exit_code": exit_code,
        "start": iso_utc(start_ns),
        "end": iso_utc(end_ns),
        "duration_ms": max(0, end_ns - start_ns) // 1_000_000,
        "user": who["user"],
        "host": who["host"],
        "s3fsv": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "code": dict(code),
    }
    for key, value in (extra or {}).items():
        if key in record:
            raise ValueError(f"extra key {key!r} would replace a field of the record")
        record[key] = value
    return record


def new_run_id(now_ns: int | None = None) -> str:
    """A fresh run id, ``YYYYMMDDTHHMMSSZ-<8 hex>``: sorts by start time, unique in practice,
    and safe as a file name and a branch name."""
    now = datetime.fromtimestamp((now_ns or time.time_ns()) // 1_000_000_000, timezone.utc)
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"


def run_record(provenance: Mapping[str, Any]) -> dict[str, Any] | None:
    """The run record a commit's provenance holds, or None when it holds none (a commit made
    by ``put``, a mount, or a newer record version this s3fsv cannot read)."""
    record = provenance.get("run")
    if not isinstance(record, dict) or record.get("version") != RECORD_VERSION:
        return None
    return record


def comparable(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record without what differs between two runs of the same command on the same
    inputs: its id, times, duration and mode. Two such runs give equal results."""
    volatile = {"id", "start", "end", "duration_ms", "mode"}
    return {k: v for k, v in record.items() if k not in volatile}


def iso_utc(ns: int) -> str:
    """``ns`` since the epoch as UTC ISO-8601 with microseconds and ``Z``, as commit times."""
    moment = datetime.fromtimestamp(ns // 1_000_000_000, timezone.utc)
    moment = moment.replace(microsecond=(ns // 1000) % 1_000_000)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _plain(item: Mapping[str, str], keys: tuple[str, ...], what: str) -> dict[str, str]:
    missing = [k for k in keys if not isinstance(item.get(k), str)]
    if missing:
        raise ValueError(f"{what} {dict(item)!r} lacks string field(s) {missing}")
    return {k: item[k] for k in keys}
