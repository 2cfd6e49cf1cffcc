"""The AWS control APIs s3fsv uses besides S3 (IAM, STS), and credentials that refresh
themselves: the boto3 side of access control, kept next to the S3 backend so that boto3 is
imported only under ``s3fsv.store.backend``.

- :func:`control_client` is an ``iam`` or ``sts`` client for the same endpoint the store uses
  (SeaweedFS serves both on its S3 port; AWS has its own endpoints, used when none is set).
- :func:`translate` maps their errors to project errors, as ``S3Backend._translate`` does for
  S3 (what is not an error answer, such as missing credentials, the same way:
  ``s3_errors.client_failure``); messages never contain credentials.
- :func:`refreshing_credentials` wraps a fetch function (an access gateway's answer) in
  botocore's ``RefreshableCredentials``, which every client signing with it consults before
  each request: a refresh starts when a third of the lifetime is left, and blocks requests
  only in the last sixth.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from datetime import datetime, timezone
from typing import Any

import botocore.credentials
import botocore.exceptions as bexc
import botocore.session
from botocore.config import Config

from s3fsv.errors import (
    AccessDenied,
    AlreadyExists,
    NotFound,
    S3fsvError,
    StoreUnavailable,
    UsageError,
)
from s3fsv.store.backend.s3 import DEFAULT_REGION
from s3fsv.store.backend.s3_credentials import given_credentials
from s3fsv.store.backend.s3_errors import (
    client_failure,
    error_code,
    error_message,
    http_status,
    translating,
)

_DENIED = {
    "AccessDenied",
    "AccessDeniedException",
    "InvalidClientTokenId",
    "ExpiredToken",
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
    "UnauthorizedOperation",
}
_USAGE = {
    "MalformedPolicyDocument",
    "InvalidParameterValue",
    "InvalidInput",
    "ValidationError",
    "LimitExceeded",
    "PackedPolicyTooLarge",
    "NotImplemented",
}


def control_client(
    service: str,
    endpoint_url: str | None = None,
    *,
    region: str | None = None,
    credentials: Any = None,
    access_key: str | None = None,
    secret_key: str | None = None,
    session_token: str | None = None,
) -> Any:
    """A boto3 client for ``service`` (``iam`` or ``sts``; ``s3`` works too). Credentials:
    ``credentials`` (a botocore object), else the keys given, else the standard chain.
    Building it does no I/O."""
    import boto3  # here: a store's own commands need no boto3 (see s3fsv.store.backend.s3)

    core = botocore.session.Session()
    if credentials is not None:
        given_credentials(core, credentials)
    session = boto3.session.Session(
        botocore_session=core,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        aws_session_token=session_token,
    )
    with errors(f"{service} client"):
        return session.client(
            service,
            region_name=region or session.region_name or DEFAULT_REGION,
            endpoint_url=endpoint_url,
            config=Config(
                retries={"mode": "standard", "max_attempts": 3},
                connect_timeout=5,
                read_timeout=30,
                s3={"addressing_style": "path"} if endpoint_url else None,
                signature_version="s3v4" if service == "s3" else None,
            ),
        )


def translate(exc: BaseException, what: str) -> S3fsvError:
    """A project error for a botocore failure while doing ``what``."""
    if not isinstance(exc, bexc.ClientError):
        return client_failure(exc, what, service="AWS")
    code, status, message = error_code(exc), http_status(exc), error_message(exc)
    if code in _DENIED or status == 403:
        return AccessDenied(f"{what}: access denied ({code or status}: {message})")
    if code == "NoSuchEntity" or status == 404:
        return NotFound(f"{what}: {message}")
    if code == "EntityAlreadyExists":
        return AlreadyExists(f"{what}: {message}")
    if code in _USAGE or status == 400:
        return UsageError(f"{what}: {code}: {message}")
    return StoreUnavailable(f"{what}: {code or status}: {message}")


def errors(what: str) -> AbstractContextManager[None]:
    """Run boto3 calls: project errors pass through, the rest is translated."""
    return translating(functools.partial(translate, what=what))


Fetched = Mapping[str, str]
"""``{"access_key_id", "secret_access_key", "session_token", "expiration"}`` (ISO-8601)."""


def refreshing_credentials(fetch: Callable[[], Fetched], method: str = "s3fsv") -> Any:
    """Credentials that call ``fetch`` again before they expire. ``fetch`` is called once now
    (its errors surface here); its later failures surface on the request that needed new
    credentials, as ``botocore`` errors that the S3 backend translates."""

    def metadata() -> dict[str, str]:
        got = fetch()
        return {
            "access_key": got["access_key_id"],
            "secret_key": got["secret_access_key"],
            "token": got["session_token"],
            "expiry_time": got["expiration"],
        }

    first = metadata()
    lifetime = (_parse_time(first["expiry_time"]) - datetime.now(timezone.utc)).total_seconds()
    lifetime = max(lifetime, 3.0)
    return botocore.credentials.RefreshableCredentials.create_from_metadata(
        first,
        refresh_using=metadata,
        method=method,
        advisory_timeout=lifetime / 3,
        mandatory_timeout=lifetime / 6,
    )


def _parse_time(text: str) -> datetime:
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def static_credentials(access_key: str, secret_key: str, token: str | None = None) -> Any:
    """Plain botocore credentials (that never refresh), for an S3 backend or a client."""
    return botocore.credentials.Credentials(access_key, secret_key, token)
