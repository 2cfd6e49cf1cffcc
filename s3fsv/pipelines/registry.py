"""Pipeline specs kept in the store, versioned.

Each version of a spec is a write-once record named by its SHA-256
(``_pipelines/specs/<name>/versions/<sha256>``); ``_pipelines/specs/<name>/head`` names the
current one and lists every version with when and by whom it was set, changed only by
compare-and-swap. A deleted pipeline keeps its history (its head says ``deleted``), so that
the jobs it ran can still name the spec they ran.
"""

from __future__ import annotations

import contextlib
from typing import Any

from s3fsv.api import Store
from s3fsv.errors import AlreadyExists, NotFound, PreconditionFailed, UsageError
from s3fsv.pipelines.spec import PipelineSpec, spec_from_json
from s3fsv.store.provenance import provenance_context
from s3fsv.store.repo import utc_now

NAMESPACE = "pipelines"


class Registry:
    """The pipelines of one store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.records = store.records(NAMESPACE)

    def create(self, spec: PipelineSpec) -> str:
        """Add a new pipeline; ``AlreadyExists`` if one of that name exists. Returns the
        spec's version."""
        self._check_repos(spec)
        self._store_version(spec)
        head = {"version": spec.version, "deleted": False, "history": [self._event(spec)]}
        current = self.records.find(self._head(spec.name))
        if current is None:
            try:
                self.records.create(self._head(spec.name), head)
            except AlreadyExists:
                raise AlreadyExists(f"pipeline {spec.name!r} exists already") from None
            return spec.version
        if not current.value.get("deleted"):
            raise AlreadyExists(f"pipeline {spec.name!r} exists already: use pipeline update")
        head["history"] = current.value["history"] + head["history"]
        self._swap(spec.name, head, current.etag)
        return spec.version

    def update(self, spec: PipelineSpec) -> str:
        """Set a new version of an existing pipeline's spec; returns it."""
        self._check_repos(spec)
        current = self._current(spec.name)
        if current.value["version"] == spec.version:
            return spec.version
        self._store_version(spec)
        history = current.value["history"] + [self._event(spec)]
        self._swap(
            spec.name, {"version": spec.version, "deleted": False, "history": history}, current.etag
        )
        return spec.version

    def delete(self, name: str) -> None:
        current = self._current(name)
        value = {**current.value, "deleted": True}
        value["history"] = value["history"] + [{**self._event(None), "version": "deleted"}]
        self._swap(name, value, current.etag)

    def get(self, name: str) -> PipelineSpec:
        return self.version(name, self._current(name).value["version"])

    def history(self, name: str) -> list[dict[str, Any]]:
        return list(self._current(name).value["history"])

    def version(self, name: str, version: str) -> PipelineSpec:
        try:
            record = self.records.get(f"specs/{name}/versions/{version}")
        except NotFound:
            raise NotFound(f"pipeline {name!r} has no spec version {version[:12]}") from None
        return spec_from_json(record.value)

    def names(self) -> list[str]:
        out = []
        for child in self.records.children("specs"):
            name = child.rsplit("/", 1)[-1]
            head = self.records.find(self._head(name))
            if head is not None and not head.value.get("deleted"):
                out.append(name)
        return sorted(out)

    # -- helpers --------------------------------------------------------------------------
    @staticmethod
    def _head(name: str) -> str:
        return f"specs/{name}/head"

    def _current(self, name: str) -> Any:
        current = self.records.find(self._head(name))
        if current is None or current.value.get("deleted"):
            known = ", ".join(self.names()) or "none"
            raise NotFound(f"no pipeline named {name!r} (pipelines: {known})")
        return current

    def _swap(self, name: str, value: dict[str, Any], etag: str) -> None:
        try:
            self.records.replace(self._head(name), value, etag)
        except PreconditionFailed:
            raise PreconditionFailed(
                f"pipeline {name!r} was changed by someone else meanwhile: try again"
            ) from None

    def _store_version(self, spec: PipelineSpec) -> None:
        # A version set before holds the same bytes: nothing to write.
        with contextlib.suppress(AlreadyExists):
            self.records.create(f"specs/{spec.name}/versions/{spec.version}", spec.to_json())

    def _check_repos(self, spec: PipelineSpec) -> None:
        for repo, branch in (
            (spec.input_repo, spec.input_branch),
            (spec.output_repo, spec.output_branch),
        ):
            handle = self.store.repo(repo)
            if branch not in handle.branches():
                raise UsageError(
                    f"pipeline {spec.name!r}: repo {repo!r} has no branch {branch!r} "
                    f"(create it with: s3fsv branch create {repo} {branch})"
                )

    @staticmethod
    def _event(spec: PipelineSpec | None) -> dict[str, Any]:
        ctx = provenance_context()
        return {
            "version": spec.version if spec else "",
            "time": utc_now(),
            "by": f"{ctx['user']}@{ctx['host']}",
        }
