"""A store: the root URL holding repos, its initialisation and its conditional-write probe."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import uuid
from typing import Any

from s3fsv.errors import (
    AlreadyExists,
    BucketMissing,
    NotFound,
    PreconditionFailed,
    S3fsvError,
    UnsupportedStore,
)
from s3fsv.store.backend import Backend, open_backend
from s3fsv.store.events import Event, Events
from s3fsv.store.objects import DEFAULT_CHUNK_SIZE, FORMAT_VERSION, canonical_json
from s3fsv.store.objectstore import ByteCache
from s3fsv.store.refs import check_ref_name
from s3fsv.store.repo import Repository, utc_now

MARKER = "s3fsv.json"


class Store:
    """A store URL opened as a collection of repos.

    ``Store.open`` checks that the store was initialised (one GET), which also surfaces missing
    credentials or an unreachable endpoint as a clear error before any real work starts.
    """

    def __init__(
        self, backend: Backend, cache: ByteCache | None = None, events: Events | None = None
    ) -> None:
        self.backend = backend
        self.cache = cache
        self.created_location = False  # set by init: it made the bucket or directory
        # Told of every ref change of every repo opened through this store (store.events).
        self.events = events if events is not None else Events()

    @property
    def url(self) -> str:
        return self.backend.url

    @classmethod
    def open(
        cls,
        url: str,
        *,
        endpoint_url: str | None = None,
        cache: ByteCache | None = None,
        events: Events | None = None,
        **s3_options: Any,
    ) -> Store:
        """Open an initialised store. ``s3_options`` go to the S3 backend (timeouts, and
        ``credentials``: a botocore credentials object used instead of the standard chain)."""
        store = cls(open_backend(url, endpoint_url=endpoint_url, **s3_options), cache, events)
        store.check_initialised()
        return store

    @classmethod
    def init(cls, url: str, *, endpoint_url: str | None = None) -> Store:
        """Create the store (bucket or directory) if needed, probe it for conditional writes and
        write its marker. Idempotent on an existing s3fsv store."""
        backend = open_backend(url, endpoint_url=endpoint_url)
        outer = _enclosing_store(url, endpoint_url)
        if outer is not None:
            raise AlreadyExists(
                f"{backend.url} is inside the s3fsv store {outer}: a store cannot hold another "
                "(make a repo in that store instead)"
            )
        create = getattr(backend, "create_bucket_if_missing", None)
        created = create() if create is not None else False
        # Keys a probe interrupted earlier left are not other data; a marker that appears while
        # we look is a concurrent init of the same store.
        if not _has_marker(backend) and _holds_other_data(backend) and not _has_marker(backend):
            raise AlreadyExists(
                f"{backend.url} already holds other data: an s3fsv store needs an empty "
                "directory or prefix of its own"
            )
        probe_conditional_writes(backend)
        with contextlib.suppress(PreconditionFailed):
            backend.put(
                MARKER,
                canonical_json({"format": "s3fsv", "version": FORMAT_VERSION}),
                if_none_match=True,
            )
        store = cls(backend)
        store.check_initialised()
        store.created_location = bool(created)
        return store

    def check_initialised(self) -> None:
        try:
            raw = json.loads(self.backend.get(MARKER))
        except BucketMissing as err:
            raise BucketMissing(f"{err} (s3fsv init creates it)") from None
        except NotFound:
            raise NotFound(
                f"{self.url} is not an s3fsv store (no {MARKER}): run 's3fsv init' first"
            ) from None
        except ValueError:
            raw = None
        if not isinstance(raw, dict) or raw.get("format") != "s3fsv":
            raise UnsupportedStore(f"{self.url}: {MARKER} is not an s3fsv store marker")
        if raw.get("version") != FORMAT_VERSION:
            raise UnsupportedStore(
                f"{self.url} has format version {raw.get('version')}; "
                f"this s3fsv reads version {FORMAT_VERSION}"
            )

    # -- repos ----------------------------------------------------------------------------------
    def create_repo(self, name: str, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Repository:
        """Create a repo with an empty branch ``main`` (a root commit of the empty tree)."""
        check_ref_name(name, "repo")
        descriptor = {
            "format": "s3fsv-repo",
            "version": FORMAT_VERSION,
            "chunk_size": chunk_size,
            "created": utc_now(),
        }
        try:
            self.backend.put(f"{name}/repo.json", canonical_json(descriptor), if_none_match=True)
        except PreconditionFailed:
            raise AlreadyExists(f"repo {name!r} already exists in {self.url}") from None
        self.events.emit(Event("repo.create", name))
        repo = Repository(self.backend, name, chunk_size, self.cache, self.events)
        repo.init_main()
        return repo

    def repo(self, name: str) -> Repository:
        check_ref_name(name, "repo")
        try:
            raw = json.loads(self.backend.get(f"{name}/repo.json"))
        except NotFound:
            raise NotFound(f"no such repo {name!r} in {self.url}") from None
        except ValueError:
            raw = None
        if not isinstance(raw, dict) or raw.get("format") != "s3fsv-repo":
            raise UnsupportedStore(f"{name}/repo.json in {self.url} is not an s3fsv repo")
        if raw.get("version") != FORMAT_VERSION:
            raise UnsupportedStore(f"repo {name!r} has unsupported version {raw.get('version')}")
        chunk_size = raw.get("chunk_size")
        if type(chunk_size) is not int or chunk_size < 4096:
            raise UnsupportedStore(f"repo {name!r} has an invalid chunk size {chunk_size!r}")
        return Repository(self.backend, name, chunk_size, self.cache, self.events)

    def repos(self) -> list[str]:
        out = []
        for prefix in self.backend.list_prefixes(""):
            name = prefix.rstrip("/")
            try:
                check_ref_name(name)
            except Exception:
                continue
            try:
                self.backend.head(f"{name}/repo.json")
            except NotFound:
                continue
            out.append(name)
        return sorted(out)

    def close(self) -> None:
        self.backend.close()


_PROBE_PREFIX = "_probe"


def _holds_other_data(backend: Backend) -> bool:
    return any(
        k != MARKER and not k.startswith(f"{_PROBE_PREFIX}/")
        for k in itertools.islice(backend.list(""), 100)
    )


def _enclosing_store(url: str, endpoint_url: str | None) -> str | None:
    """The URL of an s3fsv store that ``url`` lies below, if one can be seen. Locations the
    caller may not read (an S3 policy limited to the prefix) count as no store."""
    scheme, _, rest = url.partition("://")
    if scheme not in ("file", "s3"):
        return None
    parts = [p for p in rest.split("/") if p]
    top = 1 if scheme == "s3" else 0  # the bucket, for s3
    if len(parts) <= top:
        return None
    root_url = f"{scheme}://{parts[0]}" if top else "file:///"
    try:
        root = open_backend(root_url, endpoint_url=endpoint_url)
    except S3fsvError:
        return None
    for depth in range(len(parts) - 1, top - 1, -1):
        prefix = "/".join(parts[top:depth])
        key = f"{prefix}/{MARKER}" if prefix else MARKER
        if scheme == "file" and not os.path.isfile(f"/{key}"):
            continue  # (and a FIFO of that name is never opened)
        try:
            raw = json.loads(root.get(key))
        except (S3fsvError, ValueError):
            continue
        if isinstance(raw, dict) and raw.get("format") == "s3fsv":  # a marker, not any file
            return f"{root_url}{'' if root_url.endswith('/') else '/'}{prefix}"
    return None


def _has_marker(backend: Backend) -> bool:
    try:
        backend.head(MARKER)
    except NotFound:
        return False
    return True


def probe_conditional_writes(backend: Backend) -> None:
    """Refuse a store that does not honour ``If-None-Match: *`` and ``If-Match`` on puts.

    Every ref update depends on them; a store that silently ignores them would let concurrent
    committers overwrite each other, so it is refused with ``UnsupportedStore``.
    """
    key = f"{_PROBE_PREFIX}/{uuid.uuid4().hex}"
    failures: list[str] = []
    try:
        etag = backend.put(key, b"1", if_none_match=True)
        try:
            backend.put(key, b"2", if_none_match=True)
            failures.append("If-None-Match: * was ignored")
            etag = backend.head(key).etag
        except PreconditionFailed:
            pass
        try:
            backend.put(key, b"3", if_match='"0000000000000000000000000000000f"')
            failures.append("If-Match with a wrong etag was ignored")
            etag = backend.head(key).etag
        except PreconditionFailed:
            pass
        try:
            backend.put(key, b"4", if_match=etag)
        except PreconditionFailed:
            failures.append("If-Match with the current etag was refused")
    finally:
        backend.delete(key)
    if failures:
        raise UnsupportedStore(
            f"{backend.url} does not support conditional writes ({'; '.join(failures)}); "
            "s3fsv needs them to update branches safely"
        )
