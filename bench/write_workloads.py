"""Workloads of the write benchmark: the generated data, how it is written through a mount,
and the boto3 baselines that upload the same bytes."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import S3_THREADS

ROOT = Path(__file__).resolve().parent.parent
MiB = 1 << 20
SMALL_SIZE = 100 * 1024
BLOCK = MiB
BUCKET = "writebench"


@dataclass(frozen=True)
class Dataset:
    """Files on local disk: ``root/<rel>`` for every rel in ``files`` (rel -> SHA-256)."""

    root: Path
    files: dict[str, str]
    size_each: int

    @property
    def names(self) -> list[str]:
        return sorted(self.files)


def _rng(seed: int) -> Any:
    import numpy as np

    return np.random.default_rng(seed)


def make_small(root: Path, seed: int, dirs: int, per_dir: int) -> Dataset:
    """``dirs`` x ``per_dir`` files of random bytes below ``root/small/dNN/``."""
    rng = _rng(seed)
    files = {}
    for d in range(dirs):
        sub = root / "small" / f"d{d:02d}"
        sub.mkdir(parents=True)
        for i in range(per_dir):
            rel = f"small/d{d:02d}/f{d * per_dir + i:05d}.bin"
            data = rng.bytes(SMALL_SIZE)
            (root / rel).write_bytes(data)
            files[rel] = hashlib.sha256(data).hexdigest()
    return Dataset(root, files, SMALL_SIZE)


def make_big(root: Path, seed: int, size: int) -> Dataset:
    """One file ``root/big.bin`` of ``size`` random bytes."""
    rng = _rng(seed)
    root.mkdir(parents=True)
    digest = hashlib.sha256()
    with open(root / "big.bin", "wb") as fh:
        left = size
        while left:
            data = rng.bytes(min(left, 16 * MiB))
            digest.update(data)
            fh.write(data)
            left -= len(data)
    return Dataset(root, {"big.bin": digest.hexdigest()}, size)


def make_images(dest: Path, copies: int) -> list[str]:
    """The sample photographs, each re-encoded into ``copies`` byte-distinct variants (one pixel
    changed), so that a store de-duplicating by content still holds every file on its own."""
    import cv2
    from sample_data import copy_samples

    originals = copy_samples(dest.parent / "samples")
    dest.mkdir(parents=True)
    names = []
    for src in originals:
        img = cv2.imread(str(src), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise RuntimeError(f"cannot read sample image {src}")
        params = [cv2.IMWRITE_JPEG_QUALITY, 95] if src.suffix == ".jpg" else []
        for k in range(copies):
            name = f"{src.stem}_{k:02d}{src.suffix}"
            if k == 0:
                shutil.copyfile(src, dest / name)
            else:
                variant = img.copy()
                variant.reshape(-1)[0] = (int(variant.reshape(-1)[0]) + k) % 256
                ok, buf = cv2.imencode(src.suffix, variant, params)
                if not ok:
                    raise RuntimeError(f"cannot encode {name}")
                (dest / name).write_bytes(buf.tobytes())
            names.append(name)
    shutil.rmtree(dest.parent / "samples")
    return sorted(names)


def code_version() -> dict[str, str | None]:
    """The git commit of the checkout and a hash of uncommitted changes below ``s3fsv/`` (the code
    the mounts run), so that results can be tied to the code that produced them."""

    def git(*args: str) -> str | None:
        try:
            res = subprocess.run(
                ["git", *args], cwd=ROOT, capture_output=True, timeout=30, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return res.stdout.decode(errors="replace")

    head = git("rev-parse", "--short=12", "HEAD")
    diff = git("diff", "HEAD", "--", "s3fsv")
    return {
        "commit": head.strip() if head else None,
        "s3fsv_diff": hashlib.sha256(diff.encode()).hexdigest()[:12] if diff else None,
    }


def write_files(src: Dataset, dest: Path) -> int:
    """Copy every file of ``src`` below ``dest`` in sorted order, one process, like ``cp -r``."""
    made: set[Path] = set()
    total = 0
    for name in src.names:
        target = dest / name
        if target.parent not in made:
            target.parent.mkdir(parents=True, exist_ok=True)
            made.add(target.parent)
        data = (src.root / name).read_bytes()
        with open(target, "wb") as fh:
            total += fh.write(data)
    return total


def write_big(src: Path, dest: Path) -> int:
    """Copy one file in 1 MiB reads and writes."""
    buf = bytearray(BLOCK)
    view = memoryview(buf)
    total = 0
    with open(src, "rb", buffering=0) as fi, open(dest, "wb", buffering=0) as fo:
        while n := fi.readinto(view):
            written = 0
            while written < n:
                written += fo.write(view[written:n])
            total += n
    return total


def boto3_small(client: Any, data: Dataset, prefix: str) -> None:
    """``put_object`` per file (body read from local disk), 16 threads."""

    def one(name: str) -> None:
        body = (data.root / name).read_bytes()
        client.put_object(Bucket=BUCKET, Key=f"{prefix}/{name}", Body=body)

    with ThreadPoolExecutor(S3_THREADS) as pool:
        list(pool.map(one, data.names))


def boto3_big(client: Any, data: Dataset, prefix: str) -> None:
    """``upload_file`` with 8 MiB multipart parts and 16 threads."""
    from boto3.s3.transfer import TransferConfig

    config = TransferConfig(
        multipart_threshold=8 * MiB, multipart_chunksize=8 * MiB, max_concurrency=S3_THREADS
    )
    for name in data.names:
        client.upload_file(str(data.root / name), BUCKET, f"{prefix}/{name}", Config=config)
