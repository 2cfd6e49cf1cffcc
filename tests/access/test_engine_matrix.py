"""The allow/deny matrix, enforced by the engine: each principal's gateway-issued credentials
are used with plain boto3 (no s3fsv check in the way), and SeaweedFS answers 403 for what its
grants do not allow: the look-alike repoAB, a listing without the trailing slash, the
protected main branch, other upload prefixes, deletes by anyone but admin, the audit trail."""

from __future__ import annotations

import json
from typing import Any

import pytest

from s3fsv.access.client import GatewayClient
from tests.access.conftest import World
from tests.access.support import engine, s3_with

ALL = ("reader", "uploader", "writer", "admin", "pipeline")


def _ref(world: World, repo: str) -> bytes:
    return json.dumps({"commit": world.heads[repo]}, separators=(",", ":")).encode()


def _cases(world: World) -> list[tuple[str, Any, set[str]]]:
    """(what, call(s3), who may) for each request of the matrix."""
    b, k = world.bucket, world.key
    ref = _ref(world, "repoA")
    return [
        (
            "get repoA",
            lambda s3: s3.get_object(Bucket=b, Key=k("repoA/repo.json")),
            {"reader", "writer", "admin", "pipeline"},
        ),
        ("get repoAB", lambda s3: s3.get_object(Bucket=b, Key=k("repoAB/repo.json")), set()),
        (
            "list repoA/",
            lambda s3: s3.list_objects_v2(Bucket=b, Prefix=k("repoA/")),
            {"reader", "writer", "admin", "pipeline"},
        ),
        (
            "list repoA (no slash)",
            lambda s3: s3.list_objects_v2(Bucket=b, Prefix=k("repoA")),
            set(),
        ),
        ("list repoAB/", lambda s3: s3.list_objects_v2(Bucket=b, Prefix=k("repoAB/")), set()),
        (
            "put object",
            lambda s3: s3.put_object(Bucket=b, Key=k("repoA/objects/zz/m"), Body=b"x"),
            {"writer", "admin", "pipeline"},
        ),
        (
            "put object repoAB",
            lambda s3: s3.put_object(Bucket=b, Key=k("repoAB/objects/zz/m"), Body=b"x"),
            set(),
        ),
        (
            "move dev",
            lambda s3: s3.put_object(Bucket=b, Key=k("repoA/refs/branches/matrix"), Body=ref),
            {"writer", "admin", "pipeline"},
        ),
        (
            "move protected main",
            lambda s3: s3.put_object(Bucket=b, Key=k("repoA/refs/branches/main"), Body=ref),
            {"pipeline"},
        ),
        (
            "upload own prefix",
            lambda s3: s3.put_object(
                Bucket=b, Key=k("_uploads/repoA/incoming/uploader/x.jpg"), Body=b"x"
            ),
            {"uploader", "writer", "admin", "pipeline"},
        ),
        (
            "upload other prefix",
            lambda s3: s3.put_object(
                Bucket=b, Key=k("_uploads/repoA/incoming/else/x.jpg"), Body=b"x"
            ),
            {"writer", "admin", "pipeline"},
        ),
        (
            "upload look-alike repo",
            lambda s3: s3.put_object(
                Bucket=b, Key=k("_uploads/repoAB/incoming/uploader/x.jpg"), Body=b"x"
            ),
            set(),
        ),
        (
            "delete object",
            lambda s3: s3.delete_object(Bucket=b, Key=k("repoA/objects/zz/m")),
            {"admin"},
        ),
        (
            "delete audit record",
            lambda s3: s3.delete_object(Bucket=b, Key=k("_audit/log/000000000000")),
            set(),
        ),
        ("read audit", lambda s3: s3.get_object(Bucket=b, Key=k("_audit/log/000000000000")), set()),
        (
            "read grants",
            lambda s3: s3.get_object(Bucket=b, Key=k("_access/log/000000000000")),
            set(),
        ),
    ]


@pytest.mark.parametrize("principal", ALL)
def test_the_engine_enforces_each_principals_grants(world: World, principal: str) -> None:
    creds = GatewayClient(world.gateway_url, world.tokens[principal]).credentials()
    s3 = s3_with(world.server.endpoint_url, creds)
    seen = {what: engine(lambda call=call: call(s3)) for what, call, _ in _cases(world)}
    expected = {what: 200 if principal in who else 403 for what, _, who in _cases(world)}
    if principal == "admin":  # deleting a missing key is a success, whoever wrote it
        expected["delete object"] = seen["delete object"] if seen["delete object"] < 300 else 204
        seen["delete object"] = expected["delete object"]
    seen = {w: 200 if s < 300 else s for w, s in seen.items()}
    expected = {w: 200 if s < 300 else s for w, s in expected.items()}
    assert seen == expected


def test_session_names_and_policies_are_the_principals(world: World) -> None:
    """STS sessions are named after the principal, and each issue is in the audit trail with
    its scope and expiry."""
    creds = GatewayClient(world.gateway_url, world.tokens["reader"]).credentials()
    sts = world.server.control(
        "sts", (creds["access_key_id"], creds["secret_access_key"], creds["session_token"])
    )
    who = sts.get_caller_identity()
    assert who["Arn"].endswith("/reader")
    issued = world.trail.query(principal="reader", action="gateway.credentials")
    assert issued and issued[-1]["scope"] == ["reader read repoA"]
    assert issued[-1]["expires"] == creds["expiration"]
