"""The gateway: an upload-only device through it, revocation, presigned reads, OIDC, and the
Python API with no cloud credentials at all."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

import s3fsv
from s3fsv.access.client import GatewayClient
from s3fsv.access.gateway import Gateway
from s3fsv.access.oidc import OidcConfig
from s3fsv.errors import AccessDenied
from tests.access.conftest import World, gateway_env
from tests.access.support import GatewayThread, engine, s3_with

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "device_upload.py"


def test_an_upload_only_device_puts_below_its_prefix_and_nothing_else(
    world: World, tmp_path: Path
) -> None:
    token = tmp_path / "uploader.token"
    token.write_text(world.tokens["uploader"])
    run = subprocess.run(
        [sys.executable, str(EXAMPLE), "--gateway", world.gateway_url, "--token-file",
         str(token), "--repo", "repoA", "--prefix", "incoming/uploader/", "--frames", "2"],
        env=gateway_env(world, tmp_path), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    stored = [line.split()[1] for line in run.stdout.splitlines()]
    assert len(stored) == 2 and all(p.startswith("incoming/uploader/frame-") for p in stored)
    admin = world.server.client()
    for path in stored:
        assert admin.head_object(Bucket=world.bucket, Key=world.key(f"_uploads/repoA/{path}"))
    # The gateway refuses other prefixes, reads and credentials beyond the grant...
    client = GatewayClient(world.gateway_url, world.tokens["uploader"])
    with pytest.raises(AccessDenied, match="no grant gives uploader upload"):
        client.presign("PUT", "repoA", ["incoming/someone-else/x.jpg"])
    with pytest.raises(AccessDenied, match="no grant gives uploader read"):
        client.presign("GET", "repoA", ["images/a.jpg"])
    # ...and so does the engine, when the device signs a URL itself with issued credentials.
    s3 = s3_with(world.server.endpoint_url, client.credentials())
    outside = s3.generate_presigned_url(
        "put_object",
        Params={"Bucket": world.bucket, "Key": world.key("_uploads/repoA/incoming/x/y.jpg")},
    )
    assert requests.put(outside, data=b"x", timeout=10).status_code == 403
    assert engine(lambda: s3.get_object(Bucket=world.bucket, Key=world.key(stored[0]))) == 403
    issued = world.trail.query(principal="uploader", action="gateway.presign.put")
    assert issued and issued[-1]["scope"] == [f"PUT repoA:{p}" for p in stored]
    refused = world.trail.query(principal="uploader", action="gateway.refused")
    assert [r["detail"]["asked"] for r in refused[-2:]] == [
        "PUT repoA:incoming/someone-else/x.jpg",
        "GET repoA:images/a.jpg",
    ]


def test_a_revoked_token_is_refused_at_once(world: World) -> None:
    tok, text = world.access.create_token("reader", None)
    client = GatewayClient(world.gateway_url, text)
    assert client.info()["principal"] == "reader"
    world.access.revoke_token(tok.id)
    with pytest.raises(AccessDenied, match="token revoked"):
        client.credentials()
    refused = world.trail.query(principal="reader", action="gateway.refused")
    assert refused[-1]["detail"]["why"] == "token revoked"
    with pytest.raises(AccessDenied, match="unknown token"):
        GatewayClient(world.gateway_url, text[:-4] + "AAAA").info()


def test_presigned_reads_of_committed_files_verify(world: World) -> None:
    client = GatewayClient(world.gateway_url, world.tokens["reader"])
    files = client.presign("GET", "repoA", ["images/a.jpg", "big.bin"], ref="main")
    with world.store.repo("repoA").open("main", "big.bin") as fh:
        expected_big = fh.read()
    for f in files:
        data = b"".join(
            requests.get(
                p["url"], headers={"Range": p["range"]} if p["range"] else {}, timeout=30
            ).content
            for p in f["parts"]
        )
        assert hashlib.sha256(data).hexdigest() == f["sha256"] and len(data) == f["size"]
    assert files[1]["size"] == len(expected_big)


def test_the_python_api_needs_no_cloud_credentials(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(world.server.env()) + ["S3FSV_STORE"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    with s3fsv.open_store(
        gateway=world.gateway_url, token=world.tokens["writer"], cache_dir=tmp_path / "c"
    ) as store:
        repo = store.repo("repoA")
        assert repo.read_bytes("main", "images/a.jpg") == b"pixels of a" * 100
        repo.create_branch("api-dev", "main")
        with repo.transaction("api-dev", message="from the API") as tx:
            tx.write("notes.txt", b"hello")
        head = repo.resolve("api-dev")
        with pytest.raises(AccessDenied), repo.transaction("main", message="nope") as tx:
            tx.write("notes.txt", b"not allowed on protected main")
    commits = world.trail.query(principal="writer", action="commit")
    assert any(r["new"] == head and r["session"] == "writer" for r in commits)


def test_oidc_tokens_from_the_configured_issuer(world: World, tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [{**jwk, "kid": "k1"}]}))
    config = OidcConfig("https://idp.example", "s3fsv", str(tmp_path / "jwks.json"))
    gateway = Gateway(world.gateway.config, config)
    served = GatewayThread(gateway)
    try:

        def token(**claims: object) -> str:
            now = int(time.time())
            body = {"iss": "https://idp.example", "aud": "s3fsv", "sub": "reader"}
            body.update(iat=now, exp=now + 300)
            body.update(claims)
            return jwt.encode(body, key, algorithm="RS256", headers={"kid": "k1"})

        creds = GatewayClient(served.url, token()).credentials()
        assert creds["principal"] == "reader"
        for bad in (token(aud="other"), token(exp=int(time.time()) - 600), token(iss="x")):
            with pytest.raises(AccessDenied, match="OIDC token refused"):
                GatewayClient(served.url, bad).credentials()
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        forged = jwt.encode(
            {"iss": "https://idp.example", "aud": "s3fsv", "sub": "admin",
             "iat": int(time.time()), "exp": int(time.time()) + 300},
            other, algorithm="RS256", headers={"kid": "k1"},
        )  # fmt: skip
        with pytest.raises(AccessDenied):
            GatewayClient(served.url, forged).credentials()
    finally:
        served.stop()
        gateway.store.close()


@pytest.mark.parametrize("fuse", [False, True], ids=["download", "fuse"])
def test_s3fsv_run_through_the_gateway(world: World, tmp_path: Path, fuse: bool) -> None:
    """``s3fsv run --gateway``: pinned inputs read and outputs committed with the writer's
    short-lived credentials only; the commit is audited in its name."""
    from tests.mounting import run_cli

    token = tmp_path / "writer.token"
    token.write_text(world.tokens["writer"])
    token.chmod(0o600)
    env = gateway_env(world, tmp_path)
    branch = f"run-{'fuse' if fuse else 'dl'}"
    world.store.repo("repoA").create_branch(branch, "main")
    copy = "import shutil,sys; shutil.copy(sys.argv[1]+'/images/a.jpg', sys.argv[2]+'/copy.jpg')"
    ran = run_cli(
        "run", "--gateway", world.gateway_url, "--token-file", str(token),
        *([] if fuse else ["--no-fuse"]),
        "--in", "repoA@main:images", "--out", f"repoA@{branch}", "-m", "copy through gateway",
        "--", sys.executable, "-c", copy, "{in}", "{out}", env=env,
    )  # fmt: skip
    commit = ran.stdout.split()[-1]
    repo = world.store.repo("repoA")
    assert repo.resolve(branch) == commit
    assert repo.read_bytes(commit, "copy.jpg") == b"pixels of a" * 100
    mine = world.trail.query(principal="writer", action="commit")
    assert any(r["new"] == commit and r["ref"] == branch for r in mine)
