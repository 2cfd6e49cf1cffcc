"""A camera fleet end to end: throw images at S3, import them as commits, detect, erase a house.

    python examples/camera_fleet.py                 # 20 cameras, 10,000 images
    python examples/camera_fleet.py --images 2000   # smaller, faster

It starts its own SeaweedFS on 127.0.0.1, with IAM and STS (bucket ``fleet``; the store is
``s3://fleet/store``), and drives everything through the ``s3fsv`` command:

1. 20 simulated cameras, 4 per house, each granted upload below its own prefix and holding
   only a token, ask the access gateway (``s3fsv serve``) for presigned PUT URLs and upload
   small JPEGs with plain HTTP: they land in ``STORE/_uploads/cams/incoming/<house>/<camera>/``
   (``--plain-puts``: boto3 puts to ``s3://fleet/incoming/`` with ``x-amz-meta-house`` and
   ``x-amz-meta-device`` instead, no gateway), while
2. ``s3fsv import --watch`` commits them in batches to ``cams@main:frames`` without copying
   them, and ``s3fsv pipeline watch`` runs a detection pipeline on every import commit (a
   cheap stand-in for ``examples/detect.py``: the image's size and mean byte, so that 10,000
   images take minutes, not hours, on two cores);
3. one house is purged with ``--cascade`` (its frames, their originals and the detections
   made from them), then ``s3fsv gc``; the bucket's bytes are printed before and after;
4. ``s3fsv audit log --action purge`` shows the purge, and ``s3fsv tombstones`` its record:
   who, when, why, patterns and counts.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from iamserver import IamSeaweedServer  # noqa: E402
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
        if args.plain_puts:
            self.server: SeaweedServer = SeaweedServer(work / "weed", grace=3.0).start()
        else:  # the gateway needs IAM and STS: slower to start
            self.server = IamSeaweedServer(work / "weed", session_seconds=900, grace=3.0).start()
        self.env = {
            **os.environ,
            **self.server.env(),
            "S3FSV_STORE": f"s3://{BUCKET}/store",
            "S3FSV_PRINCIPAL": "ops",  # the store's owner, in the audit trail
            "XDG_STATE_HOME": str(work / "state"),
            "XDG_CACHE_HOME": str(work / "cache"),
            "XDG_CONFIG_HOME": str(work / "config"),
        }
        self.gateway = ""
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

    def background(self, name: str, *args: str, env: dict[str, str] | None = None) -> None:
        say(f"$ s3fsv {' '.join(args)} &")
        log = open(self.work / f"{name}.log", "wb")  # noqa: SIM115
        self.procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "s3fsv.cli", *args],
                env=env or self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )

    def start_gateway(self, cameras: list[tuple[str, str]]) -> None:
        """Grant each camera upload below its prefix, give it a token, and serve the gateway
        with the gateway's own keys (it may only assume the ceiling role)."""
        assert isinstance(self.server, IamSeaweedServer) and self.server.gateway_keys
        self.s3fsv("audit", "init", "--retain-days", "1")
        for cam, prefix in cameras:
            self.s3fsv("access", "grant", cam, "upload", "cams", "--prefix", prefix, "--device",
                       show=cam == cameras[0][0])  # fmt: skip
            token = self.work / f"{cam}.token"
            self.s3fsv("access", "token", "create", cam, "--expires", "1d", "--out", str(token),
                       show=False)  # fmt: skip
        say(f"(and the same for the {len(cameras) - 1} other cameras)")
        port = free_port()
        self.gateway = f"http://127.0.0.1:{port}"
        key, secret = self.server.gateway_keys
        env = {**self.env, "AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret}
        self.background(
            "gateway", "serve", "--role-arn", self.server.role_arn, "--listen",
            f"127.0.0.1:{port}", env=env,
        )  # fmt: skip
        wait_for("the gateway", lambda: _answers(f"{self.gateway}/v1/health"), 60, poll=0.2)

    def bucket_bytes(self) -> dict[str, int]:
        """Bytes in the bucket: the cameras' originals (``incoming/``, or the gateway's
        ``_uploads/``), and the store itself."""
        sizes = {"originals": 0, "store": 0}
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
            for obj in page.get("Contents", ()):
                key = obj["Key"]
                original = key.startswith(("incoming/", "store/_uploads/"))
                sizes["originals" if original else "store"] += int(obj["Size"])
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def camera_names(count: int) -> list[tuple[str, str, str]]:
    """(camera, house, upload prefix) of each camera."""
    out = []
    for n in range(count):
        house, cam = f"h{n // CAMERAS_PER_HOUSE}", f"cam{n:02d}"
        out.append((cam, house, f"incoming/{house}/{cam}/"))
    return out


def cameras(fleet: Fleet, images: int, count: int) -> float:
    """Each camera puts its share of ``images`` small JPEGs; returns the seconds taken."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(7)
    per_camera = images // count
    started = time.monotonic()

    def frames(cam: str, prefix: str) -> list[tuple[str, bytes]]:
        base = rng.integers(0, 255, size=(24, 32, 3), dtype=np.uint8)
        out = []
        for i in range(per_camera):
            frame = np.clip(base.astype(int) + (i % 200), 0, 255).astype(np.uint8)
            out.append((f"{prefix}{cam}-{i:05d}.jpg", cv2.imencode(".jpg", frame)[1].tobytes()))
        return out

    def plain(cam: str, house: str, prefix: str) -> None:
        client = fleet.server.client()
        for key, jpeg in frames(cam, prefix):
            client.put_object(
                Bucket=BUCKET, Key=key, Body=jpeg, Metadata={"house": house, "device": cam}
            )

    def presigned(cam: str, house: str, prefix: str) -> None:
        token = (fleet.work / f"{cam}.token").read_text().strip()
        http = requests.Session()
        todo = frames(cam, prefix)
        for first in range(0, len(todo), 250):  # URLs last a few minutes: ask as we go
            batch = todo[first : first + 250]
            resp = http.post(
                f"{fleet.gateway}/v1/presign",
                json={"method": "PUT", "repo": "cams", "paths": [p for p, _ in batch]},
                headers={"Authorization": f"Bearer {token}"},
                timeout=30,
            )
            resp.raise_for_status()
            for (_, jpeg), signed in zip(batch, resp.json()["urls"], strict=True):
                http.put(signed["url"], data=jpeg, timeout=30).raise_for_status()

    upload = plain if fleet.args.plain_puts else presigned
    threads = [threading.Thread(target=upload, args=c) for c in camera_names(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.monotonic() - started


def wait_for(what: str, check: Any, timeout: float, poll: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"camera_fleet: {what} did not happen within {timeout:.0f} s")
        time.sleep(poll)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--cameras", type=int, default=20)
    parser.add_argument("--purge", default="h2", help="the house to erase (default h2)")
    parser.add_argument(
        "--plain-puts", action="store_true", help="cameras put with boto3, no gateway"
    )
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
    if args.plain_puts:
        source = f"s3://{BUCKET}/incoming/"
    else:
        say("\n== cameras: upload grants and tokens, and the gateway that presigns for them")
        fleet.start_gateway([(cam, prefix) for cam, _, prefix in camera_names(args.cameras)])
        source = f"s3://{BUCKET}/store/_uploads/cams/incoming/"  # where presigned PUTs land
    say(f"\n== 1-2. {args.cameras} cameras put {images} images; import --watch, pipeline watch")
    fleet.background(
        "import", "import", source, "cams@main:frames", "--watch",
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
    for proc in fleet.procs:  # the watchers (and the gateway: the cameras are done)
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    fleet.procs.clear()
    log = json.loads(fleet.s3fsv("log", "cams", "--json", show=False))
    print(sum(1 for c in log if "import" in c["provenance"]), "import commits;", end=" ")
    jobs = json.loads(fleet.s3fsv("pipeline", "status", "--json", "--limit", "100", show=False))
    print(f"{len(jobs['jobs'])} detection jobs, all {set(j['state'] for j in jobs['jobs'])}")

    say(f"\n== 3. purge house {args.purge} with --cascade, then gc")
    before = fleet.bucket_bytes()
    meta = ["--meta", f"house={args.purge}"] if args.plain_puts else []  # no metadata in URLs
    fleet.s3fsv(
        "purge", "cams", "--match", f"frames/{args.purge}/**", *meta,
        "--reason", f"house {args.purge} cancelled its contract: erase its images", "--cascade",
    )  # fmt: skip
    # Nothing else writes now (the watchers stopped), so no grace period is needed: the old
    # trees and commits go too. Objects the purge condemned would go even with one.
    fleet.s3fsv("gc", "--grace", "0")
    after = fleet.bucket_bytes()
    for part in ("originals", "store"):
        say(f"bucket {part:<10} {before[part]:>12,} bytes before, {after[part]:>12,} after")
    total_before, total_after = sum(before.values()), sum(after.values())
    say(f"bucket total     {total_before:>12,} bytes before, {total_after:>12,} after")
    left = fleet.s3fsv("ls", "-R", "cams@main:frames", show=False)
    assert f"frames/{args.purge}/" not in left and f"{args.purge}/" not in left

    say("\n== 4. the audit trail and the tombstones")
    if not args.plain_puts:
        fleet.s3fsv("audit", "log", "--action", "purge")
    fleet.s3fsv("tombstones")


if __name__ == "__main__":
    sys.exit(main())
