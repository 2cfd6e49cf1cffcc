"""Bulk transfer between local files and a repo: ``put`` (one commit) and ``get``.

Both run in parallel, report progress through a callback, and verify: ``put`` refuses files that
change while being read, ``get`` checks every file's SHA-256 before it appears under its final
name (written to a temporary name, then renamed), so an interrupted ``get`` never leaves a file
that looks complete but is not.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from s3fsv.errors import (
    CorruptObject,
    InvalidName,
    NotADirectory,
    NotFound,
    S3fsvError,
    UsageError,
)
from s3fsv.store.objects import TreeEntry, check_name
from s3fsv.store.put_tree import Counts, TreeBuilder, merge_dir
from s3fsv.store.repo import Repository
from s3fsv.store.tree import Change, dir_entries, resolve, write_dir
from s3fsv.store.upload import Uploader, upload_files

log = logging.getLogger(__name__)

Progress = Callable[[int], None]


@dataclass(frozen=True)
class LocalItem:
    """One thing to upload: ``rel`` is its repo path; ``kind`` is file, dir or link."""

    local: Path
    rel: str
    kind: str
    size: int
    mode: int
    mtime_ns: int


def scan_local(source: Path, dest: str) -> list[LocalItem]:
    """Everything ``put`` would upload from ``source`` to repo path ``dest``.

    A file maps to ``dest`` itself (or its own name at the root when ``dest`` is empty); a
    directory maps its contents below ``dest``. ``source`` itself is followed when it is a
    symlink (a dataset directory often is one); symlinks below it are stored as links, never
    followed. Names s3fsv refuses raise ``InvalidName`` naming the local path; sockets, devices
    and FIFOs are skipped with a warning.
    """
    try:
        st = source.stat()
    except FileNotFoundError:
        if source.is_symlink():
            raise UsageError(f"{source} is a broken symbolic link") from None
        raise UsageError(f"no such file or directory: {source}") from None
    if not stat.S_ISDIR(st.st_mode):
        if _kind(st) is None:
            raise UsageError(f"{source} is not a regular file, directory or symlink")
        return [_item(source, dest or check_name(source.name), st)]
    items: list[LocalItem] = []
    if dest:
        items.append(_item(source, dest, st))
    for root, dirs, files in os.walk(source):
        dirs.sort()
        base = Path(root)
        for name in sorted(dirs) + sorted(files):
            path = base / name
            try:
                check_name(name)
            except InvalidName as err:
                raise InvalidName(f"cannot upload {path}: {err}") from None
            rel_local = path.relative_to(source).as_posix()
            rel = f"{dest}/{rel_local}" if dest else rel_local
            lst = path.lstat()
            if _kind(lst) is None:
                log.warning("skipping %s: not a regular file, directory or symlink", path)
                continue
            items.append(_item(path, rel, lst))
    return items


def _kind(st: os.stat_result) -> str | None:
    if stat.S_ISREG(st.st_mode):
        return "file"
    if stat.S_ISDIR(st.st_mode):
        return "dir"
    if stat.S_ISLNK(st.st_mode):
        return "link"
    return None


def _item(path: Path, rel: str, st: os.stat_result) -> LocalItem:
    kind = _kind(st) or "file"
    return LocalItem(path, rel, kind, st.st_size, stat.S_IMODE(st.st_mode), st.st_mtime_ns)


def put(
    repo: Repository,
    branch: str,
    source: Path,
    dest: str,
    message: str,
    *,
    threads: int = 16,
    progress: Progress | None = None,
    author: str | None = None,
    base: str | None = None,
    items: list[LocalItem] | None = None,
    provenance: dict[str, Any] | None = None,
) -> tuple[str, int]:
    """Upload ``source`` below ``dest`` on ``branch`` as one commit; return (commit id, files).

    The commit is made against the head read before the upload; if the branch moves meanwhile,
    the usual rebase-or-conflict rules of ``Repository.commit`` apply (``base``: that head, when
    the caller has read it already). When nothing changes, no commit is made and the id is the
    branch head's. A directory is uploaded as a stream (``put_tree``): memory stays bounded
    whatever its size, and a concurrent commit conflicts when it changed anything below the
    top-level names the upload writes. ``items`` (``scan_local(source, dest)``) takes the
    older path instead, which keeps every path in memory and conflicts per file.
    """
    if base is None:
        base = repo.branch_head(branch).commit
    _check_same_kind(repo, branch, base, source, dest)
    if items is None and source.is_dir():
        changes, files = streamed_changes(repo, base, source, dest, threads, progress)
    else:
        if items is None:
            items = scan_local(source, dest)
        changes = local_changes(repo, items, threads=threads, progress=progress)
        files = sum(1 for i in items if i.kind == "file")
    cid = repo.commit(
        branch,
        changes,
        message,
        author=author,
        base=base,
        allow_empty=False,
        provenance=provenance,
    )
    return cid, files


def streamed_changes(
    repo: Repository,
    base: str,
    source: Path,
    dest: str,
    threads: int,
    progress: Progress | None,
) -> tuple[dict[str, Change], int]:
    """Upload directory ``source`` as a stream (``put_tree``) and merge it into ``dest`` of
    commit ``base``: the changes to commit (one entry per top-level name written) and the
    number of files."""
    with Uploader(repo.objects, repo.chunk_size, threads=threads, progress=progress) as up:
        builder = TreeBuilder(repo.objects, up)
        new = builder.build(source)
    root = repo.commit_object(base).tree
    if not dest:
        old = {e.name: e for e in dir_entries(repo.objects, root)}
        merged = merge_dir(repo.objects, root, new)
        return {e.name: e for e in merged if old.get(e.name) != e}, builder.counts.files
    try:
        there = resolve(repo.objects, root, dest)
    except (NotFound, NotADirectory):
        there = None
    st = source.stat()
    inside = merge_dir(repo.objects, there.tree if there and there.kind == "dir" else None, new)
    entry = TreeEntry(
        dest.rsplit("/", 1)[-1], "dir", stat.S_IMODE(st.st_mode), st.st_mtime_ns,
        tree=write_dir(repo.objects, inside),
    )  # fmt: skip
    return {dest: entry}, builder.counts.files


def count_local(source: Path) -> Counts:
    """Files, symlinks and file bytes below ``source`` (a file counts itself), without keeping
    the listing: what a progress bar needs before a streamed ``put``."""
    counts = Counts()
    if not source.is_dir():
        counts.files, counts.bytes = 1, source.stat().st_size
        return counts
    for base, dirs, files in os.walk(source):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(base, d))]:
            st = os.lstat(os.path.join(base, name))
            if stat.S_ISLNK(st.st_mode):
                counts.links += 1
            elif stat.S_ISREG(st.st_mode):
                counts.files += 1
                counts.bytes += st.st_size
    return counts


def local_changes(
    repo: Repository,
    items: list[LocalItem],
    *,
    threads: int = 16,
    progress: Progress | None = None,
) -> dict[str, Change]:
    """Upload the files of ``items`` (from ``scan_local``) and return the tree entries that
    add them, their directories and symlinks, keyed by repo path; ready to commit once this
    returns."""
    changes: dict[str, Change] = {i.rel: local_entry(i) for i in items if i.kind != "file"}
    local = {i.rel: i.local for i in items if i.kind == "file"}
    uploaded = upload_files(
        repo.objects, repo.chunk_size, local, threads=threads, progress=progress
    )
    for item in items:
        if item.kind == "file":
            content = uploaded[item.rel][0]
            changes[item.rel] = content.entry(item.rel.rsplit("/", 1)[-1], item.mode, item.mtime_ns)
    return changes


def local_entry(item: LocalItem) -> TreeEntry:
    """The tree entry of a local directory (one that need only exist: its contents are
    whatever is put below it) or symlink of ``scan_local``'s list."""
    name = item.rel.rsplit("/", 1)[-1]
    if item.kind == "dir":
        return TreeEntry(name, "dir", item.mode, item.mtime_ns)
    if item.kind != "link":
        raise ValueError(f"not a directory or symlink: {item.local}")
    target = os.readlink(item.local)
    return TreeEntry(name, "link", 0o777, item.mtime_ns, len(target.encode()), target=target)


