"""A SeaweedFS server with its embedded IAM and STS switched on, for the access tests.

``IamSeaweedServer`` is a :class:`~s3server.SeaweedServer` started with
``-s3.iam.config=iam.json -s3.iam.readOnly=false``. ``iam.json`` holds the static admin
identity, an STS section whose sessions last at most ``session_seconds`` (short, so that tests
see credentials expire and renew), and one role, the gateway's ceiling role
(:data:`CEILING_ROLE_ARN`): everything on every bucket but deleting audit records, assumable
only by the IAM user ``s3fsv-gateway``. ``start()`` also creates that user and an access key
for it through the IAM API (``gateway_keys``), as an operator would. With ``audit_port``, the
server sends a log record of every request there (``-s3.auditLogConfig``, fluent forward).
"""

from __future__ import annotations

import base64
import json
import os
import time
from typing import Any

from s3server import SeaweedServer

CEILING_ROLE_ARN = "arn:aws:iam::000000000000:role/s3fsv-ceiling"
GATEWAY_USER = "s3fsv-gateway"


class IamSeaweedServer(SeaweedServer):
    def __init__(
        self,
        workdir: Any,
        *,
        session_seconds: int = 15,
        audit_port: int | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(workdir, **kw)
        self.session_seconds = session_seconds
        self.audit_port = audit_port  # send every request's log record there (fluent forward)
        self.role_arn = CEILING_ROLE_ARN
        self.gateway_keys: tuple[str, str] | None = None

    def _write_config(self) -> None:
        super()._write_config()
        ceiling = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
                {
                    "Effect": "Deny",
                    "Action": ["s3:DeleteObject", "s3:DeleteObjectVersion"],
                    "Resource": ["arn:aws:s3:::*/_audit/*"],
                },
            ],
        }
        config = {
            "identities": [
                {
                    "name": "s3fsv-test",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                }
            ],
            "sts": {
                "tokenDuration": f"{self.session_seconds}s",
                "maxSessionLength": f"{self.session_seconds}s",
                "issuer": "s3fsv-test-sts",
                "signingKey": base64.b64encode(os.urandom(32)).decode(),
            },
            "roles": [
                {
                    "roleName": "s3fsv-ceiling",
                    "roleArn": CEILING_ROLE_ARN,
                    "trustPolicy": {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Principal": {
                                    "AWS": f"arn:aws:iam::000000000000:user/{GATEWAY_USER}"
                                },
                                "Action": "sts:AssumeRole",
                            }
                        ],
                    },
                    "attachedPolicies": ["s3fsv-ceiling"],
                }
            ],
            "policies": [{"name": "s3fsv-ceiling", "document": ceiling}],
        }
        path = self.workdir / "iam.json"
        if not path.exists():  # a restart keeps the signing key: issued sessions stay valid
            path.write_text(json.dumps(config, indent=2))
            path.chmod(0o600)

    def _command(self) -> list[str]:
        cmd = [
            *super()._command(),
            f"-s3.iam.config={self.workdir / 'iam.json'}",
            "-s3.iam.readOnly=false",
        ]
        if self.audit_port is not None:
            fluent = {"fluent_host": "127.0.0.1", "fluent_port": self.audit_port}
            (self.workdir / "fluent.json").write_text(json.dumps(fluent))
            cmd.append(f"-s3.auditLogConfig={self.workdir / 'fluent.json'}")
        return cmd

    def start(self) -> IamSeaweedServer:
        super().start()
        if self.gateway_keys is None:
            self.gateway_keys = self._gateway_user()
        return self

    def iam(self) -> Any:
        return self.control("iam")

    def control(self, service: str, keys: tuple[str, ...] | None = None) -> Any:
        """A boto3 client for ``service`` at this server, as the admin (or ``keys``)."""
        import boto3

        ak, sk, *token = keys or (self.access_key, self.secret_key)
        return boto3.client(
            service,
            endpoint_url=self.endpoint_url,
            aws_access_key_id=ak,
            aws_secret_access_key=sk,
            aws_session_token=token[0] if token else None,
            region_name=self.region,
        )

    def _gateway_user(self) -> tuple[str, str]:
        iam = self.iam()
        names = {u["UserName"] for u in iam.list_users()["Users"]}
        if GATEWAY_USER not in names:
            iam.create_user(UserName=GATEWAY_USER)
        key = iam.create_access_key(UserName=GATEWAY_USER)["AccessKey"]
        keys = (key["AccessKeyId"], key["SecretAccessKey"])
        sts = self.control("sts", keys)
        deadline = time.monotonic() + 10
        while True:  # the new key takes a moment to reach the S3 server's identity cache
            try:
                sts.assume_role(RoleArn=self.role_arn, RoleSessionName="s3fsv-probe")
                return keys
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


if __name__ == "__main__":
    import contextlib
    import signal
    import sys

    if len(sys.argv) not in (3, 4):
        sys.exit("usage: python tests/iamserver.py WORKDIR ENVFILE [REQUEST_LOG_PORT]")
    for _sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(_sig, signal.default_int_handler)
    port = int(sys.argv[3]) if len(sys.argv) == 4 else None
    with IamSeaweedServer(sys.argv[1], session_seconds=900, audit_port=port) as server:
        assert server.gateway_keys is not None
        lines = [f"export {k}={v}" for k, v in server.env().items()]
        lines += [
            f"export GATEWAY_ACCESS_KEY_ID={server.gateway_keys[0]}",
            f"export GATEWAY_SECRET_ACCESS_KEY={server.gateway_keys[1]}",
            f"export CEILING_ROLE_ARN={server.role_arn}",
        ]
        tmp = sys.argv[2] + ".tmp"
        with open(tmp, "w") as out:
            out.write("\n".join(lines) + "\n")
        os.replace(tmp, sys.argv[2])  # appears whole: the reader waits for it
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
