"""The project's exception tree.

Every error a user can cause or meet derives from :class:`S3fsvError`. Each class knows the errno
the filesystem returns for it and the exit code the CLI returns for it, so neither the FUSE adapter
nor the CLI needs its own table. Backends translate their native errors into these classes in one
place each (see ``backend/s3_errors.py``); nothing above the backend layer sees a botocore or
OSError.
"""

from __future__ import annotations

import errno as _errno
from collections.abc import Iterable


class S3fsvError(Exception):
    """Base class. ``str(err)`` is a complete one-line message meant for a user."""

    errno: int = _errno.EIO
    exit_code: int = 1


class NotFound(S3fsvError):
    """A key, repo, ref or path that does not exist."""

    errno = _errno.ENOENT
    exit_code = 3


class MissingObject(NotFound):
    """A chunk or pack that a committed file refers to is missing from the store: the store is
    damaged. Not-found for the command line (exit 3), but ``EIO`` on a mount, where ``ENOENT``
    would say the file itself does not exist."""

    errno = _errno.EIO


class BucketMissing(NotFound):
    """The S3 bucket of a store does not exist."""


class AlreadyExists(S3fsvError):
    """Something that may be created only once already exists."""

    errno = _errno.EEXIST
    exit_code = 4


class PreconditionFailed(S3fsvError):
    """A conditional put lost: the key exists (if_none_match) or changed (if_match)."""

    errno = _errno.EAGAIN
    exit_code = 5


class Conflict(S3fsvError):
    """A commit lost a race and changed paths that the winner changed too.

    ``paths`` names every conflicting path; the caller's staged input is left untouched.
    """

    errno = _errno.EBUSY
    exit_code = 6

    def __init__(self, paths: Iterable[str], branch: str = "") -> None:
        self.paths = sorted(set(paths))
        self.branch = branch
        shown = ", ".join(self.paths[:10]) + (" ..." if len(self.paths) > 10 else "")
        where = f" on branch {branch!r}" if branch else ""
        super().__init__(f"conflict{where}: these paths were changed concurrently: {shown}")


class Interrupted(S3fsvError):
    """Staged files that were open for writing when an earlier daemon stopped: they may be
    incomplete, so a commit refuses them until they are written again (or removed)."""

    errno = _errno.EBUSY
    exit_code = 13

    def __init__(self, paths: Iterable[str]) -> None:
        self.paths = sorted(set(paths))
        shown = ", ".join(self.paths[:10]) + (" ..." if len(self.paths) > 10 else "")
        super().__init__(
            f"not committed (everything stays staged): {shown}: open for writing when an earlier "
            "mount stopped, so possibly incomplete; check, then write again, `touch` to keep as "
            "is, or remove (docs/semantics.md)"
        )


class InvalidName(S3fsvError):
    """A path component or ref name that is refused (``.``, ``..``, empty, ``/`` or NUL...)."""

    errno = _errno.EINVAL
    exit_code = 2


class NameTooLong(InvalidName):
    """A path component longer than 255 bytes of UTF-8."""

    errno = _errno.ENAMETOOLONG


class UsageError(S3fsvError):
    """Bad input from the user: a malformed URL, address or option."""

    errno = _errno.EINVAL
    exit_code = 2


class CorruptObject(S3fsvError):
    """Bytes that do not hash to their key, or that do not decode as the expected object."""

    errno = _errno.EIO
    exit_code = 7

    def __init__(self, key: str, why: str) -> None:
        self.key = key
        super().__init__(f"corrupt object {key}: {why}")


class SourceChanged(S3fsvError):
    """The original object an imported file is kept in changed or went away after the import:
    its bytes are refused rather than served (``EIO`` on a mount, with the reason logged)."""

    errno = _errno.EIO
    exit_code = 7


class StoreUnavailable(S3fsvError):
    """The store could not be reached (network, endpoint, timeouts, server errors)."""

    errno = _errno.EIO
    exit_code = 8


class AccessDenied(S3fsvError):
    """Missing or rejected credentials, or a permission the store refused."""

    errno = _errno.EACCES
    exit_code = 9


class UnsupportedStore(S3fsvError):
    """The store lacks a capability s3fsv relies on (conditional writes) or has a foreign format."""

    errno = _errno.EOPNOTSUPP
    exit_code = 10


class ReadOnly(S3fsvError):
    """A write was attempted on something immutable (a commit, a tag, a read-only mount)."""

    errno = _errno.EROFS
    exit_code = 11


class IsADirectory(S3fsvError):
    errno = _errno.EISDIR
    exit_code = 2


class NotADirectory(S3fsvError):
    errno = _errno.ENOTDIR
    exit_code = 2


class NotEmpty(S3fsvError):
    errno = _errno.ENOTEMPTY
    exit_code = 2


class NotPermitted(S3fsvError):
    errno = _errno.EPERM
    exit_code = 2


class NotSupported(S3fsvError):
    """An operation s3fsv does not offer (extended attributes in a branch)."""

    errno = _errno.ENOTSUP


class CrossDevice(S3fsvError):
    errno = _errno.EXDEV
    exit_code = 2


class MountError(S3fsvError):
    """A mount could not be made, reached or stopped (mountpoint, FUSE, daemon)."""

    exit_code = 12
