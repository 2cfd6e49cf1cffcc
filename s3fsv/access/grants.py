"""The grant history: ``STORE/_access/log/``, a hash chain (:mod:`s3fsv.access.chain`) of
change records, one per grant, revoke, protection, group change or token, each written once.
Nothing else is stored: the current state is the fold of every change
(:class:`~s3fsv.access.model.AccessState`), so the history is the exact record of who was
allowed what, and when. Each change is also told to the store's observers, so the audit trail
records it (``access.grant``, ``access.token.create``...).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from datetime import datetime, timedelta, timezone
from typing import Any

from s3fsv.access.chain import Chain
from s3fsv.access.identity import current_principal, stamp
from s3fsv.access.model import (
    LEVELS,
    AccessState,
    Grant,
    Token,
    check_level,
    check_principal,
    check_target,
    clean_prefix,
)
from s3fsv.api import Store
from s3fsv.errors import NotFound, UsageError
from s3fsv.store.refs import check_ref_name
from s3fsv.store.repo import utc_now

NAMESPACE = "access"
TOKEN_PREFIX = "s3fsv_"


def token_hash(secret: str) -> str:
    """Tokens are 256 random bits, so a plain SHA-256 is enough to keep them unguessable at
    rest (a slow password hash protects guessable secrets, which these are not)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def split_token(token: str) -> tuple[str, str]:
    """``s3fsv_<id>_<secret>`` -> (id, whole token); ``UsageError`` for anything else."""
    token = token.strip()
    parts = token.split("_", 2)  # the secret part may hold "_" itself
    if len(parts) != 3 or parts[0] + "_" != TOKEN_PREFIX or not parts[1] or not parts[2]:
        raise UsageError("malformed s3fsv token")
    return parts[1], token


