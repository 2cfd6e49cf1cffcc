"""``file:///path``: a store in a local (or shared POSIX) directory, safe for many processes.

Each key ``a/b/c`` is the file ``ROOT/a/b/c``. Besides the contract in
:mod:`s3fsv.store.backend.base`:

- **Atomicity.** Every put writes a temporary file in the key's directory (mode 0600, fsynced), then
  publishes it in one step: ``os.link`` for ``if_none_match`` (fails with EEXIST if the key exists,
  atomically, across processes and hosts sharing the directory), ``os.replace`` otherwise. Readers
  therefore see the old or the new value, never a partial one. ``if_match``, plain puts and deletes
  run under an exclusive ``fcntl.flock`` on one of 256 lock files in ``ROOT/.s3fsv-locks`` (chosen
  by hashing the key), so a compare-and-swap cannot interleave with another writer of that key.
- **Durability.** The data is fsynced before it is published, and the directory after.
- **Etags** are the MD5 hex digest of the content, so they change whenever the content changes.
- **Permissions.** Directories are created 0700 and files 0600: stores hold people's data.
- **Reserved names.** Path components starting with ``.s3fsv-`` (temporary files, the lock
  directory) are refused as keys and never listed.
- A key cannot be both a value and a prefix of other keys (``a`` and ``a/b``): such a put raises
  :class:`~s3fsv.errors.InvalidName`; reads treat the clash as a missing key.
- Temporary files left by a crashed writer are invisible; ``list`` skips them.

Every ``OSError`` is translated in one place, :func:`_translate`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

from s3fsv.errors import (
    AccessDenied,
    CorruptObject,
    InvalidName,
    NotFound,
    PreconditionFailed,
    S3fsvError,
    StoreUnavailable,
    UsageError,
)
from s3fsv.store.backend.base import B, KeyInfo, ObjectInfo, check_key, check_range

_RESERVED = ".s3fsv-"
_TMP = ".s3fsv-tmp-"
_LOCKDIR = ".s3fsv-locks"
_LOCK_STRIPES = 256
_READ_CHUNK = 1 << 20


def _etag(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _translate(exc: OSError, key: str, op: str) -> S3fsvError:
    """The one place that turns an ``OSError`` from ``op`` on ``key`` into a project error."""
    code = exc.errno
    where = exc.filename or key
    reason = exc.strerror or str(exc)
    if code in (errno.ENOENT, errno.ENOTDIR, errno.EISDIR) and op in ("get", "head", "list"):
        return NotFound(f"no such key: {key}" if op != "list" else f"no such prefix: {key}")
    if code == errno.ENOENT:
        return NotFound(f"no such key or directory for {op} {key}: {where}")
    if code in (errno.ENOTDIR, errno.EISDIR, errno.EEXIST) and op == "put":
        return InvalidName(
            f"cannot write key {key!r}: it clashes with an existing key "
            "(in a file store a key cannot also be a prefix of other keys)"
        )
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return AccessDenied(f"permission denied to {op} {key}: {where}: {reason}")
    return StoreUnavailable(f"file store error during {op} {key}: {where}: {reason}")


@contextlib.contextmanager
def _translating(key: str, op: str) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise _translate(exc, key, op) from exc


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_key(key: str) -> str:
    check_key(key)
    if any(part.startswith(_RESERVED) for part in key.split("/")):
        raise InvalidName(
            f"invalid store key {key!r}: names starting with {_RESERVED!r} are reserved"
        )
    return key


class FileBackend:
    """A store rooted at the directory ``root`` (created, 0700, on first write)."""

    def __init__(self, root: str) -> None:
        self.root = Path(os.path.abspath(root))
        self.url = f"file://{self.root}"

    def create_bucket_if_missing(self) -> bool:
        """Create the store's directory (for ``Store.init``); True if it was made. Fails with
        a one-line reason when ``root`` cannot be a directory of this store."""
        if self.root.is_dir():
            return False
        if self.root.exists():
            raise UsageError(f"{self.root} is a file; a store needs a directory")
        try:
            self._makedirs(self.root)
        except OSError as err:
            kind = AccessDenied if isinstance(err, PermissionError) else UsageError
            raise kind(f"cannot create store directory {self.root}: {err.strerror}") from None
        return True

    # -- paths ----------------------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*_check_key(key).split("/"))

    def _makedirs(self, directory: Path) -> None:
        """Create ``directory`` and missing parents with mode 0700, fsyncing each new entry."""
        if directory.is_dir():
            return
        missing: list[Path] = []
        d = directory
        while not d.is_dir():
            missing.append(d)
            if d.parent == d:
                break
            d = d.parent
        for d in reversed(missing):
            try:
                os.mkdir(d, 0o700)
            except FileExistsError:
                if not d.is_dir():
                    raise
                continue
            _fsync_dir(d.parent)

    @contextlib.contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        """Hold the exclusive lock stripe of ``key`` (blocks until it is free)."""
        stripe = hashlib.sha256(key.encode()).digest()[0] % _LOCK_STRIPES
        lockdir = self.root / _LOCKDIR
        self._makedirs(lockdir)
        fd = os.open(lockdir / f"{stripe:02x}", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    # -- reads ----------------------------------------------------------------------------------

    def get(self, key: str, start: int | None = None, end: int | None = None) -> bytes:
        path = self._path(key)
        check_range(start, end)
        with _translating(key, "get"), open(path, "rb", buffering=0) as f:
            if start is None and end is None:
                return f.readall()
            size = os.fstat(f.fileno()).st_size
            lo = min(start or 0, size)
            hi = size if end is None else min(end, size)
            if hi <= lo:
                return b""
            parts: list[bytes] = []
            pos = lo
            while pos < hi:
                chunk = os.pread(f.fileno(), hi - pos, pos)
                if not chunk:
                    break  # cannot happen for a published (immutable inode) value
                parts.append(chunk)
                pos += len(chunk)
            return b"".join(parts)

    def read_into(self, key: str, alloc: Callable[[int], B]) -> B:
        path = self._path(key)
        with _translating(key, "get"), open(path, "rb", buffering=0) as f:
            size = os.fstat(f.fileno()).st_size  # published values are never rewritten in place
            buf = alloc(size)
            view = memoryview(buf).cast("B")  # type: ignore[arg-type]
            done = 0
            while done < size:
                n = f.readinto(view[done:])
                if not n:
                    break
                done += n
            if done != size:
                raise CorruptObject(key, f"read {done} of {size} bytes")
            return buf

    def head(self, key: str) -> ObjectInfo:
        path = self._path(key)
        with _translating(key, "head"), open(path, "rb", buffering=0) as f:
            return self._info(f.fileno())

    @staticmethod
    def _info(fd: int) -> ObjectInfo:
        """Size and etag of the open file ``fd`` (one inode, so both describe the same value)."""
        h = hashlib.md5(usedforsecurity=False)
        size = 0
        while chunk := os.read(fd, _READ_CHUNK):
            h.update(chunk)
            size += len(chunk)
        return ObjectInfo(size, h.hexdigest())

    def _current_etag(self, path: Path) -> str | None:
        try:
            with open(path, "rb", buffering=0) as f:
                return self._info(f.fileno()).etag
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None

    # -- writes ---------------------------------------------------------------------------------

    def put(
        self,
        key: str,
        data: bytes,
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
        content_sha256: str | None = None,
    ) -> str:
        path = self._path(key)
        data = bytes(data)
        with _translating(key, "put"):
            self._makedirs(path.parent)
            tmp = self._write_temp(path.parent, data)
            try:
                if if_none_match:
                    self._publish_new(tmp, path, key, if_match)
                else:
                    with self._locked(key):
                        if if_match is not None and self._current_etag(path) != if_match:
                            raise PreconditionFailed(f"key changed: {key}")
                        os.replace(tmp, path)
                _fsync_dir(path.parent)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
        return _etag(data)

    def _publish_new(self, tmp: Path, path: Path, key: str, if_match: str | None) -> None:
        if if_match is not None:
            # Both conditions: the key must be absent and have etag if_match. Never true.
            raise PreconditionFailed(f"key changed: {key}")
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise PreconditionFailed(f"key exists: {key}") from None

    @staticmethod
    def _write_temp(directory: Path, data: bytes) -> Path:
        tmp = directory / f"{_TMP}{secrets.token_hex(8)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        os.close(fd)
        return tmp

    def delete(self, key: str) -> None:
        path = self._path(key)
        if not self.root.is_dir():
            return  # no store yet, so no key: do not create the root just to delete nothing
        with _translating(key, "delete"), self._locked(key):
            try:
                os.unlink(path)
            except (FileNotFoundError, NotADirectoryError):
                return
            except IsADirectoryError:
                return  # a prefix, not a key: nothing to delete
            _fsync_dir(path.parent)

    # -- listing --------------------------------------------------------------------------------

    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys starting with ``prefix``, ascending, walking directories lazily.

        ``prefix`` may end mid-name (``objects/a``); its directory part must be a valid key path.
        """
        head, _, partial = prefix.rpartition("/")
        if "\0" in prefix or prefix.startswith("/"):
            raise InvalidName(f"invalid list prefix {prefix!r}")
        if head:
            _check_key(head)
        directory = self.root.joinpath(*head.split("/")) if head else self.root
        base = f"{head}/" if head else ""
        yield from self._walk(directory, base, partial, prefix)

    def list_prefixes(self, prefix: str = "") -> Iterator[str]:
        """The distinct ``prefix + name + "/"`` directly below ``prefix``, ascending."""
        if "\0" in prefix or prefix.startswith("/") or (prefix and not prefix.endswith("/")):
            raise InvalidName(f"invalid prefix {prefix!r}: must be empty or end with '/'")
        if prefix:
            _check_key(prefix.rstrip("/"))
        directory = self.root.joinpath(*prefix.rstrip("/").split("/")) if prefix else self.root
        names: list[str] = []
        try:
            with _translating(prefix, "list"), os.scandir(directory) as it:
                names = [
                    e.name
                    for e in it
                    if e.is_dir(follow_symlinks=False) and not e.name.startswith(_RESERVED)
                ]
        except NotFound:
            return
        for name in sorted(names):
            yield f"{prefix}{name}/"

    def _walk(self, directory: Path, base: str, partial: str, prefix: str) -> Iterator[str]:
        # Sorting a directory's entries as "name" (files) and "name/" (subdirectories) yields the
        # keys below it in plain string order, because all keys under "d/" are contiguous.
        entries: list[tuple[str, str, bool]] = []
        try:
            with _translating(prefix, "list"), os.scandir(directory) as it:
                for entry in it:
                    name = entry.name
                    if name.startswith(_RESERVED) or not name.startswith(partial):
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        entries.append((name + "/", name, True))
                    elif entry.is_file(follow_symlinks=False):
                        entries.append((name, name, False))
        except NotFound:
            return  # the directory does not exist (or is a file): no keys there
        entries.sort()
        for _, name, is_dir in entries:
            if is_dir:
                yield from self._walk(directory / name, f"{base}{name}/", "", prefix)
            else:
                yield base + name

    # -- garbage collection (Sweepable) -----------------------------------------------------------

    def list_info(self, prefix: str = "") -> Iterator[KeyInfo]:
        for key in self.list(prefix):
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                st = os.stat(self._path(key))
                yield KeyInfo(key, st.st_size, st.st_mtime_ns)

    def touch(self, key: str) -> None:
        path = self._path(key)
        with _translating(key, "get"):
            os.utime(path)

    def delete_many(self, keys: list[str]) -> None:
        for key in keys:
            self.delete(key)

    def close(self) -> None:
        pass
