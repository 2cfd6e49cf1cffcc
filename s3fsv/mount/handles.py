"""What the filesystem hands out and keeps per open file: attributes, snapshots, handles."""

from __future__ import annotations

import os
import stat
import threading
from dataclasses import dataclass, field
from typing import NamedTuple

import xxhash
from cachetools import TTLCache

from s3fsv.mount.overlay import BranchOverlay, LocalHandle
from s3fsv.store.objects import TreeEntry
from s3fsv.store.reader import ChunkReader, Sequential
from s3fsv.store.repo import Repository


class Attr(NamedTuple):
    """What ``stat`` shows. ``mode`` includes the file type bits. A tuple: a listing makes one
    per entry, a walk of a million files a million (a frozen dataclass took 2.8x as long)."""

    mode: int
    size: int
    mtime_ns: int
    ino: int
    nlink: int = 1


def inode(key: str) -> int:
    """A stable 63-bit inode number for a path identity (collisions are astronomically rare).
    Computed for every entry a listing returns: a fast non-cryptographic hash (inode numbers
    only tell entries apart; nothing trusts them)."""
    return xxhash.xxh3_64_intdigest(key.encode()) >> 1 or 1


@dataclass
class RepoState:
    """Per-repo machinery shared by every view of that repo in this mount."""

    repo: Repository
    reader: ChunkReader
    heads: TTLCache[str, str]
    recent: TTLCache[str, list[str]]
    lock: threading.Lock = field(default_factory=threading.Lock)
    moves: int = 0  # heads set by this mount's commits, so a slower refresh never undoes one


@dataclass(frozen=True)
class Snapshot:
    """A resolved view root: a commit of a repo, and whether it can ever change."""

    repo: str
    commit: str
    tree: str
    immutable: bool
    label: str  # "commit/<id>", "tag/<name>", "branch/<name>" or "@<ref>"


@dataclass
class OpenFile:
    """An open committed file: reads go through the shared cache (``ino``: as of the open)."""

    state: RepoState
    entry: TreeEntry
    snapshot: Snapshot
    ino: int
    seq: Sequential = field(default_factory=Sequential)

    def attr(self, writable: bool) -> Attr:
        perm = self.entry.mode & 0o7777 & (~0 if writable else ~0o222)
        return Attr(stat.S_IFREG | perm, self.entry.size, self.entry.mtime_ns, self.ino)


@dataclass
class OpenStaged:
    """An open staged file of a writable branch: reads and writes go to its data file."""

    overlay: BranchOverlay
    local: LocalHandle
    ino: int
    write_only: bool = False
    command: str | None = None  # the command line that opened it for writing, if known

    def attr(self) -> Attr:
        st = os.fstat(self.local.fd)
        return Attr(stat.S_IFREG | self.local.mode, st.st_size, st.st_mtime_ns, self.ino)


def write_only(flags: int) -> bool:
    return flags & os.O_ACCMODE == os.O_WRONLY
