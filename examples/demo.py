"""The main job, end to end: ingest photos, mount, run the unchanged detector, commit, show
provenance, re-read the pinned input, unmount.

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

    step("2. Mount the store")
    s3fsv("mount", args.store, str(mountpoint))
    try:
        images = mountpoint / "cams" / "commit" / input_commit / "images"
        run_id = time.strftime("run-%Y%m%d-%H%M%S")
        out = mountpoint / "detections" / "branch" / "main" / run_id
        step("3. Run the unchanged detection script on the mount")
        cmd = [sys.executable, str(HERE / "detect.py"), str(images), str(out)]
        print("$ " + " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)

        step("4. Commit the results")
        s3fsv("status", str(out))
        s3fsv("commit", str(out), "-m", f"Face detections {run_id}")

        step("5. The log, with provenance")
        s3fsv("log", "detections", "-n", "1")

        step("6. Re-read the pinned input commit and check every byte")
        checked = 0
        for path in sorted(images.rglob("*")):
            if path.is_file():
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                recorded = os.getxattr(path, "user.s3fsv.sha256").decode()
                if digest != recorded:
                    raise SystemExit(f"demo: {path} does not match its recorded SHA-256")
                checked += 1
        print(f"{checked} input files re-read from commit {input_commit[:12]}: all match")
        summary = json.loads((out / "summary.json").read_text())
        print(f"detector summary: {summary['images']} images, {summary['faces']} faces")
    finally:
        step("7. Unmount")
        s3fsv("unmount", str(mountpoint), check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
