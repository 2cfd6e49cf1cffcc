"""``s3fsv access apply``: the compiled policies pushed through the standard IAM API, with the
same boto3 calls on AWS and on SeaweedFS's embedded IAM.

Names: user ``<prefix><principal>``, group ``<prefix><group>``, managed policies
``<prefix>user-<principal>`` and ``<prefix>group-<group>`` (default prefix ``s3fsv-``).
Only names with the prefix are ever changed or removed, so the account's other identities are
left alone. Access keys are never created here: people and devices get short-lived
credentials from the gateway, or keys an operator creates on purpose.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from typing import Any

from s3fsv.access.model import AccessState
from s3fsv.access.policy import Location, identity_policies
from s3fsv.errors import NotFound, UsageError
from s3fsv.store.backend.aws import errors

DEFAULT_PREFIX = "s3fsv-"
MAX_POLICY_VERSIONS = 5  # AWS keeps at most five versions of a managed policy
_CALLS = {  # kind -> (name field, list attached, attach, detach)
    "user": (
        "UserName",
        "list_attached_user_policies",
        "attach_user_policy",
        "detach_user_policy",
    ),
    "group": (
        "GroupName",
        "list_attached_group_policies",
        "attach_group_policy",
        "detach_group_policy",
    ),
}


def _pages(call: Callable[..., Any], key: str, **kw: Any) -> Iterator[Any]:
    marker: str | None = None
    while True:
        resp = call(**kw, **({"Marker": marker} if marker else {}))
        yield from resp.get(key, ())
        if not resp.get("IsTruncated"):
            return
        marker = resp.get("Marker")


def apply(
    state: AccessState,
    where: Location,
    iam: Any,
    *,
    prefix: str = DEFAULT_PREFIX,
    dry_run: bool = False,
) -> list[str]:
    """Make the account's ``prefix``-named users, groups, memberships, policies and
    attachments match ``state``. Returns one line per change (made, or with ``dry_run`` to be
    made); an account already in line gives none."""
    done: list[str] = []

    def do(line: str, call: Callable[..., Any], **kw: Any) -> Any:
        done.append(line)
        if dry_run:
            return None
        with errors(f"IAM {line}"):
            return call(**kw)

    with errors("IAM listing"):
        users = {u["UserName"] for u in _pages(iam.list_users, "Users")}
        groups = {g["GroupName"] for g in _pages(iam.list_groups, "Groups")}
        policies = {
            p["PolicyName"]: p["Arn"]
            for p in _pages(iam.list_policies, "Policies", Scope="Local")
            if p["PolicyName"].startswith(prefix)
        }
    for name in state.principals():
        if prefix + name not in users:
            do(f"create user {prefix}{name}", iam.create_user, UserName=prefix + name)
    for group in state.groups():
        gname = prefix + group
        if gname not in groups:
            do(f"create group {gname}", iam.create_group, GroupName=gname)
            have: set[str] = set()
        else:
            with errors("IAM get group"):
                have = {u["UserName"] for u in iam.get_group(GroupName=gname).get("Users", ())}
        want = {prefix + m for m in state.members.get(group, ()) if state.kinds.get(m) != "group"}
        for user in sorted(want - have):
            do(f"add {user} to {gname}", iam.add_user_to_group, GroupName=gname, UserName=user)
        for user in sorted(u for u in have - want if u.startswith(prefix)):
            do(
                f"remove {user} from {gname}",
                iam.remove_user_from_group,
                GroupName=gname,
                UserName=user,
            )
    wanted: dict[str, tuple[str, str, dict[str, Any]]] = {}
    for key, doc in identity_policies(state, where).items():
        kind, _, name = key.partition(":")
        wanted[f"{prefix}{kind}-{name}"] = (kind, prefix + name, doc)
    for pname, (kind, entity, doc) in sorted(wanted.items()):
        arn = policies.get(pname)
        text = json.dumps(doc, separators=(",", ":"))
        if arn is None:
            made = do(
                f"create policy {pname}", iam.create_policy, PolicyName=pname, PolicyDocument=text
            )
            arn = made["Policy"]["Arn"] if made else f"(new) {pname}"
        elif _normal(_current_document(iam, arn)) != _normal(doc):
            arn = _update(iam, pname, arn, text, kind, entity, do)
        field, lister, attacher, _ = _CALLS[kind]
        if pname not in _attached(getattr(iam, lister), field, entity, dry_run):
            do(
                f"attach {pname} to {kind} {entity}",
                getattr(iam, attacher),
                **{field: entity, "PolicyArn": arn},
            )
    entities = {"user": users, "group": groups}
    for pname, arn in sorted(policies.items()):
        if pname in wanted:
            continue
        for kind, (field, lister, _, detacher) in _CALLS.items():
            for entity in sorted(e for e in entities[kind] if e.startswith(prefix)):
                if pname in _attached(getattr(iam, lister), field, entity, dry_run):
                    do(
                        f"detach {pname} from {kind} {entity}",
                        getattr(iam, detacher),
                        **{field: entity, "PolicyArn": arn},
                    )
        do(f"delete policy {pname}", iam.delete_policy, PolicyArn=arn)
    return done


def _update(
    iam: Any, pname: str, arn: str, text: str, kind: str, entity: str, do: Callable[..., Any]
) -> str:
    """Give policy ``pname`` the document ``text``: a new default version where IAM allows
    (AWS); where it refuses one (SeaweedFS takes no Deny in a new version), the policy is
    detached, deleted and made again (the next step attaches it), so for a moment the entity
    has less access, never more. Returns the policy's ARN."""
    _drop_old_version(iam, arn, do)
    try:
        do(
            f"update policy {pname}",
            iam.create_policy_version,
            PolicyArn=arn,
            PolicyDocument=text,
            SetAsDefault=True,
        )
        return arn
    except UsageError:
        field, _, _, detacher = _CALLS[kind]
        with contextlib.suppress(NotFound):
            do(
                f"detach {pname} from {kind} {entity}",
                getattr(iam, detacher),
                **{field: entity, "PolicyArn": arn},
            )
        do(f"delete policy {pname} (IAM refused a new version)", iam.delete_policy, PolicyArn=arn)
        made = do(
            f"create policy {pname}", iam.create_policy, PolicyName=pname, PolicyDocument=text
        )
        return str(made["Policy"]["Arn"]) if made else arn