def _check_same_kind(repo: Repository, branch: str, commit: str, source: Path, dest: str) -> None:
    """Refuse to replace a directory by a file or a file by a directory: a put that meant to
    add a file into ``dest`` would otherwise drop the whole directory from the branch."""
    if not dest:
        return
    try:
        there = repo.stat(commit, dest)
    except (NotFound, NotADirectory):
        return
    if there.kind == "dir" and not source.is_dir():
        raise UsageError(
            f"{repo.name}@{branch}:{dest} is a directory; give the file's full path in it, "
            f"e.g. {dest}/{source.name}"
        )
    if there.kind != "dir" and source.is_dir():
        raise UsageError(f"{repo.name}@{branch}:{dest} is a file; a directory cannot replace it")


def plan_get(repo: Repository, commit: str, path: str) -> Iterator[tuple[str, TreeEntry]]:
    """(relative local path, entry) pairs to download; ``""`` is the target itself."""
    entry = repo.stat(commit, path)
    if entry.kind != "dir":
        yield "", entry
        return
    yield "", entry
    prefix = f"{path}/" if path else ""
    for full, sub in repo.walk(commit, path):
        yield full[len(prefix) :], sub


def get(
    repo: Repository,
    commit: str,
    path: str,
    target: Path,
    *,
    threads: int = 16,
    progress: Progress | None = None,
    plan: list[tuple[str, TreeEntry]] | None = None,
) -> int:
    """Download ``path`` of ``commit`` to ``target``; return the number of files written.
    ``plan``: ``plan_get(repo, commit, path)``, when the caller has it already."""
    if plan is None:
        plan = list(plan_get(repo, commit, path))
    top = plan[0][1]
    if top.kind != "dir" and target.is_dir():
        target = target / (path.rsplit("/", 1)[-1] or top.name)
    _check_target(plan, target)
    files = [(rel, e) for rel, e in plan if e.kind == "file"]
    for rel, entry in plan:
        if entry.kind == "dir":
            (target / rel).mkdir(parents=True, exist_ok=True)
    for rel, entry in plan:
        if entry.kind == "link":
            dest = target / rel
            dest.unlink(missing_ok=True)
            os.symlink(entry.target, dest)

    done = itertools.count()  # files written so far (next() is atomic)

    def one(item: tuple[str, TreeEntry]) -> None:
        rel, entry = item
        dest = target / rel if rel else target
        try:
            _download(repo, entry, dest, progress)
        except S3fsvError as err:
            if str(dest) not in str(err):
                err.args = (f"{err} (downloading {dest})",)
            raise
        next(done)

    try:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(one, files))
    except S3fsvError as err:  # the pool has finished the others by now
        written = next(done)
        err.args = (
            f"{err}; {written} of {len(files)} file(s) were downloaded, each complete and "
            "verified (files are written whole or not at all)",
        )
        raise
    for rel, entry in reversed(plan):
        if entry.kind == "dir" and entry.name:
            d = target / rel if rel else target
            os.utime(d, ns=(entry.mtime_ns, entry.mtime_ns))
    return len(files)


