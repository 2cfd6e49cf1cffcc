"""Shared pieces of the pipeline tests: a store with repos, images, and reading output trees."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

import s3fsv
from tests.mounting import run_cli

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

# A cheap, deterministic per-datum command: for each file below {in}, writes
# {out}/<path relative to {in}/images>.sha with its hash; fails on a file named bad.txt;
# appends "<datum> <pid>" to $RUNLOG when set (what ran, and in which process); sleeps
# $DATUM_SLEEP seconds per datum when set.
HASHER = r"""
import hashlib, os, sys, time
src, out = sys.argv[1], sys.argv[2]
for root, dirs, files in os.walk(src):
    dirs.sort()
    for name in sorted(files):
        path = os.path.join(root, name)
        rel = os.path.relpath(path, src)
        if name == "bad.txt":
            print(f"cannot process {rel}: bad input", file=sys.stderr)
            sys.exit(3)
        if os.environ.get("RUNLOG"):
            with open(os.environ["RUNLOG"], "a") as log:
                log.write(f"{rel} {os.getpid()}\n")
        time.sleep(float(os.environ.get("DATUM_SLEEP", "0")))
        target = os.path.join(out, rel + ".sha")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(path, "rb") as fh, open(target, "w") as dst:
            dst.write(hashlib.sha256(fh.read()).hexdigest() + "\n")
print("hashed")
with open(os.path.join(out, "summary.txt"), "w") as fh:
    fh.write("batch artifact\n")
"""


def hasher_command(script: Path) -> list[str]:
    script.write_text(HASHER)
    return [sys.executable, str(script), "{in}/images", "{out}"]


def hash_spec(tmp_path: Path, **fields: object) -> Path:
    """``hash.toml``: the hasher over ``cams@main:images/*`` into ``out@main``, with
    ``fields`` (batch, workers...) added."""
    spec = tmp_path / "hash.toml"
    spec.write_text(
        toml(
            name="hash",
            input="cams@main:images/*",
            output="out@main",
            command=hasher_command(tmp_path / "hasher.py"),
            **fields,
        )
    )
    return spec


def cli(env: dict[str, str], *args: str, check: bool = True) -> Any:
    return run_cli(*args, env=env, check=check, timeout=300)


def tree(repo: s3fsv.Repo, ref: str) -> dict[str, str]:
    """path -> sha256 of every file of ``ref``."""
    return {e.path: e.sha256 for e in repo.walk(ref) if e.kind == "file"}


def toml(**fields: object) -> str:
    def value(v: object) -> str:
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, int):
            return str(v)
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    return "".join(f"{k} = {value(v)}\n" for k, v in fields.items())


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
