"""``s3://bucket/prefix``: a store in an S3 (or S3-compatible) bucket. The only S3 client
(its error mapping is ``s3_errors``, its credential plumbing ``s3_credentials``, its access to a
bucket's objects as they are, for imports, ``s3_source``): botocore's, made without boto3,
which adds nothing a store uses (managed transfers, resources) and whose import cost every
command 11 ms of CPU more (measured).

Besides the contract in :mod:`s3fsv.store.backend.base`:

- Key ``k`` is the object ``prefix/k`` (``k`` when the prefix is empty).
- **Credentials** come from the standard botocore chain (env, profile, SSO, instance role), unless
  ``credentials`` (a botocore credentials object, such as the refreshing ones an access gateway
  hands out: ``s3fsv.store.backend.aws``) is given, which is then the only source. The
  endpoint is ``endpoint_url`` if given, else ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``;
  with a custom endpoint, path-style addressing is used (SeaweedFS, MinIO need it). The region is
  the configured one, else ``us-east-1``.
- **Etags** are exactly what S3 returns, quotes included, and are passed back unchanged as
  ``If-Match`` (AWS, SeaweedFS and moto accept the quoted form).
- **Conditional puts** use ``If-None-Match: *`` and ``If-Match: <etag>``. A 412, a 409
  ``ConditionalRequestConflict`` and, for ``if_match``, a 404 (AWS and moto answer 404 when the key
  is missing, SeaweedFS 412) all raise :class:`~s3fsv.errors.PreconditionFailed`.
  Caveat: botocore retries a put whose response was lost; if the first attempt had succeeded, the
  retry reports ``PreconditionFailed`` although this writer won. Callers that CAS should re-read
  and recognise their own value.
- ``list`` yields keys in S3's (UTF-8 byte) order on every server, although SeaweedFS lists in
  directory-walk order; see :meth:`S3Backend.list` and ``list_mode``.
- ``get`` does not ask for or check S3's response checksums (``response_checksum_validation``
  is ``when_required``): content-addressed callers hash what they read anyway.
- ``put`` sends ``x-amz-checksum-sha256`` (``content_sha256`` when the caller knows it), which
  the server verifies, and does not sign the payload: over plain HTTP botocore would otherwise
  hash every byte once more for the signature.
- ``read_into`` receives a body straight into the caller's buffer through http.client's
  ``readinto`` (a private path under botocore and urllib3, used only when those layers look as
  expected; otherwise the body is read and copied). A body shorter than its Content-Length is a
  ``StoreUnavailable`` error, and its connection is closed, never reused.
- ``get`` with ``start == end`` returns ``b""`` without a request (so without checking that the
  key exists); a range starting at or past the end returns ``b""`` (S3 answers 416).
- Creating the backend does no I/O: the client is built on first use.
- Every botocore error is translated by :func:`s3_errors.translate`, the one choke point.
  Messages never contain credentials.
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import functools
import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Literal

import botocore.credentials
import botocore.exceptions as bexc
import botocore.session
from botocore.config import Config

from s3fsv.errors import (
    AccessDenied,
    InvalidName,
    S3fsvError,
    StoreUnavailable,
    UsageError,
)
from s3fsv.store.backend.base import (
    B,
    KeyInfo,
    ObjectInfo,
    check_key,
    check_range,
    copy_into,
)
from s3fsv.store.backend.s3_credentials import given_credentials, shared_loader
from s3fsv.store.backend.s3_errors import error_code, one_line, translate, translating
from s3fsv.store.backend.s3_source import SourceObjects
from s3fsv.store.backend.s3get import DirectGets, time_ns

DEFAULT_REGION = "us-east-1"
DELETE_BATCH = 1000  # keys per DeleteObjects request, the S3 maximum


def _fill(body: Any, view: memoryview, size: int) -> None:
    """Read the ``size`` bytes of a botocore streaming body into ``view``.

    ``body.read()`` returns new bytes that would then be copied, and urllib3's ``readinto`` does
    the same. When the stack underneath is the usual botocore -> urllib3 -> http.client, read
    with http.client's ``readinto``, which receives straight into ``view``, then hand the
    drained connection back to urllib3's pool. Any other body is read and copied."""
    raw = getattr(body, "_raw_stream", None)
    inner = getattr(raw, "_fp", None)
    done = 0
    if callable(getattr(inner, "readinto", None)) and callable(getattr(raw, "release_conn", None)):
        while done < size:
            n = inner.readinto(view[done:size])
            if not n:
                break
            done += n
        if done == size and inner.isclosed():  # http.client closes itself at Content-Length
            raw.release_conn()
    else:
        data = body.read()
        done = len(data)
        if done == size:
            view[:] = data
    if done != size:
        raise bexc.IncompleteReadError(actual_bytes=done, expected_bytes=size)


