"""Retention rules: how much history of each branch ``gc`` keeps readable.

A repo's rules are one record, ``STORE/_retention/<repo>``, replaced by compare-and-swap:
``{"branches": {"main": 30, "scratch": 7, "*": 90}}``, days per branch name (``*``: every
branch without a rule of its own; ``null``: all of it). Without a rule a branch keeps all
its history. Tags are kept for ever, always: a tag names a commit someone meant to keep.

What "keep N days" keeps: every commit of the branch's history (all parents) made in the
last N days, and the newest commit before that on each line of history, which is what the
branch held N days ago. Older commits stay in the history (``s3fsv log`` shows them, their
ids never change), but their files are gone once ``gc`` runs: reading them is an error.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from s3fsv.errors import AlreadyExists, PreconditionFailed, UsageError
from s3fsv.store.objects import Commit
from s3fsv.store.records import Records
from s3fsv.store.refs import check_ref_name
from s3fsv.store.repo import Repository, utc_now

NAMESPACE = "retention"
ANY_BRANCH = "*"

Rules = dict[str, int | None]


def read_rules(records: Records, repo: str) -> Rules:
    """Days of history kept per branch name (``*`` for the others) of ``repo``."""
    found = records.find(check_ref_name(repo, "repo"))
    return dict(found.value.get("branches", {})) if found is not None else {}


def set_rule(records: Records, repo: str, branch: str, days: int | None, by: str) -> Rules:
    """Keep ``days`` of ``branch``'s history (None: all of it); return the repo's rules."""
    if branch != ANY_BRANCH:
        check_ref_name(branch, "branch")
    if days is not None and days < 0:
        raise UsageError(f"days of history must be 0 or more, not {days}")
    for _ in range(20):
        found = records.find(repo)
        value: dict[str, Any] = dict(found.value) if found is not None else {}
        rules = {**value.get("branches", {}), branch: days}
        value.update(branches=rules, set=utc_now(), by=by)
        try:
            if found is None:
                records.create(repo, value)
            else:
                records.replace(repo, value, found.etag)
            return rules
        except (AlreadyExists, PreconditionFailed):
            continue
    raise PreconditionFailed(f"could not set the retention of {repo}: too much contention")


def rule_for(rules: Rules, branch: str) -> int | None:
    return rules.get(branch, rules.get(ANY_BRANCH))


def _when(commit: Commit) -> datetime | None:
    try:
        return datetime.fromisoformat(commit.time.replace("Z", "+00:00"))
    except ValueError:
        return None


def kept_commits(
    repo: Repository, head: str, days: int | None, now: datetime | None = None
) -> dict[str, tuple[Commit, bool]]:
    """Every commit of ``head``'s history (all parents), with whether its files are kept
    under a rule of ``days`` (None: all are)."""
    cutoff = None
    if days is not None:
        cutoff = (now or datetime.now(timezone.utc)) - timedelta(days=days)
    out: dict[str, tuple[Commit, bool]] = {}
    # (commit, whether a newer commit on this line of history is before the cutoff already)
    frontier: list[tuple[str, bool]] = [(head, False)]
    while frontier:
        cid, past = frontier.pop()
        known = out.get(cid)
        if known is not None and (known[1] or past):
            continue  # reached before on a line that keeps at least as much
        commit = known[0] if known is not None else repo.commit_object(cid)
        when = _when(commit)
        old = cutoff is not None and when is not None and when < cutoff
        out[cid] = (commit, not past)
        frontier.extend((p, past or old) for p in commit.parents)
    return out
