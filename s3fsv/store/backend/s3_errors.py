"""How the S3 backend turns boto3/botocore failures into project errors: the one mapping from
S3 error codes, HTTP statuses and client exceptions to ``S3fsvError`` subclasses. Messages are
one line and never contain credentials."""

from __future__ import annotations

import botocore.exceptions as bexc

from s3fsv.errors import (
    AccessDenied,
    BucketMissing,
    NotFound,
    PreconditionFailed,
    S3fsvError,
    StoreUnavailable,
    UsageError,
)

_NOT_FOUND_CODES = {"NoSuchKey", "404", "NotFound", "NoSuchVersion"}
_PRECONDITION_CODES = {"PreconditionFailed", "412", "ConditionalRequestConflict"}
_DENIED_CODES = {
    "AccessDenied",
    "403",
    "Forbidden",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "AllAccessDisabled",
    "AccountProblem",
}
_CREDENTIAL_ERRORS = (
    bexc.NoCredentialsError,
    bexc.PartialCredentialsError,
    bexc.CredentialRetrievalError,
    bexc.TokenRetrievalError,
    bexc.SSOError,
)
_NETWORK_ERRORS = (bexc.ConnectionError, bexc.HTTPClientError, bexc.IncompleteReadError)


def one_line(text: object) -> str:
    """``text`` with its whitespace runs (newlines included) as single spaces."""
    return " ".join(str(text).split())


def error_code(exc: bexc.ClientError) -> str:
    """The S3 error code of a client error (``""`` when it has none)."""
    return str(exc.response.get("Error", {}).get("Code", ""))


def http_status(exc: bexc.ClientError) -> int | None:
    """The HTTP status of the answer a client error reports (None when it has none)."""
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return None if status is None else int(status)


def translate(
    exc: BaseException,
    where: str,
    *,
    bucket: str,
    endpoint: str | None,
    denied_hint: str,
    cas: bool = False,
) -> S3fsvError:
    """The one place that maps a boto3/botocore exception about ``where`` (an ``s3://`` address)
    to a project error; ``denied_hint`` ends an access-denied message.

    ``cas`` marks a conditional put, where "not found" means the condition was lost.
    """
    if isinstance(exc, S3fsvError):
        return exc
    if isinstance(exc, bexc.ClientError):
        err = exc.response.get("Error", {})
        code = error_code(exc)
        status = http_status(exc)
        message = one_line(err.get("Message", "")) or "no message"
        if code == "InvalidBucketName":
            return UsageError(f"invalid S3 bucket name {bucket!r}: {message}")
        if code == "NoSuchBucket":
            return BucketMissing(f"bucket {bucket} does not exist")
        if code in _PRECONDITION_CODES or status == 412:
            return PreconditionFailed(f"conditional write lost on {where}")
        if code in _NOT_FOUND_CODES or status == 404:
            if cas:
                return PreconditionFailed(f"conditional write lost on {where}: key is gone")
            return NotFound(f"no such key: {where}")
        if code in _DENIED_CODES or status == 403:
            return AccessDenied(f"access denied to {where}: {denied_hint}")
        return StoreUnavailable(f"S3 error on {where}: {code or status}: {message}")
    if isinstance(exc, _CREDENTIAL_ERRORS):
        if isinstance(exc, bexc.NoCredentialsError):
            return AccessDenied(
                "no AWS credentials found: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile"
            )
        return AccessDenied(f"cannot load AWS credentials: {type(exc).__name__}")
    endpoint = endpoint or "AWS default endpoint"
    if isinstance(exc, _NETWORK_ERRORS):
        return StoreUnavailable(f"cannot reach S3 endpoint {endpoint}: {one_line(exc)}")
    if isinstance(exc, bexc.ParamValidationError):
        return UsageError(f"invalid S3 request for {where}: {one_line(exc)}")
    if isinstance(exc, bexc.BotoCoreError | OSError):
        return StoreUnavailable(f"S3 client error on {where}: {one_line(exc)}")
    return StoreUnavailable(f"unexpected S3 failure on {where}: {type(exc).__name__}")
