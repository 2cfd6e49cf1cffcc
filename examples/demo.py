"""The main job, end to end: ingest photos, run the unchanged detector on the pinned input
with ``s3fsv run`` (which mounts, runs, commits with a run record and unmounts), run it again
with ``s3fsv reproduce``, trace the output's lineage back to the ingest, then mount the store
and re-read the pinned input; last, turn the script into a pipeline that a new ingest commit
triggers by itself (examples/pipeline_demo.py).

    python examples/demo.py [--store URL]

The default store is ``file://<repo>/.demo/store``. With ``--store s3://bucket/prefix`` the same
runs against S3 (credentials and ``AWS_ENDPOINT_URL`` from the environment).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from sample_data import copy_samples  # noqa: E402

S3FSV = [sys.executable, "-m", "s3fsv.cli"]


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def s3fsv(*args: str, capture: bool = False, check: bool = True) -> str:
    print("$ s3fsv " + " ".join(args), flush=True)
    result = subprocess.run([*S3FSV, *args], text=True, stdout=subprocess.PIPE if capture else None)
    if check and result.returncode != 0:
        raise SystemExit(f"demo: 's3fsv {' '.join(args)}' failed (exit {result.returncode})")
    return result.stdout or ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", default=f"file://{ROOT}/.demo/store", help="store URL")
    args = parser.parse_args()
    demo = ROOT / ".demo"
    demo.mkdir(exist_ok=True)
    os.environ["S3FSV_STORE"] = args.store
    os.environ.setdefault("XDG_STATE_HOME", str(demo / "state"))
    os.environ.setdefault("XDG_CACHE_HOME", str(demo / "cache"))
    mountpoint = demo / "mnt"
    mountpoint.mkdir(exist_ok=True)
    if os.path.ismount(mountpoint):
        s3fsv("unmount", str(mountpoint), check=False)

    step("1. Create the store and ingest the sample photographs as a commit")
    s3fsv("init")
    repos = json.loads(s3fsv("repo", "list", "--json", capture=True))
    for repo in ("cams", "detections"):
        if repo not in repos:
            s3fsv("repo", "create", repo)
    with tempfile.TemporaryDirectory() as tmp:
        copy_samples(Path(tmp))
        s3fsv("put", "-q", str(Path(tmp) / "images"), "cams@main:images", "-m", "Ingest photos")
    inputs = s3fsv("log", "cams", "-n", "1", "--json", capture=True)
    input_commit = json.loads(inputs)[0]["id"]
    print(f"input commit: {input_commit}")

    run_id = time.strftime("run-%Y%m%d-%H%M%S")
    step("2. Run the unchanged detection script on the pinned input, commit with a run record")
    detect = [sys.executable, str(HERE / "detect.py"), "{in}/images", "{out}"]
    s3fsv("run", "--in", f"cams@{input_commit}:images", "--out", f"detections@main:{run_id}",
          "-m", f"Face detections {run_id}", "--", *detect)  # fmt: skip
    commit = json.loads(s3fsv("log", "detections", "-n", "1", "--json", capture=True))[0]["id"]

    step("3. The output commit and its run record")
    s3fsv("show", f"detections@{commit}")

    step("4. Reproduce the run: same inputs, same command, compare every output file")
    report = s3fsv("reproduce", f"detections@{commit}", capture=True)
    print(report, end="")
    if not report.strip().endswith("files identical") or "reproduced:" not in report:
        raise SystemExit("demo: reproduce printed no summary")

    step("5. Lineage of the output, back to the ingest commit; and what was made from it")
    s3fsv("lineage", f"detections@{commit}")
    s3fsv("lineage", f"detections@{commit}:{run_id}/summary.json")
    s3fsv("lineage", "--downstream", f"cams@{input_commit}")

    step("6. Mount the store and re-read the pinned input, checking every byte")
    s3fsv("mount", args.store, str(mountpoint))
    try:
        images = mountpoint / "cams" / "commit" / input_commit / "images"
        checked = 0
        for path in sorted(images.rglob("*")):
            if path.is_file():
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                recorded = os.getxattr(path, "user.s3fsv.sha256").decode()
                if digest != recorded:
                    raise SystemExit(f"demo: {path} does not match its recorded SHA-256")
                checked += 1
        print(f"{checked} input files re-read from commit {input_commit[:12]}: all match")
        result = mountpoint / "detections" / "commit" / commit / run_id / "summary.json"
        summary = json.loads(result.read_text())
        print(f"detector summary: {summary['images']} images, {summary['faces']} faces")
    finally:
        step("7. Unmount")
        s3fsv("unmount", str(mountpoint), check=False)

    step("8. A pipeline: the same script on every new ingest commit, by itself")
    done = subprocess.run([sys.executable, str(HERE / "pipeline_demo.py")])
    if done.returncode != 0:
        raise SystemExit("demo: the pipeline step failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
