"""The pipelines part of the demo: detect.py becomes a pipeline that reacts to new ingest
commits by itself.

    S3FSV_STORE=... python examples/pipeline_demo.py

Needs a store whose ``cams@main`` has images under ``images/`` (``examples/demo.py`` makes
one). Creates (or updates) the pipeline ``detect`` from ``cams@main:images/*`` to
``detections@pipeline``, starts ``s3fsv pipeline watch`` in the background, ingests one new
photograph as a new commit of ``cams@main``, waits until the watcher has run the job for it,
prints the job table and stops the watcher.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
S3FSV = [sys.executable, "-m", "s3fsv.cli"]
WAIT = 300.0


def s3fsv(*args: str, check: bool = True) -> str:
    print("$ s3fsv " + " ".join(args), flush=True)
    done = subprocess.run([*S3FSV, *args], text=True, stdout=subprocess.PIPE)
    if check and done.returncode != 0:
        raise SystemExit(f"demo: 's3fsv {' '.join(args)}' failed (exit {done.returncode})")
    print(done.stdout, end="", flush=True)
    return done.stdout


def quiet(*args: str) -> str:
    return subprocess.run([*S3FSV, *args], text=True, capture_output=True, check=True).stdout


def wait_for_job(input_commit: str) -> dict:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        jobs = json.loads(quiet("pipeline", "status", "detect", "--json"))["jobs"]
        for job in jobs:
            if job["job"] == input_commit and job["state"] != "running":
                return job
        time.sleep(1.0)
    raise SystemExit(f"demo: no job for {input_commit[:12]} after {WAIT:.0f} s")


def main() -> int:
    branches = json.loads(quiet("branch", "list", "detections", "--json"))
    if "pipeline" not in branches:
        s3fsv("branch", "create", "detections", "pipeline")
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "detect.toml"
        command = [sys.executable, str(HERE / "detect.py"), "{in}/images", "{out}"]
        spec.write_text(
            'name = "detect"\n'
            'input = "cams@main:images/*"\n'
            'output = "detections@pipeline"\n'
            f"command = {json.dumps(command)}\n"
            "batch = 4\n"
        )
        print(spec.read_text(), end="")
        existing = quiet("pipeline", "list")
        verb = (
            "update"
            if any(line.split("\t")[0] == "detect" for line in existing.splitlines())
            else "create"
        )
        s3fsv("pipeline", verb, "-f", str(spec))

    print("$ s3fsv pipeline watch detect --interval 1 &", flush=True)
    watcher = subprocess.Popen(
        [*S3FSV, "pipeline", "watch", "detect", "--interval", "1", "--quiet"],
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        head = json.loads(quiet("log", "cams", "-n", "1", "--json"))[0]["id"]
        first = wait_for_job(head)
        print(
            f"the watcher ran the job for {head[:12]}: {first['state']}, "
            f"{first['processed']} datums run, {first['skipped']} skipped"
        )

        import cv2  # the new photograph: a mirrored sample, so its bytes are new

        with tempfile.TemporaryDirectory() as tmp:
            sys.path.insert(0, str(HERE))
            from sample_data import copy_samples

            source = sorted(copy_samples(Path(tmp) / "s"))[0]
            new = Path(tmp) / "new" / f"mirrored-{int(time.time())}.png"
            new.parent.mkdir()
            cv2.imwrite(str(new), cv2.flip(cv2.imread(str(source)), 1))
            s3fsv("put", "-q", str(new.parent), "cams@main:images", "-m", "Ingest one new photo")
        head = json.loads(quiet("log", "cams", "-n", "1", "--json"))[0]["id"]
        job = wait_for_job(head)
        print(
            f"the watcher ran the job for the new commit {head[:12]} by itself: "
            f"{job['state']}, {job['processed']} run, {job['skipped']} skipped"
        )
        s3fsv("pipeline", "status", "detect")
    finally:
        os.killpg(watcher.pid, signal.SIGTERM)
        watcher.wait(timeout=120)
    return 0 if job["state"] == "succeeded" and job["processed"] == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
