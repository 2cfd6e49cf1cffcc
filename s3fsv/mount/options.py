"""What a mount is asked for: its source (``STORE[/REPO[@REF]]``), its commit policy, sizes,
and the S3 timeouts a mount uses, each parsed with a one-line error for bad input."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from s3fsv.errors import AccessDenied, NotFound, UsageError
from s3fsv.store.refs import check_ref_name, check_ref_spec
from s3fsv.store.store import Store

# A mount must turn an unreachable store into EIO in bounded time (docs/semantics.md: read).
MOUNT_S3_OPTIONS = {"max_attempts": 3, "connect_timeout": 3.0, "read_timeout": 15.0}
# One attempt with the mount's timeouts: a store slow to answer still counts as up.
PROBE_S3_OPTIONS = {**MOUNT_S3_OPTIONS, "max_attempts": 0}


@dataclass(frozen=True)
class CommitPolicy:
    """When the daemon commits staged writes by itself: never (``manual``), after the mount
    ends (``unmount``), or once a branch has seen no write for ``idle`` seconds."""

    kind: str = "manual"
    idle: float = 0.0

    def __str__(self) -> str:
        return f"idle={self.idle:g}" if self.kind == "idle" else self.kind


def parse_commit_on(text: str) -> CommitPolicy:
    """``manual``, ``unmount`` or ``idle=SECONDS`` -> a :class:`CommitPolicy`."""
    value = text.strip().lower()
    if value in ("manual", "unmount"):
        return CommitPolicy(value)
    if value.startswith("idle="):
        try:
            seconds = float(value[5:])
        except ValueError:
            seconds = -1.0
        if seconds > 0 and seconds != float("inf"):
            return CommitPolicy("idle", seconds)
    raise UsageError(
        f"bad --commit-on {text!r}: use manual, unmount or idle=SECONDS (a positive number)"
    )


@dataclass(frozen=True)
class Source:
    store_url: str
    repo: str | None
    ref: str | None
    commit: str | None = None  # what ``ref`` resolved to when the mount was asked for


def parse_source(
    text: str, endpoint: str | None, pinned: str | None = None, **s3: Any
) -> tuple[Store, Source]:
    """Split ``STORE[/REPO[@REF]]`` and open the store. The store is the longest prefix of the
    URL that holds an s3fsv store marker; what follows is the repo. ``pinned``, a full commit
    id that a ``REPO@REF`` source resolved to earlier, is checked to exist and used as the ref,
    so the ref is not resolved again (it could name another commit by now). ``s3`` adds S3
    backend options (``credentials`` and ``region`` of a mount through an access gateway)."""
    options = {**MOUNT_S3_OPTIONS, **s3}
    base, _, last = text.rstrip("/").rpartition("/")
    if pinned is not None and "@" not in last:
        raise UsageError(f"{text} is not a REPO@REF source: it cannot be pinned")
    if "@" in last:
        repo, _, ref = last.partition("@")
        check_ref_name(repo, "repo")
        check_ref_spec(ref)
        store = Store.open(base, endpoint_url=endpoint, **options)
        if pinned is not None:
            store.repo(repo).commit_object(pinned)  # it exists
            return store, Source(base, repo, pinned, pinned)
        commit = store.repo(repo).resolve(ref)  # a missing ref fails here, not in the daemon
        return store, Source(base, repo, ref, commit)
    if last in (".", ".."):  # neither a store's place nor a repo: never sent to the store
        check_ref_name(last, "repo")
    try:
        return Store.open(text, endpoint_url=endpoint, **options), Source(text, None, None)
    except (NotFound, AccessDenied) as first:
        if not base or base.endswith(":/") or base.endswith(":"):
            raise first from None
        try:
            store = Store.open(base, endpoint_url=endpoint, **options)
        except NotFound:
            raise first from None
        except AccessDenied:
            if not isinstance(first, AccessDenied):
                raise
            # Refused at both, whichever is the store (STORE, or STORE/REPO's STORE): name
            # what was asked for, not a marker object of one guess.
            raise AccessDenied(
                f"access denied to {text}: check the credentials, and that a store is there "
                "(without list permission S3 refuses what does not exist)"
            ) from None
    store.repo(last)
    return store, Source(base, last, None)


def parse_listen_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6; port 0 picks a free one) -> (host, port)."""
    host, sep, port = text.strip().rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise UsageError(
            f"bad metrics address {text!r}: use HOST:PORT, e.g. 127.0.0.1:9108 (0 as the port "
            "picks a free one)"
        )
    return host, int(port)
