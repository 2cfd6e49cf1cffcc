"""What the storage engine itself says to a principal: fetch credentials from the gateway with
a token, then try S3 requests with plain boto3 (no s3fsv check in the way). Used by
examples/access_demo.sh.

    python examples/access_probe.py GATEWAY TOKEN_FILE get|put|list|delete KEY ...

Prints one line per key: ``allowed`` or ``DENIED (HTTP 403)`` (as the engine answered).
"""

from __future__ import annotations

import sys
from pathlib import Path

import boto3
import botocore.exceptions
import requests
from botocore.config import Config


def main() -> int:
    gateway, token_file, op, *keys = sys.argv[1:]
    token = Path(token_file).read_text().strip()
    auth = {"Authorization": f"Bearer {token}"}
    info = requests.get(f"{gateway}/v1/info", headers=auth, timeout=15).json()
    creds = requests.post(f"{gateway}/v1/credentials", headers=auth, json={}, timeout=15).json()
    bucket, _, prefix = info["store"][len("s3://") :].partition("/")
    s3 = boto3.client(
        "s3",
        endpoint_url=info["endpoint_url"],
        region_name=info["region"] or "us-east-1",
        aws_access_key_id=creds["access_key_id"],
        aws_secret_access_key=creds["secret_access_key"],
        aws_session_token=creds["session_token"],
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )
    for key in keys:
        full = f"{prefix}/{key}" if prefix else key
        try:
            if op == "get":
                s3.get_object(Bucket=bucket, Key=full)
            elif op == "put":
                s3.put_object(Bucket=bucket, Key=full, Body=b"probe")
            elif op == "list":
                s3.list_objects_v2(Bucket=bucket, Prefix=full)
            else:
                s3.delete_object(Bucket=bucket, Key=full)
            verdict = "allowed"
        except botocore.exceptions.ClientError as err:
            status = err.response["ResponseMetadata"]["HTTPStatusCode"]
            verdict = f"DENIED (HTTP {status})"
        print(f"   boto3 as {info['principal']}: {op} {full}: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
