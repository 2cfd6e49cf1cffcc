"""``s3fsv access check``: may PRINCIPAL do ACTION on REPO[@BRANCH][:PATH], and which rule
decided. The same rules the policy compiler turns into engine policies, asked directly, so
that s3fsv can say clearly why something is refused; the engine enforces them regardless."""

from __future__ import annotations

from dataclasses import dataclass

from s3fsv.access.model import IMPLIES, AccessState, Grant, check_level, path_within


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    grant: Grant | None = None

    def __str__(self) -> str:
        return f"{'yes' if self.allowed else 'no'}: {self.reason}"


def decide(
    state: AccessState,
    principal: str,
    action: str,
    repo: str,
    branch: str | None = None,
    path: str = "",
) -> Decision:
    """Whether ``principal`` may ``action`` (read, upload, write, admin) ``repo``, on
    ``branch`` (write: default main) and at ``path`` ("" = the whole repo)."""
    check_level(action)
    if action == "write" and branch is None:
        branch = "main"
    what = f"{action} {repo}" + (f"@{branch}" if branch else "") + (f":{path}" if path else "")
    fitting = [
        g
        for g in state.grants_of(principal)
        if g.repo == repo
        and action in IMPLIES[g.level]
        and _prefix_fits(g, action, path)
        and (not g.branches or branch is None or branch in g.branches)
    ]
    if not fitting:
        near = [g for g in state.grants_of(principal) if g.repo == repo]
        hint = f" (has: {'; '.join(g.describe() for g in near)})" if near else ""
        return Decision(False, f"no grant gives {principal} {what}{hint}")
    grant = fitting[0]
    via = "" if grant.principal == principal else f" through group {grant.principal}"
    if action in ("write", "admin") and branch is not None:
        rule = state.may_move(principal, repo, branch)
        if rule is not None:
            return Decision(
                False,
                f"{repo}@{branch} is protected ({rule.id}): only {', '.join(rule.allow)} may "
                f"move it",
                grant,
            )
    return Decision(True, f"grant {grant.id} ({grant.describe()}){via} allows {what}", grant)


def _prefix_fits(grant: Grant, action: str, path: str) -> bool:
    if not grant.prefix:
        return True
    if action == "upload" or path:
        return bool(path) and path_within(path, grant.prefix)
    return False
