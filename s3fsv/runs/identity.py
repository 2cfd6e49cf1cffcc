"""The identity of the code a run ran, recorded so that a reviewer can tell whether it changed.

Three parts (docs/format.md, section 11.1):

- every existing regular file the command line names (the program, a script, a model file:
  ``--opt=FILE`` counts), and every ``--record-file``: its absolute path, size and SHA-256,
  and where it lies in a git checkout, that checkout's commit and whether it was dirty;
- for a Python command (``python ...``, or a script whose ``#!`` line runs Python): that
  interpreter's version and its installed distributions, as its own ``importlib.metadata``
  reports them (run with the caller's environment, so a virtualenv or PYTHONPATH counts);
- nothing else: environment variables are not recorded (they may hold secrets).

Arguments holding ``{in...}`` or ``{out}`` name data, which the run pins by commit instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

PLACEHOLDER = re.compile(r"\{(in(\.[^{}]*)?|out)\}")
_PYTHON = re.compile(r"(python|pypy)(\d+(\.\d+)*)?")
_GIT_TIMEOUT = 20.0
_PROBE_TIMEOUT = 120.0

# Run by the command's own interpreter. ``-c`` puts the working directory first on sys.path,
# which a script run as ``python FILE`` does not have: it is dropped first.
_PROBE = """\
import sys
del sys.path[0]
import json, platform, re
from importlib import metadata
dists = {}
for dist in metadata.distributions():
    name = dist.metadata["Name"]
    if name:
        dists.setdefault(re.sub(r"[-_.]+", "-", name).lower(), dist.version)
json.dump({"executable": sys.executable, "version": platform.python_version(),
           "implementation": platform.python_implementation(), "distributions": dists},
          sys.stdout)
