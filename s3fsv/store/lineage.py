"""The lineage index: for each commit, the commits that recorded it as an input.

A commit's ``provenance.inputs`` says what it was made from (upstream). To find what was made
from a commit (downstream) without reading every log, each commit with inputs also writes one
empty object per input, once, after its branch has moved to it (docs/format.md, 11.2)::

    _lineage/<input repo>/<input commit>/<repo>/<commit>

so the commits made directly from ``R@C`` are the keys listed under ``_lineage/R/C/``: one LIST
per hop. They are records of the ``lineage`` namespace (``s3fsv.store.records``): written with
``If-None-Match: *`` and never changed, under a prefix no repo can have. The index is a cache
of what commits say: :func:`index_commit` rebuilds any entry, and readers check each entry
against the commit it names.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import Any

from s3fsv.errors import AlreadyExists, InvalidName, S3fsvError
from s3fsv.store.backend.base import Backend
from s3fsv.store.objects import is_object_id
from s3fsv.store.records import Records
from s3fsv.store.refs import check_ref_name

log = logging.getLogger(__name__)

PREFIX = "_lineage/"


def recorded_inputs(provenance: Mapping[str, Any]) -> list[dict[str, str]]:
    """The well-formed entries of ``provenance.inputs``: ``{"repo", "commit", "path", "via"}``
    (``path`` and ``via`` "" when not recorded), each once, in order. Entries naming no
    valid repo or no full commit id (another writer's, a prefix) are skipped."""
    found: dict[tuple[str, str, str], dict[str, str]] = {}
    inputs = provenance.get("inputs")
    for item in inputs if isinstance(inputs, list) else ():
        if not isinstance(item, dict):
            continue
        repo, commit = item.get("repo"), item.get("commit")
        if not (isinstance(repo, str) and is_object_id(commit) and _valid_repo(repo)):
            continue
        path = item.get("path") if isinstance(item.get("path"), str) else ""
        via = item.get("via") if isinstance(item.get("via"), str) else ""
        found.setdefault(
            (repo, str(commit), str(path)),
            {"repo": repo, "commit": str(commit), "path": str(path), "via": str(via)},
        )
    return list(found.values())


def input_commits(provenance: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The (repo, full commit id) pairs ``provenance.inputs`` names, each once, in order."""
    return list(dict.fromkeys((i["repo"], i["commit"]) for i in recorded_inputs(provenance)))


NAMESPACE = "lineage"


def edge_name(input_repo: str, input_commit: str, repo: str, commit: str) -> str:
    """The record name of one entry; its key is ``_lineage/`` and this."""
    return f"{input_repo}/{input_commit}/{repo}/{commit}"


def edge_key(input_repo: str, input_commit: str, repo: str, commit: str) -> str:
    return PREFIX + edge_name(input_repo, input_commit, repo, commit)


def index_commit(backend: Backend, repo: str, commit: str, provenance: Mapping[str, Any]) -> int:
    """Write the index entries of ``repo@commit`` (one per input its provenance names) that
    are not there yet; return how many inputs it has. Idempotent."""
    pairs = input_commits(provenance)
    records = Records(backend, NAMESPACE)
    for input_repo, input_commit in pairs:
        with contextlib.suppress(AlreadyExists):  # written before: write-once
            records.create(edge_name(input_repo, input_commit, repo, commit), {})
    return len(pairs)


def try_index_commit(
    backend: Backend, repo: str, commit: str, provenance: Mapping[str, Any]
) -> None:
    """:func:`index_commit` after a commit has landed: a failure is logged, not raised (the
    commit stands; ``s3fsv lineage --reindex`` writes what is missing)."""
    try:
        index_commit(backend, repo, commit, provenance)
    except S3fsvError as err:
        log.warning(
            "commit %s of %s is not in the lineage index (%s); s3fsv lineage --reindex adds it",
            commit,
            repo,
            err,
        )


def derived(backend: Backend, input_repo: str, input_commit: str) -> Iterator[tuple[str, str]]:
    """(repo, commit) of each commit whose entry says it was made from
    ``input_repo@input_commit``, in key order. Unchecked: see the module docstring."""
    check_ref_name(input_repo, "repo")
    if not is_object_id(input_commit):
        raise InvalidName(f"not a full commit id: {input_commit!r}")
    below = f"{input_repo}/{input_commit}"
    for name in Records(backend, NAMESPACE).names(below):
        repo, _, commit = name[len(below) + 1 :].partition("/")
        if _valid_repo(repo) and is_object_id(commit):
            yield repo, commit


def forget_commit(backend: Backend, repo: str, commit: str, provenance: Mapping[str, Any]) -> None:
    """Delete the index entries of ``repo@commit``: for a commit that is being discarded (the
    scratch commit of ``s3fsv reproduce``), never for one that stays reachable."""
    records = Records(backend, NAMESPACE)
    for input_repo, input_commit in input_commits(provenance):
        records.delete(edge_name(input_repo, input_commit, repo, commit))


def _valid_repo(name: str) -> bool:
    try:
        check_ref_name(name, "repo")
    except InvalidName:
        return False
    return True
