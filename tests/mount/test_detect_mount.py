"""The mission's core promise: the unchanged detection script on a mount gives byte-identical
outputs to the same script on a local copy, and the commit records what it read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from s3fsv.store.store import Store
from s3fsv.store.transfer import put
from tests.mounting import mounted, run_cli

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples"))

from sample_data import copy_samples  # noqa: E402


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("kind", ["file", "seaweed"])
def test_detect_on_mount_matches_local(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = f"file://{tmp_path}/store" if kind == "file" else request.getfixturevalue("s3_bucket_url")
    store = Store.init(url)
    cams = store.create_repo("cams")
    store.create_repo("detections")
    copy_samples(tmp_path / "local")
    input_commit, _ = put(cams, "main", tmp_path / "local/images", "images", "photos")
    env = {
        **os.environ,
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }
    detect = [sys.executable, str(ROOT / "examples/detect.py")]
    subprocess.run([*detect, str(tmp_path / "local/images"), str(tmp_path / "local-out")],
                   check=True, capture_output=True)  # fmt: skip
    with mounted(url, tmp_path / "mnt", env) as mp:
        images = mp / "cams/commit" / input_commit / "images"
        out = mp / "detections/branch/main/run"
        subprocess.run([*detect, str(images), str(out)], check=True, capture_output=True)
        assert tree_bytes(out) == tree_bytes(tmp_path / "local-out")
        cid = run_cli("commit", str(out), "-m", "detections", env=env).stdout.strip()
    repo = store.repo("detections")
    committed = {
        p.removeprefix("run/"): b"".join(repo.read_file(e))
        for p, e in repo.walk(cid)
        if e.kind == "file"
    }
    assert committed == tree_bytes(tmp_path / "local-out")
    provenance = repo.commit_object(cid).provenance
    assert {"repo": "cams", "commit": input_commit, "via": f"commit/{input_commit}"} in (
        provenance["inputs"]
    )
    summary = json.loads(committed["summary.json"])
    assert summary["faces"] >= 2
