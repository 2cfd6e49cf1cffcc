#!/usr/bin/env python3
"""Copy a few sample photographs from the installed scikit-image package, offline.

    python sample_data.py DEST        # writes DEST/images/*.png|jpg

The files are taken byte for byte from ``skimage/data/`` inside the installed scikit-image
wheel (found with ``importlib.util.find_spec``, without importing scikit-image and without
network access). Only real photographs whose licence scikit-image documents as public domain,
CC0 or free of known copyright restrictions are used; see README.md for the per-image sources.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
from pathlib import Path

# file name in skimage/data -> (what it shows, licence as stated in skimage.data's docstrings)
SAMPLES: dict[str, tuple[str, str]] = {
    "astronaut.png": (
        "astronaut Eileen Collins (NASA)",
        "no known copyright restrictions, public domain",
    ),
    "camera.png": ("man with a camera (Lav Varshney)", "CC0"),
    "chelsea.png": ("Chelsea the cat (Stefan van der Walt)", "CC0"),
    "clock_motion.png": (
        "motion-blurred wall clock (Stefan van der Walt)",
        "public domain",
    ),
    "coffee.png": ("coffee cup (Rachel Michetti, Pikolo Espresso Bar)", "CC0"),
    "coins.png": ("coins (Brooklyn Museum collection)", "no known copyright restrictions"),
    "rocket.jpg": ("Falcon 9 launch with DSCOVR (SpaceX)", "public domain"),
}


class SampleDataError(Exception):
    pass


def skimage_data_dir() -> Path:
    """``skimage/data`` of the installed scikit-image, located without importing it."""
    spec = importlib.util.find_spec("skimage")
    if spec is None:
        raise SampleDataError("scikit-image is not installed (pip install scikit-image)")
    if spec.submodule_search_locations:
        package_dir = Path(next(iter(spec.submodule_search_locations)))
    elif spec.origin:
        package_dir = Path(spec.origin).parent
    else:
        raise SampleDataError("cannot locate the scikit-image package on disk")
    return package_dir / "data"


def copy_samples(dest: Path | str) -> list[Path]:
    """Copy the sample photographs to ``dest/images/``; returns the written paths, sorted."""
    source = skimage_data_dir()
    missing = sorted(name for name in SAMPLES if not (source / name).is_file())
    if missing:
        raise SampleDataError(f"not in {source}: {', '.join(missing)}")
    target = Path(dest) / "images"
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for name in sorted(SAMPLES):
        shutil.copyfile(source / name, target / name)
        written.append(target / name)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="sample_data.py",
        description="Copy sample photographs shipped with scikit-image to DEST/images/ "
        "(no network needed).",
    )
    parser.add_argument("dest", metavar="DEST", type=Path, help="destination directory")
    args = parser.parse_args(argv)
    try:
        paths = copy_samples(args.dest)
    except (SampleDataError, OSError) as exc:
        print(f"sample_data.py: error: {exc}", file=sys.stderr)
        return 2
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
