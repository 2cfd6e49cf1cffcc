"""``S3fsvFileSystem``: the repos of an s3fsv store as an fsspec filesystem.

Reads go through the Python API (``Repo.open``, ``Repo.read_many``), so every byte comes
through the machine's shared, verified disk cache. Each call resolves a branch once and reads
that one snapshot throughout (a ``find`` or ``cat`` of a directory never mixes two commits).
Writes go into API transactions (see ``writing.py``).
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import weakref
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any, TypeVar

from fsspec.callbacks import DEFAULT_CALLBACK
from fsspec.spec import AbstractFileSystem
from fsspec.utils import stringify_path

from s3fsv.api import EntryInfo, Repo, open_store
from s3fsv.api.store import DEFAULT_CACHE_SIZE
from s3fsv.errors import (
    AlreadyExists,
    IsADirectory,
    NotADirectory,
    NotEmpty,
    NotFound,
    S3fsvError,
)
from s3fsv.fsspec.errors import as_os_error
from s3fsv.fsspec.paths import PROTOCOL, Location, locate, parent_of, strip_protocol
from s3fsv.fsspec.writing import (
    Batch,
    S3fsvTransaction,
    changeable,
    copy_bytes,
    file_target,
    open_for_writing,
)

# Options fsspec's own base class takes (listing caches, async loops): not store options.
_FSSPEC_OPTIONS = (
    "use_listings_cache",
    "listings_expiry_time",
    "max_paths",
    "asynchronous",
    "loop",
)
READ_BUFFER = 1024 * 1024
F = TypeVar("F", bound=Callable[..., Any])


class _State(threading.local):
    """Per thread: how deep in filesystem calls we are, the commits the outermost call
    resolved its refs to, and that call's own changes (when it writes)."""

    def __init__(self) -> None:
        self.depth = 0
        self.commits: dict[tuple[str, str], str] = {}
        self.batch: Batch | None = None


def _one_snapshot(method: F) -> F:
    """Run ``method`` as one operation: each ref it reads resolves once, and s3fsv errors
    leave as the built-in ``OSError`` classes fsspec callers catch."""

    @functools.wraps(method)
    def wrapper(self: S3fsvFileSystem, *args: Any, **kwargs: Any) -> Any:
        with self._operation():
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


