"""Opening a store from Python: the handle every other public name hangs from."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from s3fsv.api.repo import Repo
from s3fsv.config import cache_dir as default_cache_dir
from s3fsv.config import endpoint_url as configured_endpoint
from s3fsv.config import parse_size, store_url
from s3fsv.errors import NotFound, UsageError
from s3fsv.store import lineage as _lineage
from s3fsv.store.cache import DiskCache
from s3fsv.store.events import Event, Events
from s3fsv.store.reader import ChunkReader
from s3fsv.store.records import Records
from s3fsv.store.store import Store as _Store

DEFAULT_CACHE_SIZE = "10G"


def open_store(
    url: str | None = None,
    *,
    endpoint_url: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    cache_size: str | int = DEFAULT_CACHE_SIZE,
    **s3_options: Any,
) -> Store:
    """Open an initialised store and return its handle.

    ``url`` is ``s3://BUCKET/PREFIX`` or ``file:///PATH``; without it, the store the ``s3fsv``
    command would use (``S3FSV_STORE``, then ``store = "..."`` in the config file). The endpoint
    likewise comes from ``endpoint_url``, ``AWS_ENDPOINT_URL`` or the config file. Reads go
    through the machine's shared, verified disk cache (``cache_dir``, default the one mounts
    use), bounded to ``cache_size`` (``"10G"``, or bytes). Raises ``UsageError`` when no store
    is configured and ``NotFound``/``AccessDenied``/``StoreUnavailable`` when it cannot be used;
    never a boto3 exception.
    """
    if url is not None and not str(url).strip():
        raise UsageError("open_store: the store URL is empty")
    size = cache_size if isinstance(cache_size, int) else parse_size(cache_size)
    if size <= 0:
        raise UsageError("open_store: cache_size must be positive")
    where = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    try:
        cache = DiskCache(where, size)
    except OSError as err:
        raise UsageError(f"cannot use {where} as the cache directory: {err.strerror}") from None
    inner = _Store.open(
        store_url(url), endpoint_url=configured_endpoint(endpoint_url), **s3_options
    )
    inner.cache = cache
    return Store(inner, cache)


class Store:
    """An open store: a set of named repos. Thread-safe. Use it as a context manager, or call
    :meth:`close`, to release its connections and threads."""

    def __init__(self, inner: _Store, cache: DiskCache) -> None:
        self._inner = inner
        self._cache = cache
        self._readers: dict[str, ChunkReader] = {}
        self._lock = threading.Lock()
        self._reads: dict[tuple[str, str], None] = {}  # (repo, commit) read, in order

    @property
    def url(self) -> str:
        """The store's URL, as opened."""
        return self._inner.url

    @property
    def endpoint_url(self) -> str | None:
        """The S3 endpoint the store was opened with (None for AWS itself or a local store):
        what another process needs, with ``url``, to open the same store."""
        return getattr(self._inner.backend, "endpoint_url", None)

    def repos(self) -> list[str]:
        """The names of the store's repos, sorted."""
        return self._inner.repos()

    def repo(self, name: str) -> Repo:
        """The repo ``name``; ``NotFound`` when the store has none of that name."""
        return Repo(self, self._inner.repo(name))

    def create_repo(self, name: str) -> Repo:
        """Create an empty repo with a ``main`` branch; ``AlreadyExists`` when it exists."""
        return Repo(self, self._inner.create_repo(name))

    def records(self, namespace: str) -> Records:
        """The JSON records kept under ``STORE/_<namespace>/`` (see ``s3fsv.store.records``):
        write-once slots and compare-and-swap state for coordination between processes."""
        return Records(self._inner.backend, namespace)

    @property
    def events(self) -> Events:
        """The store's change observers (``s3fsv.store.events``): every ref change of every
        repo opened through this handle is told to them. The audit trail subscribes here."""
        return self._inner.events

    def record_event(
        self,
        action: str,
        *,
        repo: str | None = None,
        ref: str | None = None,
        old: str | None = None,
        new: str | None = None,
        **detail: Any,
    ) -> None:
        """Tell the observers about something done that is not a ref change (a run started,
        a pipeline job finished), so the audit trail records it when one is attached.
        ``detail`` must be JSON-serialisable without floats."""
        self._inner.events.emit(Event(action, repo, ref, old, new, detail))

    def derived_from(self, repo: str, commit: str) -> list[tuple[str, str]]:
        """(repo, commit id) of every commit that recorded ``repo@commit`` (a full id) as one
        of its inputs, as the store's lineage index lists them (docs/format.md 11.2): one
        listing, however many commits the store holds. Entries whose commit does not exist, or
        does not name that input, are left out."""
        out = []
        for child_repo, child in _lineage.derived(self._inner.backend, repo, commit):
            try:
                provenance = self._inner.repo(child_repo).commit_object(child).provenance
            except NotFound:
                continue
            if (repo, commit) in _lineage.input_commits(provenance):
                out.append((child_repo, child))
        return out

    def index_lineage(self, repo: str, commit: str) -> int:
        """Write the lineage index entries of ``repo@commit`` that are missing (commits write
        theirs as they are made; this repairs one whose writer stopped in between). Returns
        how many inputs the commit records."""
        provenance = self._inner.repo(repo).commit_object(commit).provenance
        return _lineage.index_commit(self._inner.backend, repo, commit, provenance)

    def forget_lineage(self, repo: str, commit: str) -> None:
        """Remove the lineage index entries of ``repo@commit``, a commit being discarded that
        no branch or tag will name (a scratch commit); it then appears downstream of nothing."""
        provenance = self._inner.repo(repo).commit_object(commit).provenance
        _lineage.forget_commit(self._inner.backend, repo, commit, provenance)

    def commits_read(self) -> list[dict[str, str]]:
        """Every ``{"repo", "commit"}`` this handle has read files of, oldest first: what a
        transaction records as its inputs."""
        with self._lock:
            return [{"repo": r, "commit": c} for r, c in self._reads]

    def close(self) -> None:
        """Stop background fetches and close connections. The handle is unusable after.
        Queued prefetches are dropped; fetches already running are waited for, so none
        of them uses a connection after it is closed."""
        with self._lock:
            readers, self._readers = list(self._readers.values()), {}
        for reader in readers:
            reader.close(wait=True)
        self._cache.close()
        self._inner.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<s3fsv.Store {self.url}>"

    # -- for Repo -------------------------------------------------------------------------
    def _reader(self, repo: Any) -> ChunkReader:
        with self._lock:
            reader = self._readers.get(repo.name)
            if reader is None:
                reader = ChunkReader(repo.objects, self._cache, repo.chunk_size, threads=8)
                self._readers[repo.name] = reader
            return reader

    def _note_read(self, repo: str, commit: str) -> None:
        with self._lock:
            self._reads[(repo, commit)] = None
