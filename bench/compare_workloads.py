"""Workloads of ``bench/compare.py``: what is run on every system's view of the same data, and
the boto3 equivalents. Every function checks what it read or listed (a wrong answer is an
error, never a fast figure)."""

from __future__ import annotations

import json
import os
import random
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from common import S3_THREADS

MiB = 1 << 20
TTFB_BYTES = 4096
FIO_BLOCK = 4096
LIST_TIMEOUT = 900.0


def make_many(root: Path, dirs: int, per_dir: int) -> int:
    """``dirs`` x ``per_dir`` tiny files (distinct contents) below ``root/many/dNNN/``; returns
    the number of files."""
    n = 0
    for d in range(dirs):
        sub = root / "many" / f"d{d:03d}"
        sub.mkdir(parents=True)
        for _ in range(per_dir):
            (sub / f"f{n:06d}").write_bytes(b"%d\n" % n)
            n += 1
    return n


def count_entries(root: Path) -> int:
    """What ``find ROOT`` prints: the root and everything below it."""
    return 1 + sum(len(dirs) + len(files) for _, dirs, files in os.walk(root))


def run_find(root: Path, expect: int) -> None:
    out = subprocess.run(
        ["find", str(root)], capture_output=True, check=True, timeout=LIST_TIMEOUT
    ).stdout
    got = out.count(b"\n")
    if got != expect:
        raise RuntimeError(f"find {root} listed {got} entries, expected {expect}")


def run_ls_lr(root: Path, files: int) -> None:
    """``ls -lR``: every directory listed with every entry's attributes."""
    out = subprocess.run(
        ["ls", "-lR", str(root)], capture_output=True, check=True, timeout=LIST_TIMEOUT
    ).stdout
    got = sum(1 for line in out.splitlines() if line.startswith(b"-"))
    if got != files:
        raise RuntimeError(f"ls -lR {root} showed {got} files, expected {files}")


def first_bytes(path: Path) -> None:
    """Open a file never read and read its first 4 KiB."""
    with open(path, "rb", buffering=0) as fh:
        if len(fh.read(TTFB_BYTES)) != TTFB_BYTES:
            raise RuntimeError(f"short read of {path}")


def fio_randread(path: Path, io_bytes: int, seed: int) -> float:
    """``fio`` random 4 KiB reads (one job, psync) of ``io_bytes`` in all; returns fio's own
    job runtime in seconds (process start-up excluded, the same for every system)."""
    res = subprocess.run(
        ["fio", "--name=randread", f"--filename={path}", "--readonly", "--rw=randread",
         f"--bs={FIO_BLOCK}", f"--io_size={io_bytes}", "--ioengine=psync", "--invalidate=1",
         f"--randseed={seed}", "--norandommap", "--output-format=json"],
        capture_output=True, text=True, timeout=LIST_TIMEOUT,
    )  # fmt: skip
    if res.returncode != 0:
        raise RuntimeError(f"fio on {path} failed: {res.stderr.strip()[-300:]}")
    job = json.loads(res.stdout[res.stdout.index("{") :])["jobs"][0]
    if job["read"]["io_bytes"] != io_bytes:
        raise RuntimeError(f"fio read {job['read']['io_bytes']} bytes of {io_bytes}")
    return float(job["job_runtime"]) / 1000.0


def copy_tree(src: Path, names: list[str], dest: Path) -> None:
    """Copy the files ``names`` (relative to ``src``, sorted) below ``dest``, like ``cp -r``."""
    made: set[Path] = set()
    for name in names:
        target = dest / name
        if target.parent not in made:
            target.parent.mkdir(parents=True, exist_ok=True)
            made.add(target.parent)
        target.write_bytes((src / name).read_bytes())


def copy_file(src: Path, dest: Path) -> None:
    """Copy one file in 1 MiB reads and writes."""
    buf = memoryview(bytearray(MiB))
    with open(src, "rb", buffering=0) as fi, open(dest, "wb", buffering=0) as fo:
        while n := fi.readinto(buf):
            done = 0
            while done < n:
                done += fo.write(buf[done:n])


# -- boto3 --------------------------------------------------------------------------------------


def s3_first_bytes(client: Any, bucket: str, key: str) -> None:
    body = client.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{TTFB_BYTES - 1}")["Body"]
    if len(body.read()) != TTFB_BYTES:
        raise RuntimeError(f"short ranged GET of {key}")


def s3_random_reads(
    client: Any, bucket: str, key: str, size: int, io_bytes: int, seed: int
) -> None:
    """fio's job done with ranged GETs: random 4 KiB reads, one at a time."""
    rng = random.Random(seed)
    for _ in range(io_bytes // FIO_BLOCK):
        off = rng.randrange(size // FIO_BLOCK) * FIO_BLOCK
        rng_hdr = f"bytes={off}-{off + FIO_BLOCK - 1}"
        if len(client.get_object(Bucket=bucket, Key=key, Range=rng_hdr)["Body"].read()) != 4096:
            raise RuntimeError(f"short ranged GET of {key}")


def s3_list(client: Any, bucket: str, prefix: str, expect: int) -> None:
    """ListObjectsV2 of everything below ``prefix`` (what ``find`` needs from S3)."""
    n = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        n += len(page.get("Contents", []))
    if n != expect:
        raise RuntimeError(f"listed {n} objects below {prefix}, expected {expect}")


def s3_count(client: Any, bucket: str, prefix: str) -> int:
    n = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        n += sum(1 for o in page.get("Contents", []) if not o["Key"].endswith("/"))
    return n


def s3_put_tree(client: Any, bucket: str, src: Path, names: list[str], prefix: str) -> None:
    """``put_object`` per file, 16 threads."""

    def one(name: str) -> None:
        client.put_object(Bucket=bucket, Key=f"{prefix}/{name}", Body=(src / name).read_bytes())

    with ThreadPoolExecutor(S3_THREADS) as pool:
        list(pool.map(one, names))


def s3_put_big(client: Any, bucket: str, path: Path, key: str) -> None:
    """``upload_file`` with 8 MiB parts, 16 threads."""
    from boto3.s3.transfer import TransferConfig

    config = TransferConfig(
        multipart_threshold=8 * MiB, multipart_chunksize=8 * MiB, max_concurrency=S3_THREADS
    )
    client.upload_file(str(path), bucket, key, Config=config)
