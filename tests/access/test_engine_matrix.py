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


def test_apply_pushes_iam_policies_the_engine_enforces(world: World) -> None:
    """``access apply`` through the IAM API; long-lived keys of the users it made see the same
    allow/deny answers, and a revoke plus apply takes access away."""
    import time

    from tests.mounting import run_cli

    world.access.grant("iam-reader", "read", "repoA")
    world.access.grant("iam-writer", "write", "repoA")
    world.access.group("iam-team", ["iam-reader"], [])
    world.access.grant("iam-team", "read", "detections")
    out = run_cli("access", "apply", env=world.env).stdout
    assert "create user s3fsv-iam-reader" in out
    assert "attach s3fsv-group-iam-team to group s3fsv-iam-team" in out
    assert "add s3fsv-iam-reader to s3fsv-iam-team" in out
    again = run_cli("access", "apply", env=world.env)
    assert again.stdout == "" and "already matches" in again.stderr
    iam = world.server.iam()
    b, k = world.bucket, world.key

    def client(user: str) -> Any:
        key = iam.create_access_key(UserName=user)["AccessKey"]
        creds = {"access_key_id": key["AccessKeyId"], "secret_access_key": key["SecretAccessKey"]}
        return s3_with(world.server.endpoint_url, creds)

    def eventually(call: Any, status: int) -> int:
        deadline = time.monotonic() + 15  # IAM changes reach the S3 server within seconds
        while (seen := engine(call)) != status and time.monotonic() < deadline:
            time.sleep(0.3)
        return seen

    reader, writer = client("s3fsv-iam-reader"), client("s3fsv-iam-writer")
    assert eventually(lambda: reader.get_object(Bucket=b, Key=k("repoA/repo.json")), 200) == 200
    assert engine(lambda: reader.get_object(Bucket=b, Key=k("repoAB/repo.json"))) == 403
    assert engine(lambda: reader.list_objects_v2(Bucket=b, Prefix=k("repoA"))) == 403
    assert engine(lambda: reader.get_object(Bucket=b, Key=k("detections/repo.json"))) == 200
    ref = _ref(world, "repoA")
    main = lambda: writer.put_object(Bucket=b, Key=k("repoA/refs/branches/main"), Body=ref)  # noqa: E731
    dev = lambda: writer.put_object(Bucket=b, Key=k("repoA/refs/branches/iam-dev"), Body=ref)  # noqa: E731
    assert eventually(dev, 200) == 200
    assert engine(main) == 403  # protected: only "pipeline" may move it
    world.access.revoke("iam-reader", "read", "repoA")
    assert "update policy s3fsv-user-iam-reader" in run_cli("access", "apply", env=world.env).stdout
    gone = eventually(lambda: reader.get_object(Bucket=b, Key=k("repoA/repo.json")), 403)
    assert gone == 403
