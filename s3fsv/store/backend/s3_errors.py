"""How the S3 backend turns boto3/botocore failures into project errors: the one mapping from
S3 error codes, HTTP statuses and client exceptions to ``S3fsvError`` subclasses, and the part
of it that serves the other AWS APIs too (``client_failure``, ``translating``: see ``aws``).
Messages are one line and never contain credentials."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

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


def error_message(exc: bexc.ClientError) -> str:
    """The message of a client error, on one line (``"no message"`` when it has none)."""
    return one_line(exc.response.get("Error", {}).get("Message", "")) or "no message"


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
    if isinstance(exc, bexc.ClientError):
        code, status, message = error_code(exc), http_status(exc), error_message(exc)
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
    if isinstance(exc, _NETWORK_ERRORS):
        endpoint = endpoint or "AWS default endpoint"
        return StoreUnavailable(f"cannot reach S3 endpoint {endpoint}: {one_line(exc)}")
    return client_failure(exc, where)


def client_failure(exc: BaseException, where: str, *, service: str = "S3") -> S3fsvError:
    """The project error for a boto3/botocore failure that is no error answer from a server
    (those are the caller's to map): missing or unloadable credentials, a request botocore
    refused to send, another client or local I/O failure, anything unforeseen. ``where`` says
    what was reached or done, ``service`` whom it was asked of."""
    if isinstance(exc, S3fsvError):
        return exc
    if isinstance(exc, bexc.NoCredentialsError):
        return AccessDenied(
            "no AWS credentials found: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile"
        )
    if isinstance(exc, _CREDENTIAL_ERRORS):
        return AccessDenied(f"cannot load AWS credentials: {type(exc).__name__}")
    if isinstance(exc, bexc.ParamValidationError):
        return UsageError(f"invalid {service} request for {where}: {one_line(exc)}")
    if isinstance(exc, bexc.BotoCoreError | OSError):
        return StoreUnavailable(f"{service} client error on {where}: {one_line(exc)}")
    return StoreUnavailable(f"unexpected {service} failure on {where}: {type(exc).__name__}")


@contextlib.contextmanager
def translating(convert: Callable[[BaseException], S3fsvError]) -> Iterator[None]:
    """Run boto3 calls: project errors pass through, any other exception is raised as
    ``convert(exc)`` (from it)."""
    try:
        yield
    except S3fsvError:
        raise
    except Exception as exc:
        raise convert(exc) from exc
