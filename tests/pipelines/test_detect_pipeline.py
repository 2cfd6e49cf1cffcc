"""The pipelines scenario of docs/pipelines.md, with the real detector on a real S3 server.

detect.py runs unchanged on a ``cams`` repo with the glob ``images/*``: 10 images, then 5
added, 1 modified and 2 deleted. The second job must run exactly the 6 changed datums, carry
the others over, and give the same bytes as a from-scratch run; a second pipeline with the
glob ``/`` keeps a summary of the first one's output up to date by itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import s3fsv
from tests.pipelines.support import EXAMPLES, cli, toml, tree

sys.path.insert(0, str(EXAMPLES))
from sample_data import copy_samples  # noqa: E402

SUMMARISE = r"""
import json, os, sys
src, out = sys.argv[1], sys.argv[2]
files = sorted(os.path.relpath(os.path.join(r, f), src)
               for r, _, fs in os.walk(src) for f in fs if f.endswith(".json"))
faces = sum(len(json.load(open(os.path.join(src, f)))["detections"]) for f in files)
with open(os.path.join(out, "summary.json"), "w") as fh:
    json.dump({"images": len(files), "faces": faces}, fh, sort_keys=True)
"""


def images(tmp: Path, count: int, salt: int = 0) -> dict[str, bytes]:
    """``count`` distinct PNGs made from the sample photographs (scaled copies)."""
    samples = sorted(copy_samples(tmp / f"samples{salt}"))
    out = {}
    for i in range(count):
        img = cv2.imread(str(samples[i % len(samples)]))
        scale = 0.4 + 0.05 * (i // len(samples)) + 0.01 * salt
        small = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        ok, png = cv2.imencode(".png", small)
        assert ok
        out[f"img{i:02d}.png"] = np.asarray(png).tobytes()
    return out


def output_files(repo: s3fsv.Repo, ref: str) -> dict[str, str]:
    return tree(repo, ref)


def job_of(env: dict[str, str], name: str) -> dict:
    return json.loads(cli(env, "pipeline", "status", name, "--json").stdout)["jobs"][0]


@pytest.mark.slow
def test_incremental_detection_pipeline(s3_bucket_url: str, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "S3FSV_STORE": s3_bucket_url,
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }
    cli(env, "init")
    for repo in ("cams", "detections", "summaries"):
        cli(env, "repo", "create", repo)
    cli(env, "branch", "create", "detections", "scratch")
    store = s3fsv.open_store(s3_bucket_url, cache_dir=tmp_path / "cache" / "s3fsv")
    cams = store.repo("cams")
    first = images(tmp_path, 15)
    with cams.transaction("main", message="10 images") as tx:
        for name in sorted(first)[:10]:
            tx.write(f"images/{name}", first[name])

    detect = [sys.executable, str(EXAMPLES / "detect.py"), "{in}/images", "{out}"]
    spec = tmp_path / "detect.toml"
    spec.write_text(
        toml(
            name="detect",
            input="cams@main:images/*",
            output="detections@main",
            command=detect,
            batch=4,
        )
    )
    cli(env, "pipeline", "create", "-f", str(spec))
    summary_cmd = [sys.executable, "-c", SUMMARISE, "{in}", "{out}"]
    cli(
        env,
        "pipeline",
        "create",
        "--name",
        "summary",
        "--input",
        "detections@main:/",
        "--output",
        "summaries@main",
        "--",
        *summary_cmd,
    )

    done = cli(env, "pipeline", "run")  # both pipelines, detect first
    assert "detect: job" in done.stdout and "summary: job" in done.stdout
    job1 = job_of(env, "detect")
    assert (job1["state"], job1["processed"], job1["skipped"]) == ("succeeded", 10, 0)
    detections = store.repo("detections")
    out1 = output_files(detections, "main")
    assert sorted(out1) == sorted(f"{n}.json" for n in sorted(first)[:10])
    assert "summary.json" not in out1  # a batch artifact, kept with the logs
    summary = json.loads(store.repo("summaries").read_bytes("main", "summary.json"))
    assert summary["images"] == 10

    # 5 added, 1 modified, 2 deleted: one new input commit.
    names = sorted(first)
    changed = images(tmp_path, 1, salt=7)["img00.png"]
    with cams.transaction("main", message="5 new, 1 changed, 2 gone") as tx:
        for name in names[10:15]:
            tx.write(f"images/{name}", first[name])
        tx.write(f"images/{names[3]}", changed)
        tx.delete(f"images/{names[0]}")
        tx.delete(f"images/{names[1]}")
    cli(env, "pipeline", "run")
    job2 = job_of(env, "detect")
    assert (job2["state"], job2["processed"], job2["skipped"], job2["removed"]) == (
        "succeeded",
        6,
        7,
        2,
    )
    out2 = output_files(detections, "main")
    assert len(out2) == 13
    assert out2[f"{names[3]}.json"] != out1[f"{names[3]}.json"]  # re-run on new bytes
    assert all(out2[k] == out1[k] for k in out2 if k in out1 and k != f"{names[3]}.json")
    summary = json.loads(store.repo("summaries").read_bytes("main", "summary.json"))
    assert summary["images"] == 13  # updated by itself after the first pipeline's job

    # The same pipeline from scratch on the final input commit gives the same bytes.
    spec.write_text(
        toml(
            name="detect-scratch",
            input="cams@main:images/*",
            output="detections@scratch",
            command=detect,
            batch=5,
        )
    )
    cli(env, "pipeline", "create", "-f", str(spec))
    cli(env, "pipeline", "run", "detect-scratch")
    assert output_files(detections, "scratch") == out2

    # Each output commit names its input commit, spec version and datum counts.
    head = detections.commit("main")
    assert head.provenance["pipeline"]["job"] == cams.resolve("main")
    assert head.provenance["pipeline"]["datums"]["processed"] == 6
    assert head.provenance["inputs"][0]["commit"] == cams.resolve("main")
    run = head.provenance["run"]  # the run record of `s3fsv run`, plus the pipeline's block
    assert run["argv"] == detect and run["inputs"][0]["commit"] == cams.resolve("main")
    detect_sha = hashlib.sha256((EXAMPLES / "detect.py").read_bytes()).hexdigest()
    assert detect_sha in json.dumps(run["code"])
    logs = cli(env, "pipeline", "logs", "detect", "--datum", f"images/{names[12]}").stdout
    assert "exit 0" in logs and "done:" in logs  # detect.py's own last line
    store.close()
