"""Grants compiled into IAM policy documents, so that the storage engine enforces them.

Keys (``S`` is the store's prefix in its bucket, ``R`` a repo):

- ``read``: ``s3:GetObject`` on ``S/R/*`` and on the store marker ``S/s3fsv.json``, and
  ``s3:ListBucket`` with the condition ``s3:prefix`` like ``S/R/*``: the trailing slash makes
  ``repoA/`` never match ``repoAB/``, and a listing without it is refused.
- ``upload``: ``s3:PutObject`` (and ``s3:AbortMultipartUpload``) on the principal's own upload
  prefix ``S/_uploads/R/<prefix>*`` only. Nothing else: an upload-only device cannot read.
- ``write``: ``read``, plus ``s3:PutObject`` on the repo's objects ``S/R/objects/*``, on the
  branch refs it may move (``S/R/refs/branches/<name>``, or ``*``), on ``S/_uploads/R/*``, and
  on the lineage index entries of R's commits (``S/_lineage/*/R/*``). ``read`` includes reading
  ``S/_lineage/R/*``, what was made from R's commits, and reading gc's lease
  (``S/_gc/leases/gc``), which every commit checks so that a concurrent gc keeps what it
  refers to (docs/ingest.md).
- ``admin``: ``s3:GetObject``, ``s3:PutObject`` and ``s3:DeleteObject`` on ``S/R/*`` and
  ``S/_uploads/R/*``. ``DeleteObject`` comes with nothing else.
- A protected branch adds, for every principal that could otherwise move it and is not
  allowed to, an explicit ``Deny`` of ``s3:PutObject`` and ``s3:DeleteObject`` on its ref key.
- Every document denies deleting (or unlocking) anything below ``S/_audit/``.

Limits the engine cannot draw are not drawn: content objects are shared by hash, so a
``--prefix`` on read or write limits only what s3fsv itself allows (and what the audit trail
shows), not what the engine serves. docs/access.md says so.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from s3fsv.access.model import AccessState, Grant
from s3fsv.errors import UsageError
from s3fsv.store.keepalive import GC_MARKER_KEY

MAX_SESSION_POLICY = 2048
VERSION = "2012-10-17"
# Compliance-mode retention cannot be shortened by anyone, so putting retention (which
# writing a locked record needs on AWS) stays allowed; deleting, in any form, does not.
AUDIT_DENY = ["s3:BypassGovernanceRetention", "s3:DeleteObject", "s3:DeleteObjectVersion"]


@dataclass(frozen=True)
class Location:
    """Where a store's keys are: ``bucket`` and ``prefix`` (``""`` or ending in ``/``)."""

    bucket: str
    prefix: str

    @classmethod
    def of(cls, url: str) -> Location:
        if not url.startswith("s3://"):
            raise UsageError(
                f"{url} is not an S3 store: engine policies exist only for s3:// stores"
            )
        bucket, _, prefix = url[5:].partition("/")
        prefix = prefix.strip("/")
        return cls(bucket, f"{prefix}/" if prefix else "")

    def arn(self, key: str = "") -> str:
        return f"arn:aws:s3:::{self.bucket}/{self.prefix}{key}"

    @property
    def bucket_arn(self) -> str:
        return f"arn:aws:s3:::{self.bucket}"

    def key(self, key: str) -> str:
        return f"{self.prefix}{key}"


class _Doc:
    """Statements gathered by effect, action set and condition, then merged by resource."""

    def __init__(self, where: Location) -> None:
        self.where = where
        self._allow: dict[tuple[tuple[str, ...], str], set[str]] = defaultdict(set)
        self._deny: dict[tuple[str, ...], set[str]] = defaultdict(set)

    def allow(self, actions: list[str], *keys: str) -> None:
        for key in keys:
            self._allow[(tuple(sorted(actions)), "")].add(self.where.arn(key))

    def list_prefix(self, *key_prefixes: str) -> None:
        for p in key_prefixes:
            self._allow[(("s3:ListBucket",), "prefix")].add(self.where.key(p) + "*")

    def deny(self, actions: list[str], *keys: str) -> None:
        for key in keys:
            self._deny[tuple(sorted(actions))].add(self.where.arn(key))

    def document(self) -> dict[str, Any]:
        statements: list[dict[str, Any]] = []
        for (actions, kind), found in sorted(self._allow.items()):
            res = sorted(found)
            if kind == "prefix":
                statements.append(
                    {
                        "Effect": "Allow",
                        "Action": list(actions),
                        "Resource": [self.where.bucket_arn],
                        "Condition": {"StringLike": {"s3:prefix": res}},
                    }
                )
            else:
                statements.append({"Effect": "Allow", "Action": list(actions), "Resource": res})
        for actions, found in sorted(self._deny.items()):
            statements.append(
                {"Effect": "Deny", "Action": list(actions), "Resource": sorted(found)}
            )
        return {"Version": VERSION, "Statement": statements}


def _root(grant: Grant) -> str:
    return f"{grant.repo}/"


