"""A camera simulator: uploads frames through an s3fsv access gateway with nothing but
``requests`` and a token. It never sees cloud credentials: the gateway presigns one PUT URL per
frame, valid for a few minutes, below the camera's own upload prefix, and the storage engine
refuses anything else.

    python examples/device_upload.py --gateway http://127.0.0.1:8700 \\
        --token-file cam-17.token --repo cams --prefix incoming/cam-17/ --frames 5

Exit status: 0 when every frame was stored, 1 otherwise (the reason is printed per frame).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from pathlib import Path

import requests


def presign(gateway: str, token: str, repo: str, paths: list[str]) -> list[dict]:
    resp = requests.post(
        f"{gateway.rstrip('/')}/v1/presign",
        json={"method": "PUT", "repo": repo, "paths": paths},
        headers={"Authorization": f"Bearer {token}"},
        timeout=15,
    )
    if resp.status_code != 200:
        raise SystemExit(
            f"device: the gateway refused ({resp.status_code}): {resp.json()['error']}"
        )
    return resp.json()["urls"]


def frame(n: int) -> bytes:
    """A stand-in for a JPEG: a header, a timestamp and noise."""
    return b"\xff\xd8\xff\xe0fake-jpeg" + f"{time.time():.6f} #{n}".encode() + os.urandom(2048)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gateway", required=True, help="the gateway's URL")
    ap.add_argument("--token-file", required=True, help="file holding this device's token")
    ap.add_argument("--repo", required=True, help="the repo to upload into")
    ap.add_argument("--prefix", default="", help="the device's upload prefix (incoming/NAME/)")
    ap.add_argument("--frames", type=int, default=3, help="how many frames to send")
    ap.add_argument("files", nargs="*", help="files to send instead of simulated frames")
    args = ap.parse_args()
    token = Path(args.token_file).read_text().strip()
    if args.files:
        items = [(Path(f).name, Path(f).read_bytes()) for f in args.files]
    else:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        items = [(f"frame-{stamp}-{n:04d}.jpg", frame(n)) for n in range(args.frames)]
    urls = presign(args.gateway, token, args.repo, [args.prefix + name for name, _ in items])
    failed = 0
    for (_, data), signed in zip(items, urls, strict=True):
        resp = requests.put(signed["url"], data=data, timeout=60)
        ok = resp.status_code == 200
        failed += not ok
        digest = hashlib.sha256(data).hexdigest()[:12]
        print(
            f"{'stored' if ok else 'REFUSED'} {signed['path']} ({len(data)} bytes, {digest})"
            + ("" if ok else f": HTTP {resp.status_code}")
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
