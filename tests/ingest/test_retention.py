"""Retention rules, applied by ``gc``: days of history per branch, tags for ever, and the
commit that was the head when the kept period began."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from s3fsv.errors import MissingObject
from s3fsv.store.objects import Commit
from s3fsv.store.repo import Repository
from s3fsv.store.store import Store
from s3fsv.store.tree import apply_changes
from s3fsv.store.upload import Uploader
from tests.mounting import run_cli


def _commit(repo: Repository, branch: str, days_ago: int, name: str) -> str:
    """A commit of one new file ``name`` made ``days_ago`` days ago, on ``branch``."""
    head = repo.refs.branch(branch)
    with Uploader(repo.objects, repo.chunk_size) as up:
        content = up.add_bytes(f"content of {name}, unique".encode() * 10)
        up.finish()
    parent = repo.commit_object(head.commit)
    tree = apply_changes(repo.objects, parent.tree, {name: content.entry(name, 0o644, 0)})
    when = datetime.now(timezone.utc) - timedelta(days=days_ago)
    stamp = when.isoformat(timespec="microseconds").replace("+00:00", "Z")
    cid = repo.objects.put(Commit(tree, (head.commit,), "t@h", stamp, name))
    repo.refs.move_branch(branch, cid, head)
    return cid


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "S3FSV_STORE": f"file://{tmp_path}/store",
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }


def test_gc_keeps_what_retention_rules_and_tags_keep(env: dict[str, str]) -> None:
    run_cli("init", env=env)
    run_cli("repo", "create", "cams", env=env)
    store = Store.open(env["S3FSV_STORE"])
    repo = store.repo("cams")
    c = {d: _commit(repo, "main", d, f"main-{d}d") for d in (90, 60, 40, 20, 1)}
    repo.create_tag("first", c[90])
    repo.refs.create_branch("scratch", c[40])
    s = {d: _commit(repo, "scratch", d, f"scratch-{d}d") for d in (10, 8, 2)}

    run_cli("retention", "set", "cams", "--branch", "main", "--days", "30", env=env)
    run_cli("retention", "set", "cams", "--branch", "scratch", "--days", "7", env=env)
    shown = json.loads(run_cli("retention", "show", "cams", "--json", env=env).stdout)
    assert shown["branches"] == {"main": 30, "scratch": 7} and shown["tags"] == "forever"
    dry = json.loads(run_cli("gc", "--grace", "0", "--dry-run", "--json", env=env).stdout)
    assert dry["repos"]["cams"]["expired"] == 2 and dry["deleted"] > 0
    run_cli("gc", "--grace", "0", env=env)

    fresh = Store.open(env["S3FSV_STORE"]).repo("cams")  # no cached objects
    readable = {
        "main": [c[1], c[20], c[40], c[90]],  # 30 days, the head 30 days ago, a tag
        "scratch": [s[2], s[8]],  # 7 days and the head 7 days ago
    }
    for cids in readable.values():
        for cid in cids:
            names = [p for p, e in fresh.walk(cid) if e.kind == "file"]
            for p in names:
                assert b"unique" in b"".join(fresh.read_file(fresh.stat(cid, p)))
    for cid in (c[60], s[10]):  # past their rules: their snapshots are gone
        with pytest.raises(MissingObject):
            next(fresh.walk(cid))
    # History is whole: every commit is still in the log, ids unchanged.
    assert [cid for cid, _ in fresh.log("main")][:5] == [c[1], c[20], c[40], c[60], c[90]]
