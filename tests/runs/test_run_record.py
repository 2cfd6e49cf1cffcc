"""The run record and the code identity it holds: built from plain arguments, canonical JSON
(no floats), naming each file argv names with its hash and checkout, and the distributions of a
Python command's own interpreter."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from s3fsv.runs.identity import code_changes, code_identity, python_interpreter
from s3fsv.runs.record import build_record, comparable, iso_utc, new_run_id, run_record
from s3fsv.store.objects import canonical_json

INPUT = {"name": "in", "repo": "cams", "ref": "main", "commit": "a" * 64, "path": "images"}
OUTPUT = {"repo": "det", "branch": "main", "path": "out"}


def record(tmp_path: Path, argv: list[str], **kw: object) -> dict:
    start = time.time_ns()
    args: dict = dict(
        run_id=new_run_id(start),
        inputs=[INPUT],
        output=OUTPUT,
        argv=argv,
        cwd=str(tmp_path),
        exit_code=0,
        start_ns=start,
        end_ns=start + 1_234_567_890,
        mode="fuse",
    )
    args.update(kw)
    return build_record(**args)


def test_record_fields_and_canonical(tmp_path: Path) -> None:
    (tmp_path / "script.py").write_text("print('hi')\n")
    argv = [sys.executable, "script.py", "{in}/images", "{out}"]
    rec = record(tmp_path, argv)
    canonical_json(rec)  # no floats anywhere
    assert rec["version"] == 1 and rec["mode"] == "fuse"
    assert rec["inputs"] == [INPUT] and rec["output"] == OUTPUT
    assert rec["argv"] == argv and rec["cwd"] == str(tmp_path) and rec["exit_code"] == 0
    assert rec["duration_ms"] == 1234
    assert rec["start"].endswith("Z") and rec["end"] > rec["start"]
    assert rec["user"] and rec["host"] and rec["s3fsv"] and rec["python"] and rec["platform"]
    files = {f["named_by"]: f for f in rec["code"]["files"]}
    script = files["argv[1]"]
    assert script["path"] == str(tmp_path / "script.py")
    assert script["sha256"] == hashlib.sha256(b"print('hi')\n").hexdigest()
    assert "git" not in script  # tmp_path is no checkout
    assert set(files) == {"argv[0]", "argv[1]"}  # placeholders name data, not code
    dists = rec["code"]["python"]["distributions"]
    assert dists["pytest"] == __import__("pytest").__version__
    assert run_record({"run": rec}) == rec
    assert run_record({"run": {**rec, "version": 99}}) is None
    assert run_record({}) is None


def test_option_values_and_record_files(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"weights")
    (tmp_path / "uv.lock").write_bytes(b"lock")
    rec = record(tmp_path, ["true", "--model=model.onnx"], record_files=["uv.lock"], code=None)
    files = {f["named_by"]: f["path"] for f in rec["code"]["files"]}
    assert files["argv[1]"] == str(tmp_path / "model.onnx")
    assert files["--record-file"] == str(tmp_path / "uv.lock")
    assert "python" not in rec["code"]  # true is no Python command
    with pytest.raises(FileNotFoundError):
        code_identity(["true"], str(tmp_path), record_files=["missing.lock"])


def test_git_checkout_commit_and_dirty(tmp_path: Path) -> None:
    repo = tmp_path / "checkout"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "run.sh").write_text("echo one\n")
    subprocess.run([*git, "add", "run.sh"], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    clean = code_identity(["sh", "checkout/run.sh"], str(tmp_path))["files"]
    info = next(f for f in clean if f["named_by"] == "argv[1]")["git"]
    assert info == {
        "root": str(repo),
        "commit": head.strip(),
        "dirty": False,
        "path": "run.sh",
        "tracked": True,
    }
    (repo / "run.sh").write_text("echo two\n")
    dirty = code_identity(["sh", "checkout/run.sh"], str(tmp_path))
    assert next(f for f in dirty["files"] if f["named_by"] == "argv[1]")["git"]["dirty"] is True
    changes = code_changes({"files": clean}, dirty)
    assert len(changes) == 1 and changes[0].startswith(f"{repo / 'run.sh'}: content changed")


def test_python_found_through_shebang(tmp_path: Path) -> None:
    script = tmp_path / "tool"
    script.write_text("#!/usr/bin/env -S python3 -u\nprint(1)\n")
    script.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"}
    assert python_interpreter(["tool", "x"], str(tmp_path), env) is not None
    assert python_interpreter(["sh", "x"], str(tmp_path), env) is None
    assert python_interpreter(["{in}/tool"], str(tmp_path), env) is None


def test_code_changes_names_packages() -> None:
    old = {"files": [], "python": {"version": "3.11.7", "distributions": {"a": "1", "b": "2"}}}
    new = {"files": [], "python": {"version": "3.12.1", "distributions": {"a": "1.1", "c": "3"}}}
    assert code_changes(old, new) == [
        "Python 3.11.7 -> 3.12.1",
        "package a 1 -> 1.1",
        "package b 2 removed",
        "package c 3 added",
    ]
    assert code_changes(old, old) == []


def test_comparable_and_bad_arguments(tmp_path: Path) -> None:
    code = {"files": []}
    a = record(tmp_path, ["true"], code=code)
    b = record(tmp_path, ["true"], code=code, mode="local", run_id="other")
    assert comparable(a) == comparable(b)
    assert json.loads(canonical_json(a)) == a
    with pytest.raises(ValueError):
        record(tmp_path, ["true"], code=code, mode="docker")
    with pytest.raises(ValueError):
        record(tmp_path, ["true"], code=code, exit_code=0.0)
    with pytest.raises(ValueError):
        record(tmp_path, ["true"], code=code, inputs=[{"repo": "cams"}])
    with pytest.raises(ValueError):
        record(tmp_path, ["true"], code=code, extra={"argv": []})


def test_iso_utc_and_run_id() -> None:
    assert iso_utc(1_700_000_000_123_456_789) == "2023-11-14T22:13:20.123456Z"
    rid = new_run_id(1_700_000_000_000_000_000)
    assert rid.startswith("20231114T221320Z-") and len(rid) == 25


def test_the_interpreters_part_is_waited_for_once_the_command_ended() -> None:
    """The probe of a Python command's interpreter may still run when the command starts: the
    record waits for its answer; a record made before (should a signal stop the wait) says
    it was not taken; a probe that broke says why; the files' own failure wins."""
    from concurrent.futures import Future

    from s3fsv.runs.run import _taken_identity

    files = [{"path": "/x/detect.py", "named_by": "argv[1]", "size": 1, "sha256": "0" * 64}]
    running: Future[dict | None] = Future()
    early = _taken_identity(files, running, wait=False)
    assert early["files"] == files and "interrupted" in early["python"]["error"]
    running.set_result({"executable": "/venv/bin/python", "distributions": {"numpy": "2.0"}})
    assert _taken_identity(files, running)["python"]["distributions"] == {"numpy": "2.0"}
    assert _taken_identity(files, running, wait=False) == _taken_identity(files, running)
    not_python: Future[dict | None] = Future()
    not_python.set_result(None)
    assert _taken_identity(files, not_python) == {"files": files}
    broken: Future[dict | None] = Future()
    broken.set_exception(RuntimeError("probe broke"))
    assert _taken_identity(files, broken)["python"] == {"error": "probe broke"}
    assert _taken_identity("file unreadable", running) == {"files": [], "error": "file unreadable"}
