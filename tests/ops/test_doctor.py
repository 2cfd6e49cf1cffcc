"""``s3fsv doctor``: each check finds what it is about, and every problem says what to fix."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from mounting import run_cli

from s3fsv.ops import doctor
from s3fsv.store.store import Store


def findings(*args: str, env: dict[str, str], code: int) -> dict[str, dict[str, Any]]:
    result = run_cli("doctor", "--json", *args, env=env, check=False)
    assert result.returncode == code, result.stderr
    return {f["check"]: f for f in json.loads(result.stdout)}


def test_a_ready_machine_with_a_file_store(tmp_path: Path, env: dict[str, str]) -> None:
    url = f"file://{tmp_path}/store"
    Store.init(url)
    found = findings(url, "--cache-size", "1M", env=env, code=0)
    for check in ("fuse device", "fusermount3", "libfuse3", "store", "conditional writes"):
        assert found[check]["ok"] is True, found[check]
    text = run_cli("doctor", url, env=env)
    assert "ok      conditional writes" in text.stdout and "ready to mount" in text.stderr


def test_s3_store_credentials_conditional_writes_and_clock(
    s3_bucket_url: str, tmp_path: Path, env: dict[str, str]
) -> None:
    Store.init(s3_bucket_url)
    env = {**env, **{k: v for k, v in os.environ.items() if k.startswith("AWS_")}}
    found = findings(s3_bucket_url, "--cache-size", "1M", env=env, code=0)
    assert found["credentials"]["ok"] is True and "env" in found["credentials"]["detail"]
    assert found["conditional writes"]["ok"] is True
    assert found["clock"]["ok"] is True  # the server runs on this machine's clock
    bare = {k: v for k, v in env.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    missing = findings(s3_bucket_url, env=bare, code=1)["credentials"]
    assert missing["ok"] is False and "AWS_ACCESS_KEY_ID" in missing["fix"]


def test_problems_say_what_to_fix(tmp_path: Path, env: dict[str, str]) -> None:
    found = findings(f"file://{tmp_path}/nostore", "--cache-size", "1000T", env=env, code=1)
    assert found["store"]["ok"] is False and "s3fsv init" in found["store"]["fix"]
    assert found["cache space"]["ok"] is False and "--cache-size" in found["cache space"]["fix"]
    result = run_cli("doctor", f"file://{tmp_path}/nostore", env=env, check=False)
    assert "PROBLEM store:" in result.stdout and "fix: run s3fsv init" in result.stdout
    assert "problem(s) to fix before mounting" in result.stderr


def test_allow_other_needs_user_allow_other_for_users(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = tmp_path / "fuse.conf"
    conf.write_text("# user_allow_other\nmount_max = 1000\n")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    problem = doctor.check_allow_other(True, conf)
    assert problem.ok is False and "user_allow_other" in (problem.fix or "")
    conf.write_text("user_allow_other\n")
    assert doctor.check_allow_other(True, conf).ok is True
    assert doctor.check_allow_other(False, conf).ok is True


def test_clock_skew_against_the_store(tmp_path: Path) -> None:
    store = Store.init(f"file://{tmp_path}/store")

    class Skewed:
        def __init__(self, offset: float) -> None:
            self.offset = offset

        def server_time(self, key: str) -> float:
            return time.time() + self.offset

    store.backend = Skewed(-600)  # type: ignore[assignment]
    far = doctor.check_clock(store)
    assert far.ok is False and "600 s ahead of" in far.detail and "ntp" in (far.fix or "")
    store.backend = Skewed(0)  # type: ignore[assignment]
    assert doctor.check_clock(store).ok is True
