"""Who may do what: principals, grants, protected branches and tokens, and how the history of
changes to them folds into the current state.

- A **principal** is a person, a device or a group (whose members are principals). Names are
  2 to 50 of ``A-Z a-z 0-9 . _ - @ + = ,``, starting with a letter or digit: usable as an IAM
  user name and as an STS session name.
- A **grant** gives a principal one level on one repo (or one records namespace such as
  ``_pipelines``): ``read`` < ``write`` < ``admin``, and ``upload``, which only lets a
  principal put new files below its upload prefix. ``prefix`` limits it to a path prefix
  inside the repo; ``branches`` limits ``write`` to named branches.
- A **protected branch** may be moved only by the principals (or members of the groups) it
  names, whatever their grants.
- A **token** is a secret that stands for a principal at the gateway; only its SHA-256 is kept.

The state is never stored as such: it is the fold of the change records of the grant history
(:mod:`s3fsv.access.grants`), so every past state can be recomputed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from s3fsv.errors import InvalidName, UsageError
from s3fsv.store.objects import split_path
from s3fsv.store.refs import check_ref_name

LEVELS = ("read", "upload", "write", "admin")
KINDS = ("person", "device", "group")
_PRINCIPAL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+=,-]{1,49}")

# What each level includes besides itself (upload is not read: a camera sees nothing).
IMPLIES = {
    "read": {"read"},
    "upload": {"upload"},
    "write": {"read", "upload", "write"},
    "admin": {"read", "upload", "write", "admin"},
}


def check_principal(name: str) -> str:
    if not isinstance(name, str) or not _PRINCIPAL.fullmatch(name):
        raise InvalidName(
            f"invalid principal name {name!r}: 2 to 50 letters, digits or ._@+=,- starting "
            "with a letter or digit"
        )
    return name


def check_target(name: str) -> str:
    """A repo name, or ``_namespace`` for the records of one namespace (``_pipelines``)."""
    if isinstance(name, str) and name.startswith("_"):
        check_ref_name(name[1:], "records namespace")
        if name[1:] in ("access", "audit"):
            raise UsageError(f"{name} is kept by s3fsv itself and cannot be granted")
        return name
    return check_ref_name(name, "repo")


def check_level(level: str) -> str:
    if level not in LEVELS:
        raise UsageError(f"unknown access level {level!r}: use {', '.join(LEVELS)}")
    return level


def clean_prefix(prefix: str | None) -> str:
    """``incoming/cam-17`` -> ``incoming/cam-17/``; ``None``/``""``/``/`` -> ``""``."""
    if not prefix or prefix.strip("/") == "":
        return ""
    return "/".join(split_path(prefix)) + "/"


def path_within(path: str, prefix: str) -> bool:
    """Whether repo path ``path`` is ``prefix`` itself or below it (``prefix`` ends in /)."""
    if not prefix:
        return True
    clean = "/".join(split_path(path)) if path else ""
    return clean.startswith(prefix) or clean + "/" == prefix


@dataclass(frozen=True)
class Grant:
    id: str
    principal: str
    level: str
    repo: str
    prefix: str = ""
    branches: tuple[str, ...] = ()

    def describe(self) -> str:
        text = f"{self.principal} {self.level} {self.repo}"
        if self.prefix:
            text += f" --prefix {self.prefix}"
        for branch in self.branches:
            text += f" --branch {branch}"
        return text

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "principal": self.principal,
            "level": self.level,
            "repo": self.repo,
            "prefix": self.prefix,
            "branches": list(self.branches),
        }


@dataclass(frozen=True)
class Protection:
    id: str
    repo: str
    branch: str
    allow: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "repo": self.repo, "branch": self.branch, "allow": list(self.allow)}


@dataclass(frozen=True)
class Token:
    id: str
    principal: str
    sha256: str
    created: str
    expires: str | None
    revoked: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "principal": self.principal,
            "created": self.created,
            "expires": self.expires,
            "revoked": self.revoked,
        }


@dataclass
class AccessState:
    """The grants, protections, groups and tokens after the changes up to ``seq``."""

    seq: int = -1
    grants: dict[str, Grant] = field(default_factory=dict)
    protections: dict[tuple[str, str], Protection] = field(default_factory=dict)
    members: dict[str, set[str]] = field(default_factory=dict)  # group -> principals
    kinds: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, Token] = field(default_factory=dict)

    def apply(self, change: dict[str, Any]) -> None:
        """Fold one change record in. Unknown operations are ignored (a newer writer's)."""
        op, seq = change.get("op"), int(change["seq"])
        self.seq = seq
        if op == "grant":
            gid = f"g{seq}"
            self.grants[gid] = Grant(
                gid,
                change["principal"],
                change["level"],
                change["repo"],
                change.get("prefix", ""),
                tuple(change.get("branches", ())),
            )
            if "kind" in change:  # otherwise it may still become a group
                self.kinds[change["principal"]] = change["kind"]
        elif op == "revoke":
            for gid in change["grants"]:
                self.grants.pop(gid, None)
        elif op == "protect":
            key = (change["repo"], change["branch"])
            self.protections[key] = Protection(
                f"p{seq}", change["repo"], change["branch"], tuple(change["allow"])
            )
        elif op == "unprotect":
            self.protections.pop((change["repo"], change["branch"]), None)
        elif op == "principal":
            self.kinds[change["name"]] = change["kind"]
        elif op == "group.add":
            self.kinds[change["group"]] = "group"
            self.members.setdefault(change["group"], set()).update(change["members"])
        elif op == "group.remove":
            self.members.get(change["group"], set()).difference_update(change["members"])
        elif op == "token.create":
            self.tokens[change["id"]] = Token(
                change["id"],
                change["principal"],
                change["sha256"],
                change["time"],
                change.get("expires"),
            )
        elif op == "token.revoke":
            token = self.tokens.get(change["id"])
            if token is not None:
                self.tokens[change["id"]] = replace(token, revoked=True)

    # -- questions --------------------------------------------------------------------------
    def groups_of(self, principal: str) -> set[str]:
        """The groups ``principal`` belongs to, directly or through other groups."""
        found: set[str] = set()
        frontier = {principal}
        while frontier:
            nxt = {g for g, ms in self.members.items() if ms & frontier and g not in found}
            found |= nxt
            frontier = nxt
        return found

    def identities(self, principal: str) -> set[str]:
        """``principal`` and its groups: every name a grant to it may be made to."""
        return {principal} | self.groups_of(principal)

    def grants_of(self, principal: str) -> list[Grant]:
        """Grants made to ``principal`` or to one of its groups, oldest first."""
        names = self.identities(principal)
        return sorted(
            (g for g in self.grants.values() if g.principal in names),
            key=lambda g: int(g.id[1:]),
        )

    def may_move(self, principal: str, repo: str, branch: str) -> Protection | None:
        """The protection that stops ``principal`` moving ``repo@branch``, if any."""
        rule = self.protections.get((repo, branch))
        if rule is None or set(rule.allow) & self.identities(principal):
            return None
        return rule

    def principals(self) -> list[str]:
        """Every person or device named by a grant, a group or a token (not groups)."""
        names = {g.principal for g in self.grants.values()}
        names |= {m for ms in self.members.values() for m in ms}
        names |= {t.principal for t in self.tokens.values()}
        names |= set(self.kinds)
        return sorted(n for n in names if self.kinds.get(n, "person") != "group")

    def groups(self) -> list[str]:
        return sorted(n for n, k in self.kinds.items() if k == "group")
