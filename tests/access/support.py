"""Helpers for the access tests: a gateway served from a thread, plain boto3 clients with
issued credentials, and the engine's verdict on one request."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import boto3
import botocore.exceptions
from botocore.config import Config

from s3fsv.access.gateway import Gateway, build_app


class GatewayThread:
    """``s3fsv serve``'s app on 127.0.0.1 in a thread of this process; ``stop()`` ends it."""

    def __init__(self, gateway: Gateway) -> None:
        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        config = uvicorn.Config(
            build_app(gateway), host="127.0.0.1", port=self.port, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "the gateway did not start"
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


def s3_with(endpoint: str, creds: dict[str, str]) -> Any:
    """A plain boto3 S3 client signing with credentials the gateway issued."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=creds["access_key_id"],
        aws_secret_access_key=creds["secret_access_key"],
        aws_session_token=creds.get("session_token"),
        region_name="us-east-1",
        config=Config(
            s3={"addressing_style": "path"},
            signature_version="s3v4",
            retries={"max_attempts": 1},
        ),
    )


def engine(call: Callable[[], Any]) -> int:
    """The HTTP status the engine answered ``call`` with (200 when it succeeded)."""
    try:
        call()
    except botocore.exceptions.ClientError as err:
        return int(err.response["ResponseMetadata"]["HTTPStatusCode"])
    return 200