"""


def code_identity(
    argv: Sequence[str],
    cwd: str,
    env: Mapping[str, str] | None = None,
    record_files: Iterable[str] = (),
) -> dict[str, Any]:
    """The ``code`` part of a run record for ``argv`` run in ``cwd`` with ``env`` (default:
    this process's). ``record_files`` are further paths to hash (relative to ``cwd``); each
    must be a readable regular file (``FileNotFoundError``/``IsADirectoryError`` otherwise).
    JSON-able, with no floats. (:func:`code_files` and :func:`python_identity` of
    :func:`python_interpreter`, put together by :func:`identity_of`.)"""
    env = dict(os.environ if env is None else env)
    interpreter = python_interpreter(argv, cwd, env)
    with ThreadPoolExecutor(max_workers=1) as pool:
        probe = pool.submit(python_identity, interpreter, cwd, env) if interpreter else None
        files = code_files(argv, cwd, env, record_files)
    return identity_of(files, probe.result() if probe is not None else None)


def code_files(
    argv: Sequence[str], cwd: str, env: Mapping[str, str], record_files: Iterable[str] = ()
) -> list[dict[str, Any]]:
    """The ``files`` of :func:`code_identity`: each file ``argv`` names and each of
    ``record_files``, hashed, with its git checkout's state."""
    named = files_named(argv, cwd, env)
    for extra in record_files:
        path = _absolute(extra, cwd)
        if not path.is_file():
            if path.is_dir():
                raise IsADirectoryError(21, "--record-file is a directory", str(path))
            raise FileNotFoundError(2, "--record-file not found", str(path))
        if all(path != p for _, p in named):
            named.append(("--record-file", path))
    with ThreadPoolExecutor(max_workers=4) as pool:
        files = list(pool.map(lambda item: _file_identity(*item), named))
    _add_git(files)
    return files


def identity_of(files: list[dict[str, Any]], python: dict[str, Any] | None) -> dict[str, Any]:
    """The ``code`` identity of :func:`code_files` and, for a Python command, the
    :func:`python_identity` of its interpreter."""
    out: dict[str, Any] = {"files": files}
    if python is not None:
        out["python"] = python
    return out


def files_named(argv: Sequence[str], cwd: str, env: Mapping[str, str]) -> list[tuple[str, Path]]:
    """(``argv[i]``, absolute path) of each existing regular file an argument names: the
    argument itself, the value of ``--opt=VALUE``, or for ``argv[0]`` the program found on
    ``PATH``. Each path once, in argument order."""
    found: list[tuple[str, Path]] = []
    for i, arg in enumerate(argv):
        if not arg or PLACEHOLDER.search(arg):
            continue
        value = arg.split("=", 1)[1] if arg.startswith("-") and "=" in arg else arg
        if not value:
            continue
        if i == 0 and "/" not in value:
            program = shutil.which(value, path=env.get("PATH", os.defpath))
            path = Path(program) if program else None
        else:
            path = _absolute(value, cwd)
        try:
            is_file = path is not None and path.is_file() and os.access(path, os.R_OK)
        except OSError:  # a name too long, a loop of links: not a file
            is_file = False
        if is_file and path is not None and all(path != p for _, p in found):
            found.append((f"argv[{i}]", path))
    return found


def python_interpreter(argv: Sequence[str], cwd: str, env: Mapping[str, str]) -> str | None:
    """The Python interpreter ``argv`` runs (as a path or a name found on ``PATH``), or None
    when it runs no Python: ``python3 ...``, ``/venv/bin/python ...``, or a script whose
    ``#!`` line names Python (directly or through ``env``)."""
    if not argv or PLACEHOLDER.search(argv[0]):
        return None
    search = env.get("PATH", os.defpath)
    program = argv[0] if "/" in argv[0] else shutil.which(argv[0], path=search)
    if program is None:
        return None
    if _PYTHON.fullmatch(os.path.basename(program)):
        return str(_absolute(program, cwd))
    try:
        with open(_absolute(program, cwd), "rb") as fh:
            first = fh.readline(512)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    words = shlex.split(first[2:].decode(errors="replace"))
    if words and os.path.basename(words[0]) == "env":
        words = [w for w in words[1:] if not w.startswith("-")]
    if not words or not _PYTHON.fullmatch(os.path.basename(words[0])):
        return None
    return words[0] if "/" in words[0] else shutil.which(words[0], path=search)


def python_identity(interpreter: str, cwd: str, env: Mapping[str, str]) -> dict[str, Any]:
    """``{"executable", "version", "implementation", "distributions": {name: version}}`` as
    ``interpreter`` reports them (names normalised as pip does: lower case, ``-``); on failure
    ``{"executable": interpreter, "error": why}``. The probe runs in a session of its own:
    a Ctrl-C meant for a command running meanwhile does not reach it."""
    try:
        done = subprocess.run(
            [interpreter, "-c", _PROBE],
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=_PROBE_TIMEOUT,
            start_new_session=True,
        )
        if done.returncode != 0:
            lines = done.stderr.decode(errors="replace").strip().splitlines()
            return {"executable": interpreter, "error": lines[-1] if lines else "failed"}
        raw = json.loads(done.stdout)
    except (OSError, subprocess.SubprocessError, ValueError) as err:
        return {"executable": interpreter, "error": str(err) or type(err).__name__}
    dists = raw.get("distributions") if isinstance(raw, dict) else None
    if not isinstance(dists, dict):
        return {"executable": interpreter, "error": "unexpected answer"}
    return {
        "executable": str(raw.get("executable") or interpreter),
        "version": str(raw.get("version", "")),
        "implementation": str(raw.get("implementation", "")),
        "distributions": {str(k): str(v) for k, v in sorted(dists.items())},
    }


def code_changes(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """One line per difference between two ``code`` identities, each naming what changed: a
    file whose content, checkout commit or existence differs, the interpreter's version, a
    distribution added, removed or at another version. Empty when nothing changed."""
    lines: list[str] = []
    before = {f.get("path"): f for f in recorded.get("files") or () if isinstance(f, dict)}
    after = {f.get("path"): f for f in current.get("files") or () if isinstance(f, dict)}
    for path, old in before.items():
        new = after.get(path)
        if new is None:
            lines.append(f"{path}: no longer exists")
        elif new.get("sha256") != old.get("sha256"):
            lines.append(
                f"{path}: content changed (sha256 {str(old.get('sha256'))[:12]} -> "
                f"{str(new.get('sha256'))[:12]})"
            )
        else:
            was, now = (old.get("git") or {}).get("commit"), (new.get("git") or {}).get("commit")
            if was and now and was != now:
                lines.append(f"{path}: same content, checkout now at {now[:12]} (was {was[:12]})")
    lines += [f"{path}: is new (not in the record)" for path in after.keys() - before.keys()]
    old_py, new_py = recorded.get("python") or {}, current.get("python") or {}
    if "error" in old_py and "version" not in old_py:
        lines.append(
            f"Python: not compared (the record's interpreter was not asked: {old_py['error']})"
        )
    elif old_py or new_py:
        if old_py.get("version") != new_py.get("version"):
            lines.append(
                f"Python {old_py.get('version') or 'none'} -> {new_py.get('version') or 'none'}"
            )
        lines += _distribution_changes(
            old_py.get("distributions") or {}, new_py.get("distributions") or {}
        )
    return lines


def _distribution_changes(old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    out = []
    for name in sorted(old.keys() | new.keys()):
        a, b = old.get(name), new.get(name)
        if a == b:
            continue
        if a is None:
            out.append(f"package {name} {b} added")
        elif b is None:
            out.append(f"package {name} {a} removed")
        else:
            out.append(f"package {name} {a} -> {b}")
    return out


def _absolute(path: str | os.PathLike[str], cwd: str) -> Path:
    return Path(os.path.normpath(os.path.join(cwd, os.fspath(path))))


def _file_identity(named_by: str, path: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
            size += len(block)
    return {"path": str(path), "named_by": named_by, "size": size, "sha256": digest.hexdigest()}


def _add_git(files: list[dict[str, Any]]) -> None:
    """Add ``git`` (root, commit, dirty, path in the checkout, tracked) to each file that lies
    in a git checkout; a file outside one, or no git, leaves the file as it is."""
    if shutil.which("git") is None:
        return
    checkouts: dict[str, dict[str, Any] | None] = {}
    for item in files:
        directory = os.path.dirname(item["path"])
        root = _git(directory, "rev-parse", "--show-toplevel")
        if not root:
            continue
        if root not in checkouts:
            head = _git(root, "rev-parse", "HEAD")
            status = _git(root, "status", "--porcelain", "--untracked-files=no")
            checkouts[root] = (
                {"root": root, "commit": head, "dirty": bool(status)}
                if head and status is not None
                else None
            )
        checkout = checkouts[root]
        if checkout is None:
            continue
        path = item["path"]  # as named: a link in the checkout is the checkout's file
        here = os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))
        inside = os.path.relpath(here, os.path.realpath(root))
        tracked = _git(root, "ls-files", "--error-unmatch", "--", inside) is not None
        item["git"] = {**checkout, "path": inside, "tracked": tracked}


def _git(cwd: str, *args: str) -> str | None:
    """git's stripped output, or None when it fails (no checkout, a checkout git refuses)."""
    try:
        done = subprocess.run(
            ["git", "-C", cwd, *args],
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=_GIT_TIMEOUT,
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"},
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.decode(errors="replace").strip() if done.returncode == 0 else None