class AccessLog:
    """The grants of one store. Reading folds the chain (catching up with one GET when
    nothing changed); writing appends one change. Thread-safe."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.chain = Chain(store.records(NAMESPACE), "log")
        self._state = AccessState()
        self._lock = threading.Lock()

    # -- reading ----------------------------------------------------------------------------
    def state(self) -> AccessState:
        """The state after every change recorded so far (re-read from the store)."""
        with self._lock:
            for change in self.chain.since(self._state.seq + 1):
                self._state.apply(change)
            return self._state

    def history(self) -> list[dict[str, Any]]:
        return self.chain.all()

    # -- writing ----------------------------------------------------------------------------
    def _change(self, op: str, **fields: Any) -> dict[str, Any]:
        body = {"op": op, "time": utc_now(), "by": current_principal(), **stamp(), **fields}
        record = self.chain.append(body)
        # The trail's own "principal" is who made the change; whom it is about is "subject".
        shown = {("subject" if k == "principal" else k): v for k, v in fields.items()}
        shown.pop("sha256", None)
        self.store.record_event(f"access.{op}", change=record["seq"], **shown)
        return record

    def grant(
        self,
        principal: str,
        level: str,
        repo: str,
        *,
        prefix: str | None = None,
        branches: tuple[str, ...] = (),
        kind: str | None = None,
    ) -> Grant:
        """Give ``principal`` ``level`` on ``repo``; return the grant (an identical one that
        exists already is returned as is, and nothing is recorded)."""
        check_principal(principal)
        check_level(level)
        check_target(repo)
        for branch in branches:
            check_ref_name(branch, "branch")
        if branches and level not in ("write", "admin"):
            raise UsageError("--branch limits which branches write or admin may move")
        if kind is not None and kind not in ("person", "device"):
            raise UsageError(f"unknown principal kind {kind!r}: person or device")
        pfx = clean_prefix(prefix)
        if level == "upload" and not pfx:
            pfx = f"incoming/{principal}/"
        state = self.state()
        if state.kinds.get(principal) == "group" and kind is not None:
            raise UsageError(f"{principal} is a group, not a {kind}")
        for g in state.grants.values():
            same = (g.principal, g.level, g.repo, g.prefix, g.branches)
            if same == (principal, level, repo, pfx, tuple(branches)):
                return g
        fields: dict[str, Any] = {"principal": principal, "level": level, "repo": repo}
        fields.update(prefix=pfx, branches=list(branches))
        if kind is not None:
            fields["kind"] = kind
        record = self._change("grant", **fields)
        return self.state().grants[f"g{record['seq']}"]

    def revoke(
        self,
        principal: str,
        level: str | None = None,
        repo: str | None = None,
        *,
        grant_id: str | None = None,
        prefix: str | None = None,
    ) -> list[Grant]:
        """Remove the matching grants (by id, or by principal with optional level, repo and
        prefix); return them. ``NotFound`` when none matches."""
        state = self.state()
        pfx = clean_prefix(prefix) if prefix is not None else None
        gone = [
            g
            for g in state.grants.values()
            if (grant_id is None or g.id == grant_id)
            and g.principal == principal
            and (level is None or g.level == level)
            and (repo is None or g.repo == repo)
            and (pfx is None or g.prefix == pfx)
        ]
        if not gone:
            raise NotFound(f"no grant matches: {principal} {level or ''} {repo or ''}".strip())
        self._change("revoke", grants=[g.id for g in gone], principal=principal)
        return gone

    def protect(self, repo: str, branch: str, allow: list[str]) -> None:
        """Only ``allow`` (principals or groups) may move ``repo@branch`` from now on."""
        check_target(repo)
        check_ref_name(branch, "branch")
        if not allow:
            raise UsageError("protect needs at least one --allow PRINCIPAL")
        for name in allow:
            check_principal(name)
        self._change("protect", repo=repo, branch=branch, allow=sorted(set(allow)))

    def unprotect(self, repo: str, branch: str) -> None:
        if (repo, branch) not in self.state().protections:
            raise NotFound(f"{repo}@{branch} is not protected")
        self._change("unprotect", repo=repo, branch=branch)

    def declare(self, name: str, kind: str) -> None:
        check_principal(name)
        if kind not in ("person", "device"):
            raise UsageError(f"unknown principal kind {kind!r}: person or device")
        self._change("principal", name=name, kind=kind)

    def group(self, group: str, add: list[str], remove: list[str]) -> None:
        check_principal(group)
        for name in add + remove:
            check_principal(name)
            if name == group:
                raise UsageError(f"group {group} cannot be its own member")
        state = self.state()
        if state.kinds.get(group, "group") != "group":  # declared a person or device
            raise UsageError(f"{group} is a {state.kinds[group]}, not a group")
        if add:
            self._change("group.add", group=group, members=sorted(set(add)))
        if remove:
            self._change("group.remove", group=group, members=sorted(set(remove)))

    def create_token(self, principal: str, expires_in: timedelta | None) -> tuple[Token, str]:
        """A new token for ``principal``; returns it and its secret text, which is shown once
        and kept nowhere (the store holds its SHA-256)."""
        check_principal(principal)
        if self.state().kinds.get(principal) == "group":
            raise UsageError(f"{principal} is a group: tokens stand for one principal")
        tid = secrets.token_hex(8)
        text = f"{TOKEN_PREFIX}{tid}_{secrets.token_urlsafe(32)}"
        expires = None
        if expires_in is not None:
            when = datetime.now(timezone.utc) + expires_in
            expires = when.isoformat(timespec="seconds").replace("+00:00", "Z")
        self._change(
            "token.create", id=tid, principal=principal, sha256=token_hash(text), expires=expires
        )
        return self.state().tokens[tid], text

    def revoke_token(self, token_id: str) -> Token:
        token = self.state().tokens.get(token_id)
        if token is None:
            raise NotFound(f"no token {token_id}")
        if not token.revoked:
            self._change("token.revoke", id=token_id, principal=token.principal)
        return self.state().tokens[token_id]


__all__ = ["LEVELS", "AccessLog", "split_token", "token_hash"]
