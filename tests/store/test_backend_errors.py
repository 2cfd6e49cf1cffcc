"""The S3 backend and the other AWS APIs (``aws``) map what is not an error answer from a
server (credentials, refused requests, client failures) the same way (``s3_errors``), and each
maps its servers' error answers its own way."""

from __future__ import annotations

import pytest
from botocore.exceptions import (
    ClientError,
    CredentialRetrievalError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    SSOError,
)

from s3fsv.errors import (
    AccessDenied,
    AlreadyExists,
    NotFound,
    S3fsvError,
    StoreUnavailable,
    UsageError,
)
from s3fsv.store.backend import aws
from s3fsv.store.backend.s3 import S3Backend

# (failure, error class, what the S3 message says, what the AWS message says)
NOT_ANSWERS: list[tuple[BaseException, type[S3fsvError], str, str]] = [
    (NoCredentialsError(), AccessDenied, "no AWS credentials found: set", "no AWS credentials"),
    (
        CredentialRetrievalError(provider="p", error_msg="m"),
        AccessDenied,
        "cannot load AWS credentials: CredentialRetrievalError",
        "cannot load AWS credentials: CredentialRetrievalError",
    ),
    (SSOError(), AccessDenied, "cannot load AWS credentials: SSOError", "cannot load AWS"),
    (
        ParamValidationError(report="Bucket must\nbe set"),
        UsageError,
        "invalid S3 request for s3://bkt/pre/k: ",
        "invalid AWS request for IAM listing: ",
    ),
    (
        OSError("disk full"),
        StoreUnavailable,
        "S3 client error on s3://bkt/pre/k: disk full",
        "AWS client error on IAM listing: disk full",
    ),
    (
        RuntimeError("x"),
        StoreUnavailable,
        "unexpected S3 failure on s3://bkt/pre/k: RuntimeError",
        "unexpected AWS failure on IAM listing: RuntimeError",
    ),
]


@pytest.mark.parametrize(("exc", "cls", "s3_text", "aws_text"), NOT_ANSWERS)
def test_failures_without_an_answer_map_alike(
    exc: BaseException, cls: type[S3fsvError], s3_text: str, aws_text: str
) -> None:
    from_s3 = S3Backend("bkt", "pre")._translate(exc, "k")
    from_aws = aws.translate(exc, "IAM listing")
    for err, text in ((from_s3, s3_text), (from_aws, aws_text)):
        assert type(err) is cls and text in str(err) and "\n" not in str(err), err


def test_only_the_s3_backend_names_its_endpoint_when_unreachable() -> None:
    down = EndpointConnectionError(endpoint_url="http://127.0.0.1:1")
    err = S3Backend("bkt", "", endpoint_url="http://127.0.0.1:1")._translate(down, "k")
    assert isinstance(err, StoreUnavailable)
    assert str(err).startswith("cannot reach S3 endpoint http://127.0.0.1:1: ")
    err = aws.translate(down, "IAM listing")
    assert isinstance(err, StoreUnavailable) and str(err).startswith("AWS client error on IAM")


def answer(code: str, status: int, message: str = "some\nreason") -> ClientError:
    meta = {"HTTPStatusCode": status}
    return ClientError({"Error": {"Code": code, "Message": message}, "ResponseMetadata": meta}, "X")


@pytest.mark.parametrize(
    ("exc", "cls", "text"),
    [
        (answer("AccessDenied", 403), AccessDenied, "IAM x: access denied (AccessDenied: some"),
        (answer("NoSuchEntity", 404), NotFound, "IAM x: some reason"),
        (answer("EntityAlreadyExists", 409), AlreadyExists, "IAM x: some reason"),
        (answer("MalformedPolicyDocument", 400), UsageError, "MalformedPolicyDocument: some"),
        (answer("Throttling", 503, ""), StoreUnavailable, "IAM x: Throttling: no message"),
    ],
)
def test_aws_error_answers(exc: ClientError, cls: type[S3fsvError], text: str) -> None:
    err = aws.translate(exc, "IAM x")
    assert type(err) is cls and text in str(err) and "\n" not in str(err), err


def test_errors_lets_project_errors_through_and_translates_the_rest() -> None:
    mine = NotFound("mine")
    with pytest.raises(NotFound) as caught, aws.errors("IAM x"):
        raise mine
    assert caught.value is mine
    with pytest.raises(AccessDenied) as denied, aws.errors("IAM x"):
        raise answer("AccessDenied", 403)
    assert isinstance(denied.value.__cause__, ClientError)