def _normal(value: Any) -> Any:
    """A policy document in one spelling: IAM may return a one-element list as its element
    (SeaweedFS does), and order within statements' lists does not matter."""
    if isinstance(value, dict):
        return {
            k: sorted(_as_list(_normal(v))) if k in _LISTS else _normal(v) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_normal(v) for v in value]
    return value


_LISTS = {"Action", "NotAction", "Resource", "NotResource", "s3:prefix"}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _attached(call: Callable[..., Any], field: str, entity: str, dry_run: bool) -> set[str]:
    try:
        with errors(f"IAM list policies of {entity}"):
            return {p["PolicyName"] for p in _pages(call, "AttachedPolicies", **{field: entity})}
    except NotFound:
        if dry_run:  # an entity the dry run would have created
            return set()
        raise


def _current_document(iam: Any, arn: str) -> Any:
    with errors(f"IAM read policy {arn}"):
        version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
        doc = iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]
    document = doc["Document"]
    return json.loads(document) if isinstance(document, str) else document


def _drop_old_version(iam: Any, arn: str, do: Callable[..., Any]) -> None:
    """Make room for a new version where the account keeps only five."""
    with errors(f"IAM list versions of {arn}"):
        versions = iam.list_policy_versions(PolicyArn=arn).get("Versions", [])
    if len(versions) >= MAX_POLICY_VERSIONS:
        old = [v for v in versions if not v.get("IsDefaultVersion")]
        oldest = min(old, key=lambda v: str(v.get("CreateDate", v["VersionId"])))
        do(
            f"delete old version {oldest['VersionId']} of {arn}",
            iam.delete_policy_version,
            PolicyArn=arn,
            VersionId=oldest["VersionId"],
        )
