"""Branch and tag heads: the only mutable state in a store, changed only by compare-and-swap.

``<repo>/refs/branches/<name>`` and ``<repo>/refs/tags/<name>`` each hold ``{"commit": ID}`` in
canonical JSON. A branch moves only with ``if_match`` on the etag its mover read; any ref is
created only with ``if_none_match``. Tags are never moved.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from s3fsv.errors import AlreadyExists, CorruptObject, InvalidName, NotFound, PreconditionFailed
from s3fsv.store.backend.base import Backend
from s3fsv.store.events import Event, Events
from s3fsv.store.objects import canonical_json, is_object_id

_REF_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


_ANCESTRY = re.compile(r"(.+)~(0|[1-9][0-9]{0,5})?")  # REF~N: the N-th first-parent ancestor


def check_ref_name(name: str, what: str = "ref") -> str:
    """Branch, tag and repo names: 1-100 of ``A-Z a-z 0-9 . _ -``, starting alphanumeric, and
    not ending in ``.lock`` or containing ``..`` (so they are safe as S3 keys and path names)."""
    if (
        not isinstance(name, str)
        or not _REF_NAME.fullmatch(name)
        or ".." in name
        or name.endswith(".lock")
    ):
        raise InvalidName(f"invalid {what} name {name!r}: {_name_rule_broken(name)}")
    return name


def _name_rule_broken(name: object) -> str:
    if isinstance(name, str) and name:
        if len(name) > 100:
            return f"at most 100 characters ({len(name)} given)"
        if ".." in name:
            return "'..' is not allowed in a name"
        if name.endswith(".lock"):
            return "a name may not end in '.lock'"
    return "use letters, digits, '.', '_' and '-', starting with a letter or digit"


def split_ancestry(spec: str) -> tuple[str, int]:
    """``main~2~`` -> ``("main", 3)``: the ref and how many first parents back from it
    (``~`` alone is ``~1``)."""
    base, steps = spec, 0
    while (found := _ANCESTRY.fullmatch(base)) is not None:
        base, steps = found.group(1), steps + int(found.group(2) or 1)
    return base, steps


def check_ref_spec(spec: str) -> str:
    """A ref as users write it: a ref name or commit id prefix, optionally followed by
    ``~N`` suffixes (ancestors, see ``Repository.resolve``)."""
    check_ref_name(split_ancestry(spec)[0])
    return spec


@dataclass(frozen=True)
class RefValue:
    commit: str
    etag: str


class Refs:
    """Refs of one repo. Every change is told to ``events`` once it is made (the one place
    ref changes are observed: see ``s3fsv.store.events``)."""

    def __init__(self, backend: Backend, repo: str, events: Events | None = None) -> None:
        self.backend = backend
        self.repo = repo
        self.events = events if events is not None else Events()

    def _told(
        self, action: str, name: str, old: str | None, new: str | None, **detail: Any
    ) -> None:
        self.events.emit(Event(action, self.repo, name, old, new, detail))

    def _key(self, kind: str, name: str) -> str:
        check_ref_name(name, {"branches": "branch", "tags": "tag"}.get(kind, kind))
        return f"{self.repo}/refs/{kind}/{name}"

    def _read(self, key: str) -> RefValue:
        info = self.backend.head(key)
        data = self.backend.get(key)
        try:
            commit = json.loads(data)["commit"]
        except (ValueError, KeyError, TypeError):
            commit = None
        if not is_object_id(commit):
            raise CorruptObject(key, "ref does not name a commit")
        # The etag from head may predate the get; a stale etag only makes the next CAS fail.
        return RefValue(commit, info.etag)

    def _list(self, kind: str) -> dict[str, str]:
        prefix = f"{self.repo}/refs/{kind}/"
        out: dict[str, str] = {}
        for key in self.backend.list(prefix):
            name = key[len(prefix) :]
            try:
                check_ref_name(name)
            except InvalidName:
                continue  # foreign keys are ignored, never followed
            out[name] = self._read(key).commit
        return out

    # -- branches ---------------------------------------------------------------------------
    def branch(self, name: str) -> RefValue:
        try:
            return self._read(self._key("branches", name))
        except NotFound:
            raise NotFound(f"no such branch {name!r} in repo {self.repo!r}") from None

    def branches(self) -> dict[str, str]:
        return self._list("branches")

    def create_branch(self, name: str, commit: str) -> None:
        try:
            self.backend.put(self._key("branches", name), _body(commit), if_none_match=True)
        except PreconditionFailed:
            raise AlreadyExists(f"branch {name!r} already exists in repo {self.repo!r}") from None
        self._told("branch.create", name, None, commit)

    def move_branch(
        self,
        name: str,
        commit: str,
        expected: RefValue,
        detail: Mapping[str, Any] | None = None,
    ) -> str:
        """CAS: point ``name`` at ``commit`` if it is still at ``expected``; returns the new etag.
        Raises ``PreconditionFailed`` when another writer moved it first. ``detail`` (what the
        commit holds) goes with the ``commit`` event."""
        etag = self.backend.put(self._key("branches", name), _body(commit), if_match=expected.etag)
        self._told("commit", name, expected.commit, commit, **dict(detail or {}))
        return etag

    def delete_branch(self, name: str) -> str:
        """Delete branch ``name``; return the commit it pointed to (its commits stay in the
        store, so the branch can be made again from that id)."""
        key = self._key("branches", name)
        head = self.branch(name).commit
        self.backend.delete(key)
        self._told("branch.delete", name, head, None)
        return head

    # -- tags -------------------------------------------------------------------------------
    def tag(self, name: str) -> str:
        try:
            return self._read(self._key("tags", name)).commit
        except NotFound:
            raise NotFound(f"no such tag {name!r} in repo {self.repo!r}") from None

    def tags(self) -> dict[str, str]:
        return self._list("tags")

    def tag_ref(self, name: str) -> RefValue:
        """Tag ``name`` with the etag to pass to ``move_tag``."""
        try:
            return self._read(self._key("tags", name))
        except NotFound:
            raise NotFound(f"no such tag {name!r} in repo {self.repo!r}") from None

    def move_tag(self, name: str, commit: str, expected: RefValue) -> str:
        """CAS a tag to ``commit``. Tags never move, except when a purge rewrites the commit
        one names (``s3fsv purge --include-tags``): the only caller."""
        etag = self.backend.put(self._key("tags", name), _body(commit), if_match=expected.etag)
        self._told("tag.move", name, expected.commit, commit)
        return etag

    def create_tag(self, name: str, commit: str) -> None:
        try:
            self.backend.put(self._key("tags", name), _body(commit), if_none_match=True)
        except PreconditionFailed:
            raise AlreadyExists(f"tag {name!r} already exists in repo {self.repo!r}") from None
        self._told("tag.create", name, None, commit)


def _body(commit: str) -> bytes:
    return canonical_json({"commit": commit})
