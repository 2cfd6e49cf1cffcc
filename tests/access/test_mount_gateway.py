"""A mount and a Python store, both through the gateway with no cloud credentials, keep
working across several credential lifetimes (sessions last 15 s on the test server)."""

from __future__ import annotations

import time
from pathlib import Path

import s3fsv
from tests.access.conftest import World, gateway_env
from tests.mounting import mounted, run_cli

LIFETIMES = 3


def test_clients_outlive_several_credential_lifetimes(world: World, tmp_path: Path) -> None:
    world.store.repo("repoA").create_branch("mount-dev", "main")
    token = tmp_path / "writer.token"
    token.write_text(world.tokens["writer"])
    token.chmod(0o600)
    env = gateway_env(world, tmp_path)
    started = time.time()
    expected = b"pixels of a" * 100
    with (
        mounted(
            "repoA",
            tmp_path / "mnt",
            env,
            "--gateway",
            world.gateway_url,
            "--token-file",
            str(token),
        ) as mp,
        s3fsv.open_store(
            gateway=world.gateway_url, token=world.tokens["reader"], cache_dir=tmp_path / "c"
        ) as api,
    ):
        branch = mp / "branch" / "mount-dev"
        deadline = time.monotonic() + LIFETIMES * world.server.session_seconds + 3
        rounds = 0
        while time.monotonic() < deadline:
            assert (mp / "branch" / "main" / "images" / "a.jpg").read_bytes() == expected
            (branch / f"note-{rounds}.txt").write_text(f"round {rounds}\n")
            if rounds % 3 == 0:
                run_cli("commit", str(branch), "-m", f"round {rounds}", env=env)
            assert api.repo("repoA").read_bytes("main", "images/a.jpg") == expected
            assert api.repo("repoA").resolve("mount-dev")  # a fresh ref read each round
            rounds += 1
            time.sleep(2)
        run_cli("commit", str(branch), "-m", "last round", env=env)
    head = world.store.repo("repoA").resolve("mount-dev")
    files = {e.name for e in world.store.repo("repoA").ls(head)}
    assert {f"note-{i}.txt" for i in range(rounds)} <= files
    recent = [r for r in world.trail.query(repo="repoA") if r["time"] >= _iso(started)]
    commits = [r for r in recent if r["action"] == "commit" and r["ref"] == "mount-dev"]
    assert commits and all(r["principal"] == "writer" for r in commits)
    assert commits[-1]["new"] == head
    issued = [
        r
        for r in world.trail.query(action="gateway.credentials")
        if r["time"] >= _iso(started) and r["principal"] in ("writer", "reader")
    ]
    # Each client asked again before its credentials ran out, several times over.
    assert sum(r["principal"] == "writer" for r in issued) >= LIFETIMES
    assert sum(r["principal"] == "reader" for r in issued) >= LIFETIMES


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
