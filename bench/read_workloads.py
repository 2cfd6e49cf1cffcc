"""Workloads of the read benchmark: the generated data, the reads timed through a mount, and
the boto3 baselines that read the same bytes."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import S3_THREADS

MiB = 1 << 20
READ_BLOCK = MiB
SMALL_SIZE = 100 * 1024
BUCKET = "readbench"
PLAIN = "plain"  # the same files as ordinary S3 objects, for the boto3 baselines


@dataclass(frozen=True)
class Dataset:
    local: Path  # local copy: big.bin and small/dNN/fNNNN.bin
    big: str  # relative path of the big file
    big_size: int
    small: list[str]  # relative paths of the small files, sorted

    @property
    def small_bytes(self) -> int:
        return len(self.small) * SMALL_SIZE


def make_dataset(root: Path, big_size: int, dirs: int, per_dir: int, seed: int = 1) -> Dataset:
    """Random (so incompressible and never de-duplicated) files on local disk."""
    rng = random.Random(seed)
    root.mkdir(parents=True)
    with open(root / "big.bin", "wb") as fh:
        left = big_size
        while left:
            n = min(left, 16 * MiB)
            fh.write(rng.randbytes(n))
            left -= n
    small = []
    for d in range(dirs):
        sub = root / "small" / f"d{d:02d}"
        sub.mkdir(parents=True)
        for i in range(per_dir):
            name = f"small/d{d:02d}/f{d * per_dir + i:05d}.bin"
            (root / name).write_bytes(rng.randbytes(SMALL_SIZE))
            small.append(name)
    os.sync()
    return Dataset(root, "big.bin", big_size, sorted(small))


def read_sequential(path: Path, expect: int) -> int:
    """``cat``-like: one open, 1 MiB reads to the end."""
    buf = bytearray(READ_BLOCK)
    view = memoryview(buf)
    total = 0
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(view):
            total += n
    if total != expect:
        raise RuntimeError(f"read {total} bytes from {path}, expected {expect}")
    return total


def read_small_files(root: Path, names: list[str]) -> int:
    """Whole-file reads in sorted order by one reader, like ``cv2.imread`` over a sorted list."""
    total = 0
    for name in names:
        with open(root / name, "rb") as fh:
            total += len(fh.read())
    if total != len(names) * SMALL_SIZE:
        raise RuntimeError(f"read {total} bytes of small files below {root}")
    return total


def run_find(root: Path, expect_entries: int) -> int:
    out = subprocess.run(["find", str(root)], capture_output=True, check=True).stdout
    lines = out.count(b"\n")
    if lines != expect_entries:
        raise RuntimeError(f"find {root} listed {lines} entries, expected {expect_entries}")
    return lines


def same_content(mounted: Path, local: Path) -> None:
    """Untimed check that a mounted file has exactly the local file's bytes."""
    a, b = hashlib.sha256(), hashlib.sha256()
    with open(mounted, "rb") as fm, open(local, "rb") as fl:
        while True:
            x, y = fm.read(4 * MiB), fl.read(4 * MiB)
            a.update(x)
            b.update(y)
            if not x and not y:
                break
    if a.digest() != b.digest():
        raise RuntimeError(f"{mounted} differs from {local}")


def upload_plain(client: Any, data: Dataset) -> None:
    from boto3.s3.transfer import TransferConfig

    client.upload_file(
        str(data.local / data.big),
        BUCKET,
        f"{PLAIN}/{data.big}",
        Config=TransferConfig(multipart_chunksize=8 * MiB, max_concurrency=8),
    )

    def one(name: str) -> None:
        client.put_object(
            Bucket=BUCKET, Key=f"{PLAIN}/{name}", Body=(data.local / name).read_bytes()
        )

    with ThreadPoolExecutor(S3_THREADS) as pool:
        list(pool.map(one, data.small))


def s3_stream(client: Any, key: str, expect: int) -> None:
    """boto3 ``get_object`` of the whole object, streamed in 1 MiB reads."""
    body = client.get_object(Bucket=BUCKET, Key=key)["Body"]
    total = 0
    while chunk := body.read(READ_BLOCK):
        total += len(chunk)
    if total != expect:
        raise RuntimeError(f"got {total} bytes of {key}, expected {expect}")


def s3_small(client: Any, names: list[str]) -> None:
    """boto3 ``get_object`` of every small file, 16 threads."""

    def one(name: str) -> int:
        return len(client.get_object(Bucket=BUCKET, Key=f"{PLAIN}/{name}")["Body"].read())

    with ThreadPoolExecutor(S3_THREADS) as pool:
        total = sum(pool.map(one, names))
    if total != len(names) * SMALL_SIZE:
        raise RuntimeError(f"got {total} bytes of small objects")
