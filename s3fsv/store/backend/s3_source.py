"""The objects of a bucket as they are, whatever their keys (``S3Backend``'s, mixed into it;
see ``s3.py``): what imports and purges read, tag, check and delete. Keys here are relative to
the bucket, not to the backend's prefix. ``open_object`` reads through ``s3get``'s lean GETs
when the backend allows them (``direct_gets``), else through the client.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import botocore.exceptions as bexc

from s3fsv.store.backend.base import SourceObject
from s3fsv.store.backend.s3_errors import http_status
from s3fsv.store.backend.s3get import DirectGets, time_ns, version_id

_REDIRECTS = {301, 307, 400}  # how S3 answers a request signed for the wrong region


class SourceObjects:
    """Mixin: needs ``_errors`` (``S3Backend._errors``) and the attributes declared below."""

    bucket: str
    client: Any
    _core: Any
    _direct: DirectGets | bool | None
    _pool_size: int
    _client_lock: threading.Lock

    def list_objects(self, prefix: str = "") -> Iterator[SourceObject]:
        """Every object below ``prefix`` (keys relative to the bucket, whatever this backend's
        own prefix), in the server's order."""
        with self._errors(prefix):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix
            )
            for page in pages:
                for obj in page.get("Contents", ()):
                    yield SourceObject(
                        obj["Key"],
                        int(obj["Size"]),
                        str(obj["ETag"]),
                        modified_ns=time_ns(obj["LastModified"]),
                    )

    def open_object(self, key: str, part: int) -> tuple[SourceObject, Iterator[bytes]]:
        """Start reading object ``key`` of the bucket: what it is now, and its bytes in pieces
        of ``part`` bytes (the last shorter). Errors while reading are translated too."""
        with self._errors(key):
            direct = self._direct_gets()
            try:
                info, raw = direct.open(key, part) if direct else self._open_object(key, part)
            except bexc.ClientError as exc:
                if not direct or http_status(exc) not in _REDIRECTS:
                    raise
                # The bucket lives elsewhere (another region): the client follows that.
                self._direct = False
                info, raw = self._open_object(key, part)

        def pieces() -> Iterator[bytes]:
            with self._errors(key):
                yield from raw

        return info, pieces()

    def _open_object(self, key: str, part: int) -> tuple[SourceObject, Iterator[bytes]]:
        resp = self.client.get_object(Bucket=self.bucket, Key=key)
        info = SourceObject(
            key,
            int(resp["ContentLength"]),
            str(resp["ETag"]),
            version_id(resp.get("VersionId")),
            time_ns(resp["LastModified"]),
            {str(k).lower(): str(v) for k, v in resp.get("Metadata", {}).items()},
            int(resp.get("TagCount") or 0),
        )

        def pieces() -> Iterator[bytes]:
            body = resp["Body"]
            try:
                while piece := body.read(part):
                    yield piece
            finally:
                body.close()

        return info, pieces()

    def _direct_gets(self) -> DirectGets | None:
        """Lean GETs (``s3get``) for ``open_object``, made once; None: use the client."""
        if self._direct is not None:
            return self._direct or None
        client = self.client
        with self._client_lock:
            if self._direct is None:
                found = DirectGets.create(client, self._core, self.bucket, self._pool_size)
                self._direct = found or False
            return self._direct or None

    def object_tags(self, key: str, version: str = "") -> dict[str, str]:
        """The tags of object ``key`` (of one version, when given)."""
        extra = {"VersionId": version} if version else {}
        with self._errors(key):
            resp = self.client.get_object_tagging(Bucket=self.bucket, Key=key, **extra)
        return {str(t["Key"]): str(t["Value"]) for t in resp.get("TagSet", ())}

    def read_object(self, key: str, start: int, end: int, *, version: str, etag: str) -> bytes:
        """Bytes ``[start, end)`` of object ``key`` of the bucket, of version ``version`` when
        given, and only while its ETag is ``etag``: ``PreconditionFailed`` when it changed,
        ``NotFound`` when it (or that version) is gone."""
        kwargs: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "IfMatch": etag,
            "Range": f"bytes={start}-{end - 1}",
        }
        if version:
            kwargs["VersionId"] = version
        with self._errors(key):
            return bytes(self.client.get_object(**kwargs)["Body"].read())

    def head_object(self, key: str, version: str = "") -> SourceObject:
        """What object ``key`` of the bucket (one version of it, when given) is now."""
        extra = {"VersionId": version} if version else {}
        with self._errors(key):
            resp = self.client.head_object(Bucket=self.bucket, Key=key, **extra)
        version = version_id(resp.get("VersionId"))
        return SourceObject(key, int(resp["ContentLength"]), str(resp["ETag"]), version, 0, {}, -1)

    def delete_object(self, key: str, version: str = "") -> None:
        """Delete object ``key`` of the bucket; with ``version``, that version for good."""
        extra = {"VersionId": version} if version else {}
        with self._errors(key):
            self.client.delete_object(Bucket=self.bucket, Key=key, **extra)