def _add_grant(doc: _Doc, grant: Grant) -> None:
    root = _root(grant)
    uploads = f"_uploads/{grant.repo}/"
    if grant.level in ("read", "write"):
        # The lineage index (_lineage/<input repo>/...) lists what was made from R's commits.
        doc.allow(["s3:GetObject"], root + "*", "s3fsv.json", f"_lineage/{root}*")
        doc.list_prefix(root, f"_lineage/{root}")
    if grant.level == "upload":
        doc.allow(["s3:AbortMultipartUpload", "s3:PutObject"], uploads + grant.prefix + "*")
    elif grant.level == "write":
        refs = [f"refs/branches/{b}" for b in grant.branches] or ["refs/branches/*"]
        doc.allow(
            ["s3:AbortMultipartUpload", "s3:PutObject"],
            root + "objects/*",
            *(root + r for r in refs),
            uploads + "*",
            f"_lineage/*/{root}*",  # the index entries of R's new commits
        )
        doc.allow(["s3:GetObject"], GC_MARKER_KEY)
    elif grant.level == "admin":
        doc.allow(
            ["s3:AbortMultipartUpload", "s3:DeleteObject", "s3:GetObject", "s3:PutObject"],
            root + "*",
            uploads + "*",
        )
        doc.allow(["s3:GetObject"], "s3fsv.json", GC_MARKER_KEY)
        doc.list_prefix(root, uploads)


def _add_protections(doc: _Doc, state: AccessState, principal: str, grants: list[Grant]) -> None:
    """Deny moving protected branches that ``grants`` would let ``principal`` move."""
    for (repo, branch), _rule in sorted(state.protections.items()):
        reaches = any(
            g.repo == repo
            and g.level in ("write", "admin")
            and (not g.branches or branch in g.branches)
            for g in grants
        )
        if reaches and state.may_move(principal, repo, branch) is not None:
            doc.deny(["s3:DeleteObject", "s3:PutObject"], f"{repo}/refs/branches/{branch}")


def _finish(doc: _Doc) -> dict[str, Any]:
    doc.deny(AUDIT_DENY, "_audit/*")
    return doc.document()


def session_policy(state: AccessState, where: Location, principal: str) -> dict[str, Any]:
    """The inline policy for an STS session of ``principal``: its grants and its groups', with
    the protections that apply to it. ``UsageError`` when it has no grant or the document is
    longer than STS accepts (2,048 characters)."""
    grants = state.grants_of(principal)
    if not grants:
        raise UsageError(f"{principal} has no grants")
    doc = _Doc(where)
    for grant in grants:
        _add_grant(doc, grant)
    _add_protections(doc, state, principal, grants)
    policy = _finish(doc)
    size = len(compact(policy))
    if size > MAX_SESSION_POLICY:
        raise UsageError(
            f"the grants of {principal} compile to a {size}-character session policy; STS "
            f"accepts {MAX_SESSION_POLICY}: use fewer, broader grants (or a group)"
        )
    return policy


def identity_policies(state: AccessState, where: Location) -> dict[str, dict[str, Any]]:
    """The managed policies ``apply`` pushes: ``user:<name>`` for each person or device (its
    own grants, and the protections that apply to it through any of its grants) and
    ``group:<name>`` for each group with grants (allows only: a protection's deny belongs to
    the members it applies to)."""
    out: dict[str, dict[str, Any]] = {}
    for name in state.principals():
        doc = _Doc(where)
        for grant in state.grants.values():
            if grant.principal == name:
                _add_grant(doc, grant)
        _add_protections(doc, state, name, state.grants_of(name))
        out[f"user:{name}"] = _finish(doc)
    for group in state.groups():
        grants = [g for g in state.grants.values() if g.principal == group]
        if grants:
            doc = _Doc(where)
            for grant in grants:
                _add_grant(doc, grant)
            out[f"group:{group}"] = _finish(doc)
    return out


def ceiling_policy(where: Location) -> dict[str, Any]:
    """What the gateway's role may do at most: everything on the store's keys except deleting
    audit records and changing the grant history (which admins do with their own keys)."""
    doc = _Doc(where)
    doc.allow(["s3:AbortMultipartUpload", "s3:DeleteObject", "s3:GetObject", "s3:PutObject"], "*")
    doc.list_prefix("")
    doc.deny(["s3:DeleteObject", "s3:PutObject"], "_access/*")
    return _finish(doc)


def gateway_policy(where: Location) -> dict[str, Any]:
    """The session policy of the gateway's own store access: read the grants and the store
    marker, append audit records (and read them, to chain onto the last one)."""
    doc = _Doc(where)
    doc.allow(["s3:GetObject"], "s3fsv.json", "_access/*", "_audit/*")
    doc.allow(["s3:PutObject", "s3:PutObjectRetention"], "_audit/*")
    doc.list_prefix("_access/", "_audit/")
    return _finish(doc)


def compact(policy: dict[str, Any]) -> str:
    return json.dumps(policy, separators=(",", ":"))
