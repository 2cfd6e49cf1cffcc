"""A camera fleet end to end: throw images at S3, import them as commits, detect, erase a house.

    python examples/camera_fleet.py                 # 20 cameras, 10,000 images
    python examples/camera_fleet.py --images 2000   # smaller, faster

It starts its own SeaweedFS on 127.0.0.1 (bucket ``fleet``; the store is ``s3://fleet/store``)
and drives everything through the ``s3fsv`` command:

1. 20 simulated cameras, 4 per house, put small JPEGs into the plain prefix ``incoming/`` with
   boto3 (``incoming/<house>/<camera>/<camera>-<n>.jpg``, ``x-amz-meta-house`` and
   ``x-amz-meta-device`` set), while
2. ``s3fsv import --watch`` commits them in batches to ``cams@main:frames`` without copying
   them, and ``s3fsv pipeline watch`` runs a detection pipeline on every import commit (a
   cheap stand-in for ``examples/detect.py``: the image's size and mean byte, so that 10,000
   images take minutes, not hours, on two cores);
3. one house is purged with ``--cascade`` (its frames, their originals in ``incoming/`` and
   the detections made from them), then ``s3fsv gc``; the bucket's bytes are printed before
   and after;
4. ``s3fsv tombstones`` shows the purge: who, when, why, patterns and counts.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from s3server import SeaweedServer  # noqa: E402

BUCKET = "fleet"
CAMERAS_PER_HOUSE = 4
DETECT = """\
import os, sys, json
src, out = sys.argv[1], sys.argv[2]
for root, _, files in os.walk(src):
    for name in sorted(files):
        data = open(os.path.join(root, name), "rb").read()
        rel = os.path.relpath(os.path.join(root, name), src)
        os.makedirs(os.path.join(out, os.path.dirname(rel)), exist_ok=True)
        with open(os.path.join(out, rel + ".json"), "w") as fh:
            json.dump({"bytes": len(data), "mean": sum(data) // max(len(data), 1)}, fh)
"""


def say(text: str) -> None:
    print(text, flush=True)


class Fleet:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.server = SeaweedServer(work / "weed", grace=3.0).start()
        self.env = {
            **os.environ,
            **self.server.env(),
            "S3FSV_STORE": f"s3://{BUCKET}/store",
            "XDG_STATE_HOME": str(work / "state"),
            "XDG_CACHE_HOME": str(work / "cache"),
            "XDG_CONFIG_HOME": str(work / "config"),
        }
        self.client = self.server.client()
        self.client.create_bucket(Bucket=BUCKET)
        self.procs: list[subprocess.Popen[bytes]] = []

    def s3fsv(self, *args: str, show: bool = True) -> str:
        if show:
            say("$ s3fsv " + " ".join(args))
        done = subprocess.run(
            [sys.executable, "-m", "s3fsv.cli", *args], env=self.env, text=True, capture_output=True
        )
        if done.returncode != 0:
            raise SystemExit(f"s3fsv {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        if show and done.stdout:
            print(done.stdout, end="", flush=True)
        return done.stdout

    def background(self, name: str, *args: str) -> None:
        say(f"$ s3fsv {' '.join(args)} &")
        log = open(self.work / f"{name}.log", "wb")  # noqa: SIM115
        self.procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "s3fsv.cli", *args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )

    def bucket_bytes(self) -> dict[str, int]:
        sizes = {"incoming/": 0, "store/": 0}
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
            for obj in page.get("Contents", ()):
                top = "incoming/" if obj["Key"].startswith("incoming/") else "store/"
                sizes[top] += int(obj["Size"])
        return sizes

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.server.stop()


def cameras(fleet: Fleet, images: int, count: int) -> float:
    """Each camera puts its share of ``images`` small JPEGs; returns the seconds taken."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(7)
    per_camera = images // count
    started = time.monotonic()

    def camera(n: int) -> None:
        client = fleet.server.client()
        house, cam = f"h{n // CAMERAS_PER_HOUSE}", f"cam{n:02d}"
        base = rng.integers(0, 255, size=(24, 32, 3), dtype=np.uint8)
        for i in range(per_camera):
            frame = np.clip(base.astype(int) + (i % 50), 0, 255).astype(np.uint8)
            jpeg = cv2.imencode(".jpg", frame)[1].tobytes()
            client.put_object(
                Bucket=BUCKET,
                Key=f"incoming/{house}/{cam}/{cam}-{i:05d}.jpg",
                Body=jpeg,
                Metadata={"house": house, "device": cam},
            )

    threads = [threading.Thread(target=camera, args=(n,)) for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.monotonic() - started


def wait_for(what: str, check: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"camera_fleet: {what} did not happen within {timeout:.0f} s")
        time.sleep(2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--cameras", type=int, default=20)
    parser.add_argument("--purge", default="h2", help="the house to erase (default h2)")
    args = parser.parse_args()
    images = args.images - args.images % args.cameras
    with tempfile.TemporaryDirectory(prefix="camera-fleet-") as tmp:
        fleet = Fleet(args, Path(tmp))
        try:
            run(fleet, images, args)
        finally:
            fleet.close()
    return 0


def run(fleet: Fleet, images: int, args: argparse.Namespace) -> None:
    fleet.s3fsv("init")
    fleet.s3fsv("repo", "create", "cams")
    fleet.s3fsv("repo", "create", "detections")
    fleet.s3fsv(
        "pipeline", "create", "--name", "detect", "--input", "cams@main:frames/*/*/*",
        "--output", "detections@main", "--batch", "500", "--workers", "2",
        "--", sys.executable, "-c", DETECT, "{in}/frames", "{out}",
    )  # fmt: skip
    say(f"\n== 1-2. {args.cameras} cameras put {images} images; import --watch, pipeline watch")
    fleet.background(
        "import", "import", f"s3://{BUCKET}/incoming/", "cams@main:frames", "--watch",
        "--interval", "5", "--batch", "1000",
    )  # fmt: skip
    fleet.background("pipeline", "pipeline", "watch", "--interval", "2", "--quiet")
    took = cameras(fleet, images, args.cameras)
    say(f"cameras: {images} images in {took:.1f} s ({images / took:.0f}/s)")

    def imported() -> bool:
        files = fleet.s3fsv("ls", "-R", "--json", "cams@main:frames", show=False)
        return sum(1 for e in json.loads(files) if e["type"] == "file") == images

    started = time.monotonic()
    wait_for("the import of every image", imported, 1800)
    say(f"every image imported ({time.monotonic() - started:.1f} s after the last put)")
    wait_for(
        "the detections of every import commit",
        lambda: (
            not fleet.s3fsv("pipeline", "pending", "detect", show=False).strip()
            and all(
                j["state"] != "running"
                for j in json.loads(fleet.s3fsv("pipeline", "status", "--json", show=False))["jobs"]
            )
        ),
        3600,
    )
    for proc in fleet.procs:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    fleet.procs.clear()
    log = json.loads(fleet.s3fsv("log", "cams", "--json", show=False))
    print(sum(1 for c in log if "import" in c["provenance"]), "import commits;", end=" ")
    jobs = json.loads(fleet.s3fsv("pipeline", "status", "--json", "--limit", "100", show=False))
    print(f"{len(jobs['jobs'])} detection jobs, all {set(j['state'] for j in jobs['jobs'])}")

    say(f"\n== 3. purge house {args.purge} with --cascade, then gc")
    before = fleet.bucket_bytes()
    fleet.s3fsv(
        "purge", "cams", "--match", f"frames/{args.purge}/**", "--meta", f"house={args.purge}",
        "--reason", f"house {args.purge} cancelled its contract: erase its images", "--cascade",
    )  # fmt: skip
    # Nothing else writes now (the watchers stopped), so no grace period is needed: the old
    # trees and commits go too. Objects the purge condemned would go even with one.
    fleet.s3fsv("gc", "--grace", "0")
    after = fleet.bucket_bytes()
    for part in ("incoming/", "store/"):
        say(f"bucket {part:<10} {before[part]:>12,} bytes before, {after[part]:>12,} after")
    total_before, total_after = sum(before.values()), sum(after.values())
    say(f"bucket total     {total_before:>12,} bytes before, {total_after:>12,} after")
    left = fleet.s3fsv("ls", "-R", "cams@main:frames", show=False)
    assert f"frames/{args.purge}/" not in left and f"{args.purge}/" not in left

    say("\n== 4. the tombstones")
    fleet.s3fsv("tombstones")


if __name__ == "__main__":
    sys.exit(main())