class S3Backend(SourceObjects):
    """Keys under ``s3://bucket/prefix``. Thread-safe: one client shared by all threads."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        *,
        region: str | None = None,
        max_attempts: int = 5,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_pool_connections: int = 32,
        list_mode: Literal["auto", "flat", "walk"] = "auto",
        credentials: Any = None,
        denied_hint: str = "check credentials",
        direct_gets: bool = False,
    ) -> None:
        if list_mode not in ("auto", "flat", "walk"):
            raise UsageError(f"invalid list_mode {list_mode!r}: use auto, flat or walk")
        self.list_mode = list_mode
        if not bucket or "/" in bucket:
            raise UsageError(f"invalid S3 bucket name {bucket!r}")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        if self.prefix:
            try:
                check_key(self.prefix)  # the rule for keys: no empty, '.' or '..' parts, no NUL
            except InvalidName:
                raise UsageError(f"invalid S3 prefix {self.prefix!r}") from None
        self._base = f"{self.prefix}/" if self.prefix else ""
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.endpoint_url = (
            endpoint_url
            or os.environ.get("AWS_ENDPOINT_URL_S3")
            or os.environ.get("AWS_ENDPOINT_URL")
            or None
        )
        self.region = region
        self.credentials = credentials
        self.denied_hint = denied_hint  # what an access-denied message tells the user to do
        self._config = Config(
            retries={"mode": "standard", "max_attempts": max_attempts},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_pool_connections=max_pool_connections,
            # Uploads carry x-amz-checksum-sha256 (the object id we computed anyway), which the
            # server verifies: signing the payload too would hash every byte a second time.
            s3={"payload_signing_enabled": False}
            | ({"addressing_style": "path"} if self.endpoint_url else {}),
            # Callers verify every object against its SHA-256 key; botocore's CRC32 of each
            # response body repeated that work (about 0.3 s of CPU per GiB read, measured).
            response_checksum_validation="when_required",
        )
        self._client: Any = None
        self._core: Any = None
        self._signer: Any = None
        # ``open_object`` through ``s3get`` (imports); off, it never bypasses the client (which
        # a stubbed client, moto's say, relies on).
        self._direct: DirectGets | bool | None = None if direct_gets else False
        self._pool_size = max_pool_connections
        self._client_lock = threading.Lock()

    # -- plumbing -------------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        """The S3 client, created once, on first use (credential lookup may do I/O)."""
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    try:
                        self._core = core = botocore.session.Session()
                        core.register_component("data_loader", shared_loader(core))
                        # Responses' timestamps (LastModified...) are never used here: leave
                        # them as strings instead of parsing each with dateutil (about a fifth
                        # of botocore's CPU per small GET, measured).
                        core.get_component("response_parser_factory").set_parser_defaults(
                            timestamp_parser=str
                        )
                        if self.credentials is not None:
                            given_credentials(core, self.credentials)
                        region = self.region or core.get_config_variable("region") or DEFAULT_REGION
                        self._client = core.create_client(
                            "s3",
                            region_name=region,
                            endpoint_url=self.endpoint_url,
                            config=self._config,
                        )
                    except Exception as exc:
                        raise self._translate(exc, "") from exc
        return self._client

    def _key(self, key: str) -> str:
        return self._base + check_key(key)

    def _where(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._base}{key}" if key else f"s3://{self.bucket}"

    def _translate(self, exc: BaseException, key: str, *, cas: bool = False) -> S3fsvError:
        """``s3_errors.translate`` for an error about ``key`` (``cas``: a conditional put)."""
        return translate(
            exc,
            self._where(key),
            bucket=self.bucket,
            endpoint=self.endpoint_url,
            denied_hint=self.denied_hint,
            cas=cas,
        )

    def _errors(self, key: str, *, cas: bool = False) -> AbstractContextManager[None]:
        """Run one S3 call: project errors pass through, everything else is translated."""
        return translating(functools.partial(self._translate, key=key, cas=cas))

    # -- operations -----------------------------------------------------------------------------

    def get(self, key: str, start: int | None = None, end: int | None = None) -> bytes:
        full = self._key(key)
        check_range(start, end)
        first = start or 0
        if end is not None and end <= first:
            return b""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": full}
        if first or end is not None:
            kwargs["Range"] = f"bytes={first}-{'' if end is None else end - 1}"
        with self._errors(key):
            try:
                resp = self.client.get_object(**kwargs)
            except bexc.ClientError as exc:
                if error_code(exc) == "InvalidRange":
                    return b""  # 416: the range starts at or past the end (or the value is empty)
                raise
            return bytes(resp["Body"].read())

    def read_into(self, key: str, alloc: Callable[[int], B]) -> B:
        full = self._key(key)
        with self._errors(key):
            resp = self.client.get_object(Bucket=self.bucket, Key=full)
            body = resp["Body"]
            try:
                if "ContentLength" not in resp:  # a chunked answer: the size is known at the end
                    return copy_into(body.read(), alloc)
                size = int(resp["ContentLength"])
                buf = alloc(size)
                _fill(body, memoryview(buf).cast("B"), size)  # type: ignore[arg-type]
            except BaseException:
                body.close()  # the connection may hold unread bytes: never reuse it
                raise
            return buf

    def head(self, key: str) -> ObjectInfo:
        full = self._key(key)
        with self._errors(key):
            resp = self.client.head_object(Bucket=self.bucket, Key=full)
        return ObjectInfo(int(resp["ContentLength"]), str(resp["ETag"]))

    def server_time(self, key: str) -> float | None:
        """The store's clock, from the ``Date`` header of a HEAD of ``key`` (seconds since the
        epoch, whole seconds), or None when the server sends no date."""
        with self._errors(key):
            resp = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        date = resp.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
        try:
            return email.utils.parsedate_to_datetime(date).timestamp() if date else None
        except (TypeError, ValueError):
            return None

    def put(
        self,
        key: str,
        data: bytes,
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
        content_sha256: str | None = None,
    ) -> str:
        full = self._key(key)
        digest = bytes.fromhex(content_sha256) if content_sha256 else hashlib.sha256(data).digest()
        kwargs: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": full,
            "Body": bytes(data),
            # The server checks the body against this, so the payload need not be signed.
            "ChecksumSHA256": base64.b64encode(digest).decode(),
        }
        if if_none_match:
            kwargs["IfNoneMatch"] = "*"
        if if_match is not None:
            kwargs["IfMatch"] = if_match
        with self._errors(key, cas=if_match is not None):
            resp = self.client.put_object(**kwargs)
        return str(resp["ETag"])

    def put_retained(self, key: str, data: bytes, retain_until: datetime) -> str:
        """Write ``key`` once (``If-None-Match: *``) under Object Lock in compliance mode until
        ``retain_until``: no one, the account's root included, can delete or replace that
        version before then. Needs a bucket created with Object Lock enabled; a lost
        condition raises ``PreconditionFailed``."""
        full = self._key(key)
        kwargs: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": full,
            "Body": bytes(data),
            "ChecksumSHA256": base64.b64encode(hashlib.sha256(data).digest()).decode(),
            "IfNoneMatch": "*",
            "ObjectLockMode": "COMPLIANCE",
            "ObjectLockRetainUntilDate": retain_until,
        }
        with self._errors(key):
            resp = self.client.put_object(**kwargs)
        return str(resp["ETag"])

    def object_lock_enabled(self) -> bool:
        """Whether the bucket was created with Object Lock (so ``put_retained`` works)."""
        with self._errors(""):
            try:
                conf = self.client.get_object_lock_configuration(Bucket=self.bucket)
            except bexc.ClientError as exc:
                if error_code(exc) in ("ObjectLockConfigurationNotFoundError", "NotImplemented"):
                    return False
                raise
        return conf.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"

    def key_versions(self, prefix: str) -> dict[str, int]:
        """How many versions (delete markers included) each key below ``prefix`` has, in a
        versioned bucket: more than one means the key was overwritten or deleted (with Object
        Lock, the earlier versions are still there). Empty when the bucket keeps none."""
        counts: dict[str, int] = {}
        skip = len(self._base)
        with self._errors(prefix):
            pages = self.client.get_paginator("list_object_versions").paginate(
                Bucket=self.bucket, Prefix=self._base + prefix
            )
            for page in pages:
                for item in [*page.get("Versions", ()), *page.get("DeleteMarkers", ())]:
                    key = item["Key"][skip:]
                    counts[key] = counts.get(key, 0) + 1
        return counts

    def presign(self, method: Literal["GET", "PUT"], key: str, expires: int) -> str:
        """A URL that lets its bearer GET or PUT ``key`` for ``expires`` seconds with this
        backend's credentials (SigV4: the engine checks the signer's rights on each use)."""
        full = self._key(key)
        operation = {"GET": "get_object", "PUT": "put_object"}[method]
        with self._errors(key):
            return str(
                self._presigner.generate_presigned_url(
                    operation, Params={"Bucket": self.bucket, "Key": full}, ExpiresIn=expires
                )
            )

    @property
    def _presigner(self) -> Any:
        """A client like :attr:`client` that signs URLs with SigV4 (botocore's default for
        presigned S3 URLs can be the older query signature, which session credentials lack)."""
        client = self.client
        with self._client_lock:
            if self._signer is None:
                self._signer = self._core.create_client(  # botocore's: it can presign too
                    "s3",
                    region_name=client.meta.region_name,
                    endpoint_url=self.endpoint_url,
                    config=client.meta.config.merge(Config(signature_version="s3v4")),
                )
            return self._signer

    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys starting with ``prefix``, ascending (UTF-8 byte order, like AWS), lazily.

        ``list_mode="flat"`` trusts the server's order: one paginated ListObjectsV2. SeaweedFS
        instead lists in directory-walk order (``x/a`` before ``x-c``, as if ``/`` sorted
        first), so ``"walk"`` lists one ``/``-level at a time (``Delimiter="/"``), sorts each
        level and descends lazily: exact on any server, one extra request per "directory".
        ``"auto"`` (default) looks at the ``Server`` header of the first listing and walks only
        for SeaweedFS.
        """
        if "\0" in prefix:
            raise UsageError(f"invalid list prefix {prefix!r}")
        skip = len(self._base)
        full = self._base + prefix
        with self._errors(prefix):
            keys = self._walk(full) if self.list_mode == "walk" else self._flat(full)
            for key in keys:
                yield key[skip:]

    def _flat(self, full: str) -> Iterator[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=full
        )
        for page in pages:
            if self.list_mode == "auto":
                server = page["ResponseMetadata"].get("HTTPHeaders", {}).get("server", "")
                if server.startswith("SeaweedFS"):
                    self.list_mode = "walk"
                    yield from self._walk(full)
                    return
                self.list_mode = "flat"
            for obj in page.get("Contents", ()):
                yield obj["Key"]

    def _walk(self, full: str) -> Iterator[str]:
        # Keys below "d/" are contiguous in string order, so sorting one level's keys and
        # common prefixes together and expanding each prefix in place gives global order.
        entries: list[tuple[str, bool]] = []
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=full, Delimiter="/"
        )
        for page in pages:
            entries.extend((obj["Key"], False) for obj in page.get("Contents", ()))
            entries.extend((cp["Prefix"], True) for cp in page.get("CommonPrefixes", ()))
        entries.sort()
        for name, is_prefix in entries:
            if is_prefix:
                yield from self._walk(name)
            else:
                yield name

    def list_prefixes(self, prefix: str = "") -> Iterator[str]:
        """The distinct ``prefix + name + "/"`` directly below ``prefix``, ascending."""
        if "\0" in prefix:
            raise UsageError(f"invalid list prefix {prefix!r}")
        skip = len(self._base)
        found: list[str] = []
        with self._errors(prefix):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self._base + prefix, Delimiter="/"
            )
            for page in pages:
                found.extend(cp["Prefix"][skip:] for cp in page.get("CommonPrefixes", ()))
        yield from sorted(found)

    def delete(self, key: str) -> None:
        full = self._key(key)
        with self._errors(key):
            try:
                self.client.delete_object(Bucket=self.bucket, Key=full)
            except bexc.ClientError as exc:
                if error_code(exc) != "NoSuchKey":  # S3 answers 204 anyway; some servers 404
                    raise

    # -- garbage collection (Sweepable) -----------------------------------------------------------

    def list_info(self, prefix: str = "") -> Iterator[KeyInfo]:
        """Keys below ``prefix`` with their size and last-modified time, in the server's order
        (one paginated listing: order does not matter to a sweep)."""
        skip = len(self._base)
        with self._errors(prefix):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self._base + prefix
            )
            for page in pages:
                for obj in page.get("Contents", ()):
                    yield KeyInfo(obj["Key"][skip:], int(obj["Size"]), time_ns(obj["LastModified"]))

    def touch(self, key: str) -> None:
        """Make ``key``'s last-modified time now: a server-side copy onto itself."""
        full = self._key(key)
        with self._errors(key):
            self.client.copy_object(
                Bucket=self.bucket,
                Key=full,
                CopySource={"Bucket": self.bucket, "Key": full},
                MetadataDirective="REPLACE",
            )

    def delete_many(self, keys: list[str]) -> None:
        for first in range(0, len(keys), DELETE_BATCH):
            batch = [{"Key": self._key(k)} for k in keys[first : first + DELETE_BATCH]]
            with self._errors(keys[first]):
                resp = self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
                )
            errors = [e for e in resp.get("Errors", ()) if e.get("Code") != "NoSuchKey"]
            if errors:
                shown = errors[0]
                raise StoreUnavailable(
                    f"S3 refused to delete {len(errors)} key(s) of {self._where('')}, first "
                    f"{shown.get('Key')}: {shown.get('Code')}: {one_line(shown.get('Message'))}"
                )

    def create_bucket_if_missing(self) -> bool:
        """Create the bucket unless this account already owns it. Returns True if created."""
        with self._errors(""):
            # SeaweedFS answers a second create of a bucket made with Object Lock with
            # BucketAlreadyExists (not ...OwnedByYou): a bucket we can already reach is ours.
            with contextlib.suppress(bexc.ClientError):
                self.client.head_bucket(Bucket=self.bucket)
                return False
            kwargs: dict[str, Any] = {"Bucket": self.bucket}
            region = self.client.meta.region_name
            if region and region != DEFAULT_REGION:
                kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
            try:
                self.client.create_bucket(**kwargs)
            except bexc.ClientError as exc:
                if error_code(exc) == "BucketAlreadyOwnedByYou":
                    return False
                if error_code(exc) == "BucketAlreadyExists":
                    raise AccessDenied(
                        f"bucket {self.bucket} already exists and belongs to another account"
                    ) from None
                raise
        return True

    def close(self) -> None:
        for client in (self._client, self._signer):
            if client is not None:
                client.close()
        if isinstance(self._direct, DirectGets):
            self._direct.close()
            self._direct = None
        self._client = self._signer = None
