"""Shared pieces of the mount model test: the reference-model helpers, the content blobs
Hypothesis draws, and readers of a mounted tree and of a commit (through the API)."""

from __future__ import annotations

import functools
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import strategies as st

from s3fsv.store.store import Store

CHUNK = 64 * 1024
NAMES = ["a", "b", "c", "d1", "d2"]
FOREIGN = "foreign"  # the foreign writer's directory; the mount's rules never touch it
MAX_DIR_DEPTH = 2  # mkdir creates directories at most this deep
REF_TTL = "0.2"
REFRESH_WAIT = 10.0  # seconds to wait for the mount to show a foreign commit

MAX_HANDLES = 3  # descriptors the machine keeps open across steps

Files = dict[str, bytes]
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Blob:
    """Content drawn by size and seed, so failing steps print short."""

    size: int
    seed: int

    @functools.cached_property
    def data(self) -> bytes:
        return random.Random(self.seed).randbytes(self.size)

    def __repr__(self) -> str:
        return f"Blob(size={self.size}, seed={self.seed})"


sizes = st.one_of(
    st.integers(0, 100),
    st.integers(0, 200_000),
    st.sampled_from([CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK + 7]),
)
blobs = st.builds(Blob, sizes, st.integers(0, 2**32 - 1))


def join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


def under(path: str, top: str) -> bool:
    return path == top or path.startswith(top + "/")


def moved(path: str, src: str, dst: str) -> str:
    return dst + path[len(src) :]


def describe_diff(want: bytes, got: bytes) -> str:
    first = next(
        (i for i, (x, y) in enumerate(zip(want, got, strict=False)) if x != y),
        min(len(want), len(got)),
    )
    return f"expected {len(want)} bytes, got {len(got)}; first difference at offset {first}"


def pread_all(fd: int, size: int, offset: int) -> bytes:
    """pread until ``size`` bytes or the end of the file (a short read is legal)."""
    out = bytearray()
    while len(out) < size:
        piece = os.pread(fd, size - len(out), offset + len(out))
        if not piece:
            break
        out += piece
    return bytes(out)


def assert_tree(
    where: str, got_files: Files, got_dirs: set[str], want_files: Files, want_dirs: set[str]
) -> None:
    assert got_dirs == want_dirs, (
        f"{where}: directories differ: missing {sorted(want_dirs - got_dirs)}, "
        f"unexpected {sorted(got_dirs - want_dirs)}"
    )
    assert got_files.keys() == want_files.keys(), (
        f"{where}: files differ: missing {sorted(want_files.keys() - got_files.keys())}, "
        f"unexpected {sorted(got_files.keys() - want_files.keys())}"
    )
    for path, want in sorted(want_files.items()):
        got = got_files[path]
        assert got == want, f"{where}: {path}: {describe_diff(want, got)}"


def read_tree(root: Path, *, check_sizes: bool = True) -> tuple[Files, set[str]]:
    """Every file (with its bytes) and directory below ``root``, through real syscalls."""

    def fail(err: OSError) -> None:
        raise err

    files: Files = {}
    dirs: set[str] = set()
    for here, dnames, fnames in os.walk(root, onerror=fail):
        rel = os.path.relpath(here, root)
        rel = "" if rel == "." else rel
        dirs.update(join(rel, d) for d in dnames)
        for f in fnames:
            path = Path(here) / f
            data = path.read_bytes()
            if check_sizes:
                size = os.stat(path).st_size
                assert size == len(data), f"{join(rel, f)}: st_size {size}, read {len(data)} bytes"
            files[join(rel, f)] = data
    return files, dirs


def api_tree(url: str, cid: str) -> tuple[Files, set[str]]:
    """A commit read through the Python API of a fresh Store (nothing cached)."""
    repo = Store.open(url).repo("cams")
    files: Files = {}
    dirs: set[str] = set()
    for path, entry in repo.walk(cid):
        if entry.kind == "dir":
            dirs.add(path)
        else:
            assert entry.kind == "file", f"{cid[:12]}:{path}: unexpected {entry.kind}"
            files[path] = b"".join(repo.read_file(entry))
            assert len(files[path]) == entry.size, f"{cid[:12]}:{path}: size mismatch"
    return files, dirs


class Orphan:
    """The content of a file no longer in the tree, shared by every descriptor open on it."""

    def __init__(self, data: bytes) -> None:
        self.data = data


class Handle:
    """A descriptor open (O_RDWR) across steps. ``path`` follows the file through renames; it
    is None once the file was unlinked or replaced, and ``orphan`` then holds its content.
    (Not a dataclass: Hypothesis would print every field, the content too.)"""

    def __init__(self, fd: int, path: str) -> None:
        self.fd = fd
        self.path: str | None = path
        self.orphan = Orphan(b"")
        self.orphan_dir: str | None = None  # the directory it was unlinked from

    def __repr__(self) -> str:
        where = repr(self.path) if self.path is not None else f"unlinked from {self.orphan_dir!r}"
        return f"Handle(fd={self.fd}, {where})"


@dataclass
class Snap:
    cid: str
    files: Files
    dirs: set[str]
    source: str  # "init", "mount" or "foreign"


def tracked(fn: F) -> F:
    """Mark the machine broken while a step runs, so teardown skips its checks after a failure
    (and the step's own error is the one reported)."""

    @functools.wraps(fn)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:  # a MountModel
        self.broken = True
        result = fn(self, *args, **kwargs)
        self.broken = False
        return result

    return wrapper  # type: ignore[return-value]