class S3fsvFileSystem(AbstractFileSystem):
    """``s3fsv://REPO[@REF]/PATH``: read any branch, tag or commit; write branches.

    ``store`` is the store URL (``s3://BUCKET/PREFIX`` or ``file:///PATH``); without it, the
    one the ``s3fsv`` command uses (``S3FSV_STORE`` or the config file). ``endpoint_url``,
    ``cache_dir`` and ``cache_size`` are as for :func:`s3fsv.open_store`, and so are further
    S3 options. :attr:`store` is the open :class:`s3fsv.Store`.
    """

    protocol = PROTOCOL
    root_marker = ""
    transaction_type = S3fsvTransaction

    def __init__(
        self,
        store: str | None = None,
        *,
        endpoint_url: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        cache_size: str | int = DEFAULT_CACHE_SIZE,
        **options: Any,
    ) -> None:
        fsspec_options = {k: options.pop(k) for k in _FSSPEC_OPTIONS if k in options}
        super().__init__(**fsspec_options)
        try:
            self.store = open_store(
                store,
                endpoint_url=endpoint_url,
                cache_dir=cache_dir,
                cache_size=cache_size,
                **options,
            )
        except S3fsvError as err:
            raise as_os_error(err) from None
        self._repos: dict[str, Repo] = {}
        self._lock = threading.Lock()
        self._state = _State()
        weakref.finalize(self, self.store.close)

    # -- paths ------------------------------------------------------------------------------
    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        return strip_protocol(stringify_path(path))

    @property
    def fsid(self) -> str:
        return f"{PROTOCOL}:{self.store.url}"

    # -- the machinery every call goes through -----------------------------------------------
    @contextlib.contextmanager
    def _operation(self, pins: dict[tuple[str, str], str] | None = None) -> Iterator[None]:
        """One filesystem call (calls it makes join it). The outermost one pins each ref to
        the commit it first resolves to (in ``pins``, when given, so a walk keeps its
        snapshot between steps) and translates s3fsv errors."""
        state = self._state
        if state.depth == 0:
            state.commits = pins if pins is not None else {}
        state.depth += 1
        try:
            yield
        except S3fsvError as err:
            converted = as_os_error(err)
            if converted is err:
                raise
            raise converted from None
        finally:
            state.depth -= 1
            if state.depth == 0:
                state.commits = {}

    @contextlib.contextmanager
    def _writing(self, message: str) -> Iterator[Batch]:
        """One writing call: its changes join the open ``fs.transaction``, or an enclosing
        call's, or else become one commit (per branch) when it returns without error."""
        with self._operation():
            if self._intrans:
                yield self.transaction.batch
                return
            state = self._state
            if state.batch is not None:
                yield state.batch
                return
            batch = state.batch = Batch(self._repo, message)
            try:
                yield batch
            except BaseException:
                batch.abort()
                raise
            finally:
                state.batch = None
            batch.commit()

    def _repo(self, name: str) -> Repo:
        with self._lock:
            repo = self._repos.get(name)
        if repo is None:
            repo = self.store.repo(name)
            with self._lock:
                repo = self._repos.setdefault(name, repo)
        return repo

    def _stat(self, loc: Location) -> tuple[Repo, str, EntryInfo]:
        """The entry ``loc`` names in its snapshot; ``NotFound`` naming the whole path."""
        repo, cid = self._snapshot(loc)
        try:
            return repo, cid, repo.stat(cid, loc.path)
        except NotFound:
            raise NotFound(f"no such file or directory: {loc.full}") from None

    def _snapshot(self, loc: Location) -> tuple[Repo, str]:
        """The repo and the commit ``loc``'s ref names, the same one throughout a call."""
        repo = self._repo(loc.repo)
        state = self._state
        key = (loc.repo, loc.ref)
        cid = state.commits.get(key)
        if cid is None:
            cid = repo.resolve(loc.ref)
            if state.depth:
                state.commits[key] = cid
        return repo, cid

    # -- reading ----------------------------------------------------------------------------
    @_one_snapshot
    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        loc = locate(path)
        if loc.is_store:
            out = [_directory(name) for name in self.store.repos()]
        else:
            repo, cid, entry = self._stat(loc)
            listed = repo.ls(cid, loc.path) if entry.kind == "dir" else [entry]
            out = [_entry(loc, cid, e) for e in listed]
        return out if detail else [o["name"] for o in out]

    @_one_snapshot
    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        loc = locate(path)
        if loc.is_store:
            return _directory("")
        repo, cid, entry = self._stat(loc)
        return _entry(loc, cid, entry)

    def walk(self, path: str, maxdepth: int | None = None, topdown: bool = True, **kwargs: Any):  # type: ignore[override]
        pins: dict[tuple[str, str], str] = {}  # one snapshot for the whole walk
        steps = super().walk(path, maxdepth=maxdepth, topdown=topdown, **kwargs)
        while True:
            with self._operation(pins):
                step = next(steps, None)
            if step is None:
                return
            yield step

    find = _one_snapshot(AbstractFileSystem.find)
    glob = _one_snapshot(AbstractFileSystem.glob)
    du = _one_snapshot(AbstractFileSystem.du)
    expand_path = _one_snapshot(AbstractFileSystem.expand_path)
    get = _one_snapshot(AbstractFileSystem.get)
    get_file = _one_snapshot(AbstractFileSystem.get_file)
    cat_file = _one_snapshot(AbstractFileSystem.cat_file)
    cat_ranges = _one_snapshot(AbstractFileSystem.cat_ranges)
    sizes = _one_snapshot(AbstractFileSystem.sizes)
    read_block = _one_snapshot(AbstractFileSystem.read_block)

    @_one_snapshot
    def cat(
        self, path: Any, recursive: bool = False, on_error: str = "raise", **kwargs: Any
    ) -> Any:
        """The contents of one file, or a dict of many (directories that a glob or
        ``recursive`` expansion met are left out). Files of one snapshot are read together,
        with one ranged read for each run of small files stored side by side."""
        paths = self.expand_path(path, recursive=recursive)
        if len(paths) == 1 and not isinstance(path, list) and paths[0] == strip_protocol(path):
            return self.cat_file(paths[0])
        out: dict[str, Any] = {}
        groups: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for name in paths:
            try:
                loc = locate(name)
                if loc.is_store:
                    continue
                repo, cid, entry = self._stat(loc)
                if entry.kind == "dir":
                    continue
            except S3fsvError as err:
                _failed(out, name, err, on_error)
                continue
            groups.setdefault((loc.repo, cid), []).append((name, loc.path))
        for (repo_name, cid), members in groups.items():
            repo = self._repo(repo_name)
            try:
                data = repo.read_many(cid, [rel for _, rel in members])
            except S3fsvError:
                if on_error == "raise":
                    raise
                for name, rel in members:  # one at a time, to say which failed
                    try:
                        out[name] = repo.read_bytes(cid, rel)
                    except S3fsvError as one:
                        _failed(out, name, one, on_error)
                continue
            for name, rel in members:
                out[name] = data[rel]
        return {name: out[name] for name in paths if name in out}

    def _open(
        self,
        path: str,
        mode: str = "rb",
        block_size: int | None = None,
        autocommit: bool = True,
        cache_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        with self._operation():
            loc = locate(path)
            if mode == "rb":
                return self._open_for_reading(loc, block_size)
            if mode not in ("wb", "xb", "ab"):
                raise ValueError(f"s3fsv:// files open as rb, wb, xb or ab, not {mode!r}")
            state = self._state
            if not autocommit and self._intrans:
                return open_for_writing(self, loc, mode, self.transaction.batch, own=False)
            if state.batch is not None:  # inside a writing call: one commit with it
                return open_for_writing(self, loc, mode, state.batch, own=False)
            batch = Batch(self._repo, f"fsspec write {loc.full}")
            return open_for_writing(self, loc, mode, batch, own=True)

    def _open_for_reading(self, loc: Location, block_size: int | None) -> Any:
        if loc.is_store:
            raise IsADirectory("the store is a directory")
        repo, cid, entry = self._stat(loc)
        if entry.kind == "dir":
            raise IsADirectory(f"{loc.full} is a directory")
        f = repo.open(cid, loc.path, buffering=block_size or READ_BUFFER)
        f.size, f.sha256 = f.raw.size, f.raw.sha256  # type: ignore[attr-defined]
        f.path, f.fs, f.commit = loc.full, self, cid  # type: ignore[attr-defined]
        return f

    def modified(self, path: str) -> datetime:
        return datetime.fromtimestamp(self.info(path)["mtime"], tz=timezone.utc)

    def checksum(self, path: str) -> int:
        """The file's SHA-256 as an integer (for a directory, fsspec's default)."""
        sha = self.info(path).get("sha256")
        return int(sha, 16) if sha else super().checksum(path)

    def ukey(self, path: str) -> str:
        """The file's SHA-256 (hex): the same exactly when the content is."""
        return self.info(path).get("sha256") or super().ukey(path)

    # -- writing ----------------------------------------------------------------------------
    def pipe_file(self, path: str, value: bytes, mode: str = "overwrite", **kwargs: Any) -> None:
        loc = locate(path)
        with self._writing(f"fsspec write {loc.full}") as batch:
            tx = file_target(batch, loc)
            if mode == "create" and tx.kind(loc.path) is not None:
                raise AlreadyExists(f"cannot create {loc.full}: it exists")
            tx.write(loc.path, value)

    def pipe(self, path: Any, value: bytes | None = None, **kwargs: Any) -> None:
        with self._writing(f"fsspec write {_shown(path)}"):
            super().pipe(path, value, **kwargs)

    def touch(self, path: str, truncate: bool = True, **kwargs: Any) -> None:
        loc = locate(path)
        with self._writing(f"fsspec touch {loc.full}") as batch:
            tx = file_target(batch, loc)
            if truncate or tx.kind(loc.path) is None:
                tx.write(loc.path, b"")
            else:
                raise NotImplementedError("s3fsv cannot change a file's time without writing it")

    def put_file(
        self,
        lpath: str,
        rpath: str,
        callback: Any = DEFAULT_CALLBACK,
        mode: str = "overwrite",
        **kwargs: Any,
    ) -> None:
        loc = locate(rpath)
        with self._writing(f"fsspec put {loc.full}") as batch:
            if os.path.isdir(lpath):
                batch.tx(loc).mkdir(loc.path)
                return
            tx = file_target(batch, loc)
            if mode == "create" and tx.kind(loc.path) is not None:
                raise AlreadyExists(f"cannot create {loc.full}: it exists")
            size = os.path.getsize(lpath)
            callback.set_size(size)
            tx.upload(lpath, loc.path)
            callback.relative_update(size)

    def put(self, lpath: Any, rpath: Any, recursive: bool = False, **kwargs: Any) -> None:
        with self._writing(f"fsspec put {_shown(rpath)}"):
            super().put(lpath, rpath, recursive=recursive, **kwargs)

    def cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        src, dst = locate(path1), locate(path2)
        with self._writing(f"fsspec copy {src.full} to {dst.full}") as batch:
            tx = batch.tx(dst)
            repo, cid, entry = self._stat(src)
            if entry.kind == "dir":
                if dst.path:
                    tx.mkdir(dst.path)
                return
            if src.repo == dst.repo:
                tx.copy(src.path, dst.path, ref=cid)  # shares the stored content
            else:
                copy_bytes(repo, cid, entry, tx, dst.path)

    def copy(self, path1: Any, path2: Any, recursive: bool = False, **kwargs: Any) -> None:
        with self._writing(f"fsspec copy {_shown(path1)} to {_shown(path2)}"):
            super().copy(path1, path2, recursive=recursive, **kwargs)

    def mv(self, path1: Any, path2: Any, recursive: bool = False, maxdepth: Any = None, **kw: Any):  # type: ignore[override]
        """Move files or directories. Within one branch a plain path (no glob) moves as a
        rename, whatever it holds; otherwise as a copy and a removal, in one commit."""
        if path1 == path2:
            return
        with self._writing(f"fsspec mv {_shown(path1)} to {_shown(path2)}") as batch:
            if isinstance(path1, str) and isinstance(path2, str) and maxdepth is None:
                src, dst = locate(path1), locate(path2)
                same_branch = (src.repo, src.ref) == (dst.repo, dst.ref) and not dst.is_store
                if same_branch and src.path and not _has_magic(src.path):
                    target = dst.path
                    if path2.endswith("/") or self.isdir(dst.full):
                        target = "/".join(p for p in (dst.path, src.path.rsplit("/")[-1]) if p)
                    batch.tx(src).rename(src.path, target)
                    return
            super().mv(path1, path2, recursive=recursive, maxdepth=maxdepth, **kw)

    def rm_file(self, path: str) -> None:
        loc = locate(path)
        with self._writing(f"fsspec rm {loc.full}") as batch:
            tx = changeable(batch, loc)
            if tx.kind(loc.path) == "dir":
                raise IsADirectory(f"{loc.full} is a directory: rm(path, recursive=True)")
            tx.delete(loc.path)

    def rmdir(self, path: str) -> None:
        loc = locate(path)
        with self._writing(f"fsspec rmdir {loc.full}") as batch:
            tx = changeable(batch, loc)
            if tx.kind(loc.path) != "dir":
                raise NotADirectory(f"{loc.full} is not a directory")
            if self.ls(loc.full, detail=False):
                raise NotEmpty(f"{loc.full} is not empty")
            tx.delete(loc.path)

    def rm(self, path: Any, recursive: bool = False, maxdepth: int | None = None) -> None:
        """Remove files, or with ``recursive`` directories with all they hold: one commit."""
        with self._writing(f"fsspec rm {_shown(path)}") as batch:
            paths = self.expand_path(path, recursive=recursive, maxdepth=maxdepth)
            if recursive:
                paths = _topmost(paths)
            for name in reversed(paths):
                loc = locate(name)
                tx = changeable(batch, loc)
                if not recursive and tx.kind(loc.path) == "dir":
                    raise IsADirectory(f"{loc.full} is a directory: rm(path, recursive=True)")
                tx.delete(loc.path)

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        loc = locate(path)
        with self._writing(f"fsspec mkdir {loc.full}") as batch:
            if self._make_repo(loc) and not loc.path:
                return
            if not loc.path:
                raise AlreadyExists(f"{loc.full or 'the store'} exists")
            tx = batch.tx(loc)
            if not create_parents and tx.kind(parent_of(loc.path)) != "dir":
                raise NotFound(f"cannot make {loc.full}: its parent directory does not exist")
            if not tx.mkdir(loc.path):
                raise AlreadyExists(f"cannot make {loc.full}: it exists")

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        loc = locate(path)
        with self._writing(f"fsspec mkdir {loc.full}") as batch:
            made = self._make_repo(loc)
            if not loc.path:
                if not (made or exist_ok):
                    raise AlreadyExists(f"{loc.full or 'the store'} exists")
                return
            if not batch.tx(loc).mkdir(loc.path) and not exist_ok:
                raise AlreadyExists(f"cannot make {loc.full}: it exists")

    def _make_repo(self, loc: Location) -> bool:
        """Create ``loc``'s repo if it does not exist (and ``loc`` means its ``main``);
        say whether it did."""
        if loc.is_store:
            return False
        try:
            self._repo(loc.repo)
            return False
        except NotFound:
            if not (loc.default_ref or loc.ref == "main"):
                raise
        repo = self.store.create_repo(loc.repo)
        with self._lock:
            self._repos[loc.repo] = repo
        return True


# -- helpers ------------------------------------------------------------------------------------


def _directory(name: str) -> dict[str, Any]:
    return {"name": name, "size": 0, "type": "directory"}


def _entry(loc: Location, cid: str, e: EntryInfo) -> dict[str, Any]:
    """fsspec's description of one entry. Symlinks are type ``other`` (opening one reads
    the file it points to, inside the snapshot), with ``islink`` and ``destination``."""
    kind = {"file": "file", "dir": "directory"}.get(e.kind, "other")
    out: dict[str, Any] = {
        "name": loc.name(e.path),
        "size": e.size,
        "type": kind,
        "mode": e.mode,
        "mtime": e.mtime_ns / 1e9,
        "commit": cid,
    }
    if e.kind == "file":
        out["sha256"] = e.sha256
    elif e.kind == "link":
        out.update(islink=True, destination=e.target)
    return out


def _failed(out: dict[str, Any], name: str, err: S3fsvError, on_error: str) -> None:
    if on_error == "raise":
        raise err
    if on_error == "return":
        out[name] = as_os_error(err)


def _topmost(paths: list[str]) -> list[str]:
    """``paths`` without those below another of them (removing a directory removes them)."""
    kept: set[str] = set()
    for name in sorted(paths, key=len):
        parts = name.split("/")
        if not any("/".join(parts[:i]) in kept for i in range(1, len(parts))):
            kept.add(name)
    return sorted(kept)


def _has_magic(path: str) -> bool:
    return any(c in path for c in "*?[")


def _shown(path: Any) -> str:
    if isinstance(path, (list, tuple)):
        return f"{len(path)} paths" if len(path) != 1 else _shown(path[0])
    if isinstance(path, dict):
        return _shown(list(path))
    return strip_protocol(stringify_path(path))
