"""``s3fsv status MOUNTPOINT``: the mount's health, as a person reads it and as ``--json``;
with the S3 server stopped, the outage and the last error, and both gone once it is back."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mounting import mounted, run_cli

from s3fsv.store.store import Store


def status(mp: Path, env: dict[str, str], code: int = 0) -> dict[str, Any]:
    """The health ``status --json`` reports, once checked to exit with ``code``."""
    done = run_cli("status", str(mp), "--json", env=env, check=False)
    assert done.returncode == code, done.stderr
    return json.loads(done.stdout)


def test_status_of_a_pinned_mount(tmp_path: Path, env: dict[str, str]) -> None:
    url = f"file://{tmp_path}/store"
    cid = Store.init(url).create_repo("cams").branch_head("main").commit
    with mounted(f"{url}/cams@main", tmp_path / "mnt", env, "--cache-size", "1G") as mp:
        h = status(mp, env)["mount"]
        assert h["view"] == {"kind": "branch", "repo": "cams", "branch": "main", "head": cid,
                             "writable": False}  # fmt: skip
        assert h["store"]["reachable"] is True and h["store"]["rtt_ms"] >= 0
        assert h["cache"]["limit_bytes"] == 1024**3 and h["cache"]["used_bytes"] >= 0
        assert h["last_error"] is None and h["staged"] == [] and h["pid"] > 0
        assert h["uptime_s"] >= 0 and h["version"]
        text = run_cli("status", str(mp), env=env).stdout
        assert f"branch main at {cid[:12]} (read-only)" in text
        assert "reachable, round trip" in text and "last error: none" in text
    with mounted(f"{url}/cams@{cid[:8]}", tmp_path / "pinned", env) as mp:
        assert status(mp, env)["mount"]["view"]["commit"] == cid


def test_status_shows_an_outage_and_the_last_error(
    seaweed: Any, s3_bucket_url: str, tmp_path: Path, env: dict[str, str]
) -> None:
    Store.init(s3_bucket_url).create_repo("cams")
    env = {**env, **{k: v for k, v in os.environ.items() if k.startswith("AWS_")}}
    with mounted(s3_bucket_url, tmp_path / "m", env) as mp:
        (mp / "cams/branch/main/staged.txt").write_text("kept while the store is down")
        healthy = status(mp, env)["mount"]
        assert healthy["store"]["reachable"] is True and healthy["store"]["outage"] is None
        assert healthy["staged"][0]["paths"] == 1
        seaweed.stop()
        try:
            down = status(mp, env, code=8)["mount"]  # 8: the store is unreachable
            said = run_cli("status", str(mp), env=env, check=False)
            assert said.returncode == 8
            text = said.stdout
        finally:
            seaweed.start()
        back = status(mp, env)["mount"]
    assert down["store"]["reachable"] is False and down["store"]["rtt_ms"] is None
    assert down["store"]["outage"]["since"] and down["store"]["outages"] == 1
    assert "cannot reach" in down["store"]["error"].lower()
    assert down["last_error"]["message"] == down["store"]["outage"]["error"]
    assert down["last_error"]["time"] >= healthy["started"]
    assert down["staged"][0]["paths"] == 1  # status answers from what the daemon holds
    assert "UNREACHABLE" in text and "outage since" in text
    assert back["store"]["reachable"] is True and back["store"]["outage"] is None
    assert back["store"]["outages"] == 1  # the error stays the last one, from the outage
    assert back["last_error"]["time"] >= down["last_error"]["time"]
    assert "cannot reach" in back["last_error"]["message"].lower()