def _check_target(plan: list[tuple[str, TreeEntry]], target: Path) -> None:
    """Refuse, before writing anything, a download that would have to replace a local path of
    another kind, or write through a local symlink (which could lead outside ``target``)."""
    for rel, entry in plan:
        local = target / rel if rel else target
        try:
            # The target directory the user named may be a link; below it, none is followed.
            st = local.lstat() if rel else local.stat()
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(st.st_mode) and entry.kind != "link":
            raise UsageError(f"{local} is a symlink: remove it or download somewhere else")
        if stat.S_ISDIR(st.st_mode) != (entry.kind == "dir"):
            have = "a directory" if stat.S_ISDIR(st.st_mode) else "a file"
            want = "a directory" if entry.kind == "dir" else f"a {entry.kind}"
            raise UsageError(
                f"{local} is {have} but the download has {want} there: "
                "remove it or download somewhere else"
            )


def _download(repo: Repository, entry: TreeEntry, dest: Path, progress: Progress | None) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name[:50]}.", suffix=".part", dir=dest.parent)
    except OSError as err:  # about the temporary name, which the user never gave
        raise OSError(err.errno, f"cannot write {dest}: {err.strerror}") from None
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as fh:
            for data in repo.read_file(entry):
                digest.update(data)
                fh.write(data)
                if progress is not None:
                    progress(len(data))
        if digest.hexdigest() != entry.sha256:
            raise CorruptObject(entry.sha256, f"content of {dest} does not match its SHA-256")
        os.chmod(tmp, entry.mode)
        os.utime(tmp, ns=(entry.mtime_ns, entry.mtime_ns))
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
