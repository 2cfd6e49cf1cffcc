"""Grants, checks and policy compilation, on a local store (no server): the rules as s3fsv
states them. The engine's enforcement of the same rules is tested in test_engine_matrix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import s3fsv
from s3fsv.access.check import decide
from s3fsv.access.grants import AccessLog
from s3fsv.access.policy import MAX_SESSION_POLICY, Location, compact, session_policy
from s3fsv.errors import InvalidName, NotFound, UsageError
from tests.mounting import run_cli


@pytest.fixture
def store(tmp_path: Path) -> s3fsv.Store:
    from s3fsv.store.store import Store

    Store.init((tmp_path / "store").as_uri()).close()
    handle = s3fsv.open_store((tmp_path / "store").as_uri(), cache_dir=tmp_path / "cache")
    for repo in ("cams", "detections"):
        handle.create_repo(repo)
    return handle


def test_check_says_which_rule_decided(store: s3fsv.Store) -> None:
    log = AccessLog(store)
    log.grant("alice", "read", "cams")
    log.grant("cam-17", "upload", "cams", prefix="incoming/cam-17/", kind="device")
    log.grant("analysts", "write", "detections")
    log.group("analysts", ["bob"], [])
    log.grant("pipeline-detect", "write", "detections")
    log.protect("detections", "main", ["pipeline-detect"])
    state = log.state()

    yes = decide(state, "alice", "read", "cams")
    assert yes.allowed and yes.grant is not None and yes.grant.id == "g0"
    no = decide(state, "alice", "write", "cams", "main")
    assert not no.allowed and "has: alice read cams" in no.reason
    assert not decide(state, "alice", "read", "detections").allowed
    # Upload only below its own prefix, and nothing else.
    assert decide(state, "cam-17", "upload", "cams", path="incoming/cam-17/a.jpg").allowed
    assert not decide(state, "cam-17", "upload", "cams", path="incoming/cam-18/a.jpg").allowed
    assert not decide(state, "cam-17", "read", "cams").allowed
    # Through a group; and a protected branch beats the grant.
    dev = decide(state, "bob", "write", "detections", "dev")
    assert dev.allowed and "through group analysts" in dev.reason
    main = decide(state, "bob", "write", "detections", "main")
    assert not main.allowed and "protected" in main.reason and "pipeline-detect" in main.reason
    assert decide(state, "pipeline-detect", "write", "detections", "main").allowed


def test_revoke_and_every_change_kept_in_a_verifiable_chain(store: s3fsv.Store) -> None:
    log = AccessLog(store)
    g = log.grant("alice", "read", "cams")
    assert log.grant("alice", "read", "cams") == g  # the same grant again changes nothing
    log.revoke("alice", "read", "cams")
    assert not decide(log.state(), "alice", "read", "cams").allowed
    with pytest.raises(NotFound):
        log.revoke("alice", "read", "cams")
    assert [c["op"] for c in log.history()] == ["grant", "revoke"]
    assert log.chain.verify().ok
    # Another process folds the same history into the same state.
    assert AccessLog(store).state().grants == log.state().grants == {}


@pytest.mark.parametrize("name", ["a", "../x", "a/b", "x" * 51, "-lead", "sp ace"])
def test_bad_principal_names_are_refused(store: s3fsv.Store, name: str) -> None:
    with pytest.raises(InvalidName):
        AccessLog(store).grant(name, "read", "cams")


def test_reserved_namespaces_cannot_be_granted(store: s3fsv.Store) -> None:
    for target in ("_access", "_audit"):
        with pytest.raises(UsageError):
            AccessLog(store).grant("alice", "admin", target)


def test_compiled_policies_mind_the_trailing_slash_and_deny_audit_deletes(
    store: s3fsv.Store,
) -> None:
    log = AccessLog(store)
    log.grant("alice", "read", "repoA")
    log.grant("cam", "upload", "repoA", prefix="in/cam/")
    log.grant("wr", "write", "repoA", branches=("dev",))
    log.grant("root", "admin", "repoA")
    log.protect("repoA", "main", ["wr"])
    where = Location.of("s3://bkt/st")
    state = log.state()
    read = session_policy(state, where, "alice")
    text = json.dumps(read)
    assert "arn:aws:s3:::bkt/st/repoA/*" in text and "repoAB" not in text
    listing = [s for s in read["Statement"] if s["Action"] == ["s3:ListBucket"]]
    assert listing[0]["Condition"] == {
        "StringLike": {"s3:prefix": ["st/_lineage/repoA/*", "st/repoA/*"]}
    }
    upload = session_policy(state, where, "cam")
    allows = [s for s in upload["Statement"] if s["Effect"] == "Allow"]
    assert allows == [
        {
            "Effect": "Allow",
            "Action": ["s3:AbortMultipartUpload", "s3:PutObject"],
            "Resource": ["arn:aws:s3:::bkt/st/_uploads/repoA/in/cam/*"],
        }
    ]
    write = json.dumps(session_policy(state, where, "wr"))
    assert "refs/branches/dev" in write and "refs/branches/*" not in write
    assert 'DeleteObject"], "Resource": ["arn:aws:s3:::bkt/st/repoA' not in write
    admin = session_policy(state, where, "root")
    denied = [s for s in admin["Statement"] if s["Effect"] == "Deny"]
    resources = {r for s in denied for r in s["Resource"]}
    assert resources == {
        "arn:aws:s3:::bkt/st/_audit/*",
        "arn:aws:s3:::bkt/st/repoA/refs/branches/main",  # protected; root is not allowed
    }
    for principal in ("alice", "cam", "wr", "root"):
        assert "arn:aws:s3:::bkt/st/_audit/*" in json.dumps(session_policy(state, where, principal))
    only_admin_deletes = [
        p
        for p in ("alice", "cam", "wr", "root")
        if any(
            s["Effect"] == "Allow" and "s3:DeleteObject" in s["Action"]
            for s in session_policy(state, where, p)["Statement"]
        )
    ]
    assert only_admin_deletes == ["root"]


def test_a_session_policy_over_2048_characters_is_refused(store: s3fsv.Store) -> None:
    log = AccessLog(store)
    for i in range(40):
        log.grant("greedy", "write", f"repo-with-a-long-name-{i:03d}")
    with pytest.raises(UsageError, match="2048"):
        session_policy(log.state(), Location.of("s3://bkt/st"), "greedy")
    log.grant("modest", "read", "cams")
    assert len(compact(session_policy(log.state(), Location.of("s3://b"), "modest"))) < (
        MAX_SESSION_POLICY
    )


def test_cli_spellings_and_exit_codes(tmp_path: Path, store: s3fsv.Store) -> None:
    env = {
        "S3FSV_STORE": store.url,
        "XDG_CACHE_HOME": str(tmp_path / "c"),
        "XDG_STATE_HOME": str(tmp_path / "s"),
        "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
        "PATH": "/usr/bin:/bin",
    }
    run_cli("access", "grant", "alice", "read", "cams", env=env)
    run_cli("access", "grant", "cam-17", "upload", "cams", "--prefix", "incoming/cam-17/", env=env)
    run_cli("access", "grant", "pipeline-detect", "write", "detections", env=env)
    run_cli("access", "protect", "detections@main", "--allow", "pipeline-detect", env=env)
    no = run_cli("access", "check", "alice", "write", "cams@main", env=env, check=False)
    assert no.returncode == 1 and no.stdout.startswith("no: ")
    yes = run_cli("access", "check", "alice", "read", "cams:images/a.jpg", env=env)
    assert yes.stdout.startswith("yes: grant g0")
    pipe = run_cli("access", "check", "pipeline-detect", "write", "detections@main", env=env)
    assert pipe.returncode == 0
    listed = json.loads(run_cli("access", "list", "--json", env=env).stdout)
    assert [g["principal"] for g in listed["grants"]] == ["alice", "cam-17", "pipeline-detect"]
    history = run_cli("access", "history", env=env).stdout.splitlines()
    assert len(history) == 4 and "protect" in history[3]
    bad = run_cli("access", "grant", "alice", "read", "../etc", env=env, check=False)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    out = run_cli("access", "token", "create", "cam-17", "--out", str(tmp_path / "t"), env=env)
    assert (tmp_path / "t").stat().st_mode & 0o777 == 0o600 and "cam-17" in out.stdout
    assert (tmp_path / "t").read_text().strip() not in json.dumps(
        AccessLog(store).history()
    )  # only its hash is kept
