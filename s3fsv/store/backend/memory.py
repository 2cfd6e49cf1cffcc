"""``memory://``: an in-process backend, the in-memory twin used by fast tests."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator

from s3fsv.errors import NotFound, PreconditionFailed
from s3fsv.store.backend.base import B, KeyInfo, ObjectInfo, check_key, check_range, copy_into

# Named stores let two Backend instances in one process share data, like two clients of one bucket.
# Each named store has one lock shared by all its instances, so that conditional puts stay atomic
# between instances (a per-instance lock would let two clients' compare-and-swaps interleave).
_STORES: dict[str, tuple[dict[str, bytes], dict[str, int], threading.Lock]] = {}
_STORES_LOCK = threading.Lock()


def _etag(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


class MemoryBackend:
    """A dict guarded by a lock. ``memory://NAME`` instances with the same NAME share contents.
    Each key's last write time comes from ``clock`` (nanoseconds; tests may replace it)."""

    clock: Callable[[], int] = staticmethod(time.time_ns)

    def __init__(self, name: str = "") -> None:
        self.url = f"memory://{name}"
        if name:
            with _STORES_LOCK:
                self._data, self._times, self._lock = _STORES.setdefault(
                    name, ({}, {}, threading.Lock())
                )
        else:
            self._data, self._times, self._lock = {}, {}, threading.Lock()

    def get(self, key: str, start: int | None = None, end: int | None = None) -> bytes:
        check_key(key)
        check_range(start, end)
        with self._lock:
            try:
                data = self._data[key]
            except KeyError:
                raise NotFound(f"no such key: {key}") from None
        return data[start or 0 : end]

    def read_into(self, key: str, alloc: Callable[[int], B]) -> B:
        return copy_into(self.get(key), alloc)

    def head(self, key: str) -> ObjectInfo:
        check_key(key)
        with self._lock:
            try:
                data = self._data[key]
            except KeyError:
                raise NotFound(f"no such key: {key}") from None
        return ObjectInfo(len(data), _etag(data))

    def put(
        self,
        key: str,
        data: bytes,
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
        content_sha256: str | None = None,
    ) -> str:
        check_key(key)
        data = bytes(data)
        with self._lock:
            current = self._data.get(key)
            if if_none_match and current is not None:
                raise PreconditionFailed(f"key exists: {key}")
            if if_match is not None and (current is None or _etag(current) != if_match):
                raise PreconditionFailed(f"key changed: {key}")
            self._data[key] = data
            self._times[key] = self.clock()
        return _etag(data)

    def list(self, prefix: str = "") -> Iterator[str]:
        with self._lock:
            keys = sorted(k for k in self._data if k.startswith(prefix))
        yield from keys

    def list_prefixes(self, prefix: str = "") -> Iterator[str]:
        with self._lock:
            found = {
                prefix + k[len(prefix) :].split("/", 1)[0] + "/"
                for k in self._data
                if k.startswith(prefix) and "/" in k[len(prefix) :]
            }
        yield from sorted(found)

    def delete(self, key: str) -> None:
        check_key(key)
        with self._lock:
            self._data.pop(key, None)
            self._times.pop(key, None)

    def list_info(self, prefix: str = "") -> Iterator[KeyInfo]:
        with self._lock:
            found = [
                KeyInfo(k, len(v), self._times.get(k, 0))
                for k, v in self._data.items()
                if k.startswith(prefix)
            ]
        yield from sorted(found, key=lambda i: i.key)

    def touch(self, key: str) -> None:
        check_key(key)
        with self._lock:
            if key not in self._data:
                raise NotFound(f"no such key: {key}")
            self._times[key] = self.clock()

    def delete_many(self, keys: list[str]) -> None:
        for key in keys:
            self.delete(key)

    def close(self) -> None:
        pass
