"""The audit trail: what is recorded, and that editing, deleting, reordering or overwriting a
record is refused by the engine or found by ``audit verify``."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

import s3fsv
from s3fsv.access.audit import NAMESPACE, AuditTrail
from s3fsv.access.chain import Chain
from s3fsv.store.backend.memory import MemoryBackend
from s3fsv.store.records import Records
from tests.access.conftest import World, make_store
from tests.access.support import engine
from tests.conftest import isolate_aws_env
from tests.mounting import run_cli


def _chain(n: int) -> tuple[Chain, MemoryBackend]:
    backend = MemoryBackend("")
    chain = Chain(Records(backend, "audit"), "log")
    for i in range(n):
        chain.append({"action": "test", "i": i})
    return chain, backend


def test_concurrent_writers_make_one_unbroken_chain() -> None:
    chain, backend = _chain(1)
    writers = [Chain(Records(backend, "audit"), "log") for _ in range(8)]  # own tails each

    def write(c: Chain) -> None:
        for i in range(10):
            c.append({"action": "test", "i": i})

    threads = [threading.Thread(target=write, args=(c,)) for c in writers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    verdict = chain.verify()
    assert verdict.ok and verdict.count == 81


@pytest.mark.parametrize(
    ("tamper", "broken_at", "why"),
    [
        ("edit", 3, "does not chain onto record 2"),
        ("delete", 2, "record 2 is missing"),
        ("reorder", 2, "says it is record 3"),
        ("reformat", 2, "not in canonical form"),
    ],
)
def test_verify_names_the_first_broken_link(tamper: str, broken_at: int, why: str) -> None:
    chain, backend = _chain(5)
    key = chain.records.key(chain.slot(2))
    raw = backend.get(key)
    if tamper == "edit":
        backend.put(key, raw.replace(b'"i":2', b'"i":7'))
    elif tamper == "delete":
        backend.delete(key)
    elif tamper == "reorder":
        other = chain.records.key(chain.slot(3))
        third = backend.get(other)
        backend.put(key, third)
        backend.put(other, raw)
    else:
        backend.put(key, raw.replace(b",", b", "))
    verdict = chain.verify()
    assert not verdict.ok and verdict.broken_at == broken_at and why in verdict.reason
    assert verdict.count == min(broken_at, 5)


def test_a_replaced_last_record_is_caught_by_a_hash_noted_earlier() -> None:
    chain, backend = _chain(3)
    noted = (2, chain.verify().head)
    key = chain.records.key(chain.slot(2))
    backend.put(key, backend.get(key).replace(b'"i":2', b'"i":9'))
    assert chain.verify().ok  # the end of a chain has nothing after it to disagree
    verdict = chain.verify(expect=noted)
    assert not verdict.ok and verdict.broken_at == 2
    backend.delete(key)
    assert "ends before record 2" in chain.verify(expect=noted).reason


def test_the_engine_refuses_rewrites_and_keeps_locked_originals(
    iam_seaweed: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = iam_seaweed
    isolate_aws_env(monkeypatch, tmp_path, server.env())  # type: ignore[attr-defined]
    bucket, url = make_store(server, tmp_path)  # type: ignore[arg-type]
    with s3fsv.open_store(
        url,
        endpoint_url=server.endpoint_url,
        cache_dir=tmp_path / "c",  # type: ignore[attr-defined]
    ) as store:
        trail = AuditTrail(store.records(NAMESPACE))
        assert trail.init(retain_days=1)["detail"]["locked"] is True
        repo = store.create_repo("cams")
        with repo.transaction("main", message="one") as tx:
            tx.write("a.txt", b"a")
        s3 = server.client()  # type: ignore[attr-defined]
        # Even a byte-identical rewrite of the last record (which no later record vouches
        # for) is seen: in a locked bucket a write-once slot has exactly one version.
        last = trail.verify()
        assert last.ok
        tail = f"st/_audit/log/{last.count - 1:012d}"
        same = s3.get_object(Bucket=bucket, Key=tail)["Body"].read()
        s3.put_object(Bucket=bucket, Key=tail, Body=same)
        verdict = trail.verify()
        assert verdict.broken_at == last.count - 1 and "overwritten" in verdict.reason
        key = f"st/_audit/log/{1:012d}"
        original = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        # A write-once slot cannot be written again by anyone who asks for write-once...
        assert (
            engine(lambda: s3.put_object(Bucket=bucket, Key=key, Body=b"{}", IfNoneMatch="*"))
            == 412
        )
        # ...and an unconditional overwrite (by the store's admin) is found by verify, while
        # the locked original stays in the bucket, undeletable.
        s3.put_object(Bucket=bucket, Key=key, Body=original.replace(b"repo.create", b"repo.delete"))
        verdict = trail.verify()
        assert verdict.broken_at == 2 and "does not chain onto record 1" in verdict.reason
        versions = s3.list_object_versions(Bucket=bucket, Prefix=key)["Versions"]
        locked = [v for v in versions if not v["IsLatest"]]
        assert len(locked) == 1
        gone = lambda: s3.delete_object(Bucket=bucket, Key=key, VersionId=locked[0]["VersionId"])  # noqa: E731
        assert engine(gone) == 403
        kept = s3.get_object(Bucket=bucket, Key=key, VersionId=locked[0]["VersionId"])
        assert kept["Body"].read() == original
        # Deleting a record (a delete marker, in a locked bucket) leaves a gap verify names.
        s3.delete_object(Bucket=bucket, Key=f"st/_audit/log/{3:012d}")
        assert trail.verify().broken_at == 2  # still the first broken link


def test_mutations_are_recorded_and_the_log_answers_who_did_what(world: World) -> None:
    repo = world.store.repo("detections")
    with repo.transaction("main", message="labels") as tx:
        tx.write("labels/a.json", b"{}")
    head = repo.resolve("main")
    repo.create_branch("review", "main")
    repo.create_tag("v1", "main")
    records = world.trail.query(repo="detections", principal="root-admin")
    actions = [(r["action"], r.get("ref"), r.get("new")) for r in records]
    assert ("commit", "main", head) in actions
    assert ("branch.create", "review", head) in actions and ("tag.create", "v1", head) in actions
    commit = next(r for r in records if r["action"] == "commit" and r["new"] == head)
    assert commit["objects"][0] == head and len(commit["objects"]) == 2
    assert commit["tool"] == "s3fsv" and commit["version"] == s3fsv.__version__
    shown = run_cli("audit", "log", "--repo", "detections", "--since", "1h", env=world.env).stdout
    assert "commit" in shown and head[:12] in shown and "root-admin" in shown
    assert run_cli("audit", "verify", env=world.env).stdout.startswith("ok: ")


def test_pipeline_jobs_and_their_commits_are_recorded(tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "S3FSV_STORE": (tmp_path / "store").as_uri(),
        "S3FSV_PRINCIPAL": "pipeline-detect",
        "XDG_CACHE_HOME": str(tmp_path / "c"),
        "XDG_STATE_HOME": str(tmp_path / "s"),
        "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
    }
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("a\n")
    for args in (["init"], ["repo", "create", "cams"], ["repo", "create", "out"]):
        run_cli(*args, env=env)
    run_cli("audit", "init", "--retain-days", "1", env=env)
    run_cli("put", str(tmp_path / "in"), "cams@main:images", "-m", "in", "-q", env=env)
    copy = "import shutil,sys; shutil.copytree(sys.argv[1], sys.argv[2], dirs_exist_ok=True)"
    run_cli(
        "pipeline", "create", "--name", "copy", "--input", "cams@main:/", "--output",
        "out@main", "--", sys.executable, "-c", copy, "{in}", "{out}", env=env,
    )  # fmt: skip
    run_cli("pipeline", "run", "copy", "--quiet", env=env)
    with s3fsv.open_store(env["S3FSV_STORE"], cache_dir=tmp_path / "c") as store:
        records = AuditTrail(store.records(NAMESPACE)).query(repo="out")
        out_head = store.repo("out").resolve("main")
    job = [r for r in records if r["action"] == "pipeline.job"]
    assert len(job) == 1 and job[0]["new"] == out_head and job[0]["detail"]["state"] == "succeeded"
    assert job[0]["principal"] == "pipeline-detect"
    assert any(r["action"] == "commit" and r["new"] == out_head for r in records)


def test_engine_request_logs_are_folded_in(world: World, engine_log: tuple[int, Path]) -> None:
    from s3fsv.access.client import GatewayClient
    from s3fsv.access.ingest import ingest_files
    from tests.access.support import s3_with

    creds = GatewayClient(world.gateway_url, world.tokens["reader"]).credentials()
    s3 = s3_with(world.server.endpoint_url, creds)
    s3.get_object(Bucket=world.bucket, Key=world.key("repoA/repo.json"))
    assert engine(lambda: s3.get_object(Bucket=world.bucket, Key=world.key("repoAB/repo.json")))
    log = engine_log[1]
    deadline = time.monotonic() + 20
    wanted = ("s3fsv-ceiling/reader", "repoAB/repo.json")
    while not any(
        all(w in line for w in wanted)
        for line in (log.read_text() if log.exists() else "").splitlines()
    ):
        assert time.monotonic() < deadline, "the engine's request log did not arrive"
        time.sleep(0.2)
    assert ingest_files(world.store, [log]) > 0
    read = world.trail.query(principal="reader", action="engine.read")
    assert any("repoA/repo.json" in r["detail"]["keys"] for r in read)
    refused = world.trail.query(principal="reader", action="engine.read.refused")
    assert any(r["repo"] == "repoAB" and r["detail"]["statuses"] == [403] for r in refused)
    # A second ingest reads only what arrived since: the refused request is not counted again.
    refused_before = len(refused)
    ingest_files(world.store, [log])
    again = world.trail.query(principal="reader", action="engine.read.refused")
    assert len([r for r in again if r["repo"] == "repoAB"]) == len(
        [r for r in refused[:refused_before] if r["repo"] == "repoAB"]
    )
    assert world.trail.verify().ok
