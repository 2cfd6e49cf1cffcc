"""Lean GETs of whole objects, for imports that read thousands of small objects once each.

A GET through a botocore client spends most of its client CPU in botocore's per-call machinery
(event hooks, parameter validation, serialisation, response parsing): about 1.3 ms per small
object here, against about 0.45 ms when the same request is signed by botocore's own SigV4
signer (with the client's credentials, refreshed as the client would) and sent through a
urllib3 pool (measured on SeaweedFS, one thread). ``DirectGets`` does the latter; its URLs are
the client's own (learnt from one presigned URL: same endpoint, addressing style and key
encoding), so what is read is what ``get_object`` would read, and its failures are raised as
the client's would be (``ClientError`` with S3's code and status, ``HTTPClientError``).

It is not used (``DirectGets.create`` returns None, callers keep using the client) when there
are no credentials to sign with, or when a proxy is configured for the endpoint.

How S3 reports an object's times and version ids (``time_ns``, ``version_id``) is here too,
for every reader of objects' headers and listings.
"""

from __future__ import annotations

import email.utils
import os
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import botocore.exceptions as bexc
import urllib3
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.httpsession import get_cert_path
from botocore.utils import percent_encode

from s3fsv.store.backend.base import SourceObject

_PROBE = "s3fsv-probe-key"
_RETRY_STATUS = (500, 502, 503, 504)
_META = "x-amz-meta-"


def time_ns(value: object) -> int:
    """Nanoseconds since the epoch of an S3 timestamp: a datetime, or the string botocore leaves
    unparsed here (ISO 8601 in listings, RFC 1123 in headers)."""
    if isinstance(value, datetime):
        moment = value
    else:
        text = str(value)
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            moment = email.utils.parsedate_to_datetime(text)
    return int(moment.timestamp()) * 10**9 + moment.microsecond * 1000


def version_id(raw: object) -> str:
    """An object's version id as S3 reports it (``VersionId``, ``x-amz-version-id``); "" when
    it has none ("null": written before versioning was on)."""
    version = str(raw or "")
    return "" if version == "null" else version


class DirectGets:
    """Signed GETs of one bucket's objects through a urllib3 pool. Thread-safe."""

    def __init__(
        self,
        base: str,
        credentials: Any,
        region: str,
        *,
        pool_size: int,
        attempts: int,
        connect_timeout: float,
        read_timeout: float,
        ca_bundle: str,
    ) -> None:
        self.base = base  # the bucket's URL, ending with "/": keys follow it
        self.credentials = credentials
        self.region = region
        retries = urllib3.Retry(
            total=max(attempts - 1, 0),
            status_forcelist=_RETRY_STATUS,
            backoff_factor=0.1,
            allowed_methods=frozenset({"GET"}),
            raise_on_status=False,
            respect_retry_after_header=True,
        )
        self.http = urllib3.PoolManager(
            num_pools=1,
            maxsize=pool_size,
            retries=retries,
            timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
            cert_reqs="CERT_REQUIRED",
            ca_certs=ca_bundle,
        )

    @classmethod
    def create(cls, client: Any, core: Any, bucket: str, pool_size: int) -> DirectGets | None:
        """Direct GETs that address and sign like ``client`` (botocore ``core``'s), or None
        when they cannot stand in for it (no credentials, a proxy)."""
        credentials = core.get_credentials()
        if credentials is None:
            return None
        probe = client.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": _PROBE}, ExpiresIn=60
        )
        url = urlsplit(probe)
        if not url.path.endswith("/" + _PROBE):
            return None
        base = f"{url.scheme}://{url.netloc}{url.path[: -len(_PROBE)]}"
        proxies = urllib.request.getproxies()
        if url.scheme in proxies and not urllib.request.proxy_bypass(url.hostname or ""):
            return None
        config = client.meta.config
        return cls(
            base,
            credentials,
            client.meta.region_name,
            pool_size=pool_size,
            attempts=int((config.retries or {}).get("max_attempts", 5)),
            connect_timeout=float(config.connect_timeout),
            read_timeout=float(config.read_timeout),
            ca_bundle=os.environ.get("AWS_CA_BUNDLE") or get_cert_path(True),
        )

    def open(self, key: str, part: int) -> tuple[SourceObject, Iterator[bytes]]:
        """GET object ``key`` (relative to the bucket): what it is, and its bytes in pieces
        of at most ``part`` bytes. Raises (also while reading the pieces) what botocore
        would: ``ClientError`` for an answer other than 200, ``HTTPClientError`` for the
        network."""
        request = AWSRequest("GET", self.base + percent_encode(key, safe="/~"))
        # One consistent set (refreshing credentials may change between reads of each part).
        frozen = self.credentials.get_frozen_credentials()
        S3SigV4Auth(frozen, "s3", self.region).add_auth(request)
        try:
            resp = self.http.request(
                "GET",
                request.url,
                headers=dict(request.headers.items()),
                preload_content=False,
                redirect=False,  # a redirect is the caller's (another region: see s3.py)
            )
            if resp.status != 200:
                body = resp.read(64 * 1024)
                resp.release_conn()
                raise _client_error(resp.status, body)
        except urllib3.exceptions.HTTPError as err:
            raise bexc.HTTPClientError(error=err) from err
        headers = resp.headers
        info = SourceObject(
            key,
            int(headers["Content-Length"]),
            headers["ETag"],
            version_id(headers.get("x-amz-version-id")),
            time_ns(headers["Last-Modified"]),
            {k[len(_META) :].lower(): v for k, v in headers.items() if k.lower().startswith(_META)},
            int(headers.get("x-amz-tagging-count") or 0),
        )

        def pieces() -> Iterator[bytes]:
            done = False
            try:
                while piece := resp.read(part):
                    yield piece
                done = True
            except urllib3.exceptions.HTTPError as err:
                raise bexc.HTTPClientError(error=err) from err
            finally:
                if not done:
                    resp.close()  # unread bytes: the connection cannot be reused
                resp.release_conn()

        return info, pieces()

    def close(self) -> None:
        self.http.clear()


def _client_error(status: int, body: bytes) -> bexc.ClientError:
    """The ``ClientError`` botocore makes of an error answer (its code and message come from
    the error document, when there is one)."""
    try:
        root = ET.fromstring(body)
        code, message = root.findtext("Code") or "", root.findtext("Message") or ""
    except ET.ParseError:
        code, message = "", ""
    error = {"Code": code or str(status), "Message": message}
    return bexc.ClientError(
        {"Error": error, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject"
    )
