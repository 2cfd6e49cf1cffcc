"""The one place where s3fsv errors become the built-in ``OSError`` classes fsspec callers
catch (``FileNotFoundError``, ``FileExistsError``, ``PermissionError``...).

Each class below is both: a missing file raises :class:`FileNotFound`, which is an
``s3fsv.NotFound`` and a ``FileNotFoundError``, so ``except FileNotFoundError`` (fsspec,
pandas, pyarrow) and ``except s3fsv.NotFound`` both work. Errors with no built-in
counterpart (``Conflict``, ``StoreUnavailable``, ``CorruptObject``, ``UsageError``...) are
raised unchanged.
"""

from __future__ import annotations

from s3fsv.errors import (
    AccessDenied,
    AlreadyExists,
    IsADirectory,
    NotADirectory,
    NotEmpty,
    NotFound,
    NotPermitted,
    ReadOnly,
    S3fsvError,
)


class FileNotFound(NotFound, FileNotFoundError):
    """No such repo, ref, file or directory."""


class FileExists(AlreadyExists, FileExistsError):
    """Something is already there."""


class IsADir(IsADirectory, IsADirectoryError):
    """A file operation on a directory."""


class NotADir(NotADirectory, NotADirectoryError):
    """A directory operation on a file, or a path through a file."""


class DirectoryNotEmpty(NotEmpty, OSError):
    """``rmdir`` of a directory that holds something."""


class ReadOnlyRef(ReadOnly, PermissionError):
    """A write to a tag, a commit or ``REF~N``: only branches can be written."""


class Denied(AccessDenied, PermissionError):
    """The store refused the credentials or the permission."""


class Refused(NotPermitted, PermissionError):
    """An operation s3fsv does not allow here (removing a repo's root)."""


_BOTH: dict[type[S3fsvError], type[S3fsvError]] = {
    NotFound: FileNotFound,
    AlreadyExists: FileExists,
    IsADirectory: IsADir,
    NotADirectory: NotADir,
    NotEmpty: DirectoryNotEmpty,
    ReadOnly: ReadOnlyRef,
    AccessDenied: Denied,
    NotPermitted: Refused,
}


def as_os_error(err: S3fsvError) -> S3fsvError:
    """``err`` as the class that is also the matching built-in ``OSError`` (same message), or
    ``err`` itself when it is one already or has no such counterpart. A corrupt or missing
    stored object (``MissingObject``) stays what it is: it is not a missing file."""
    if isinstance(err, OSError):
        return err
    both = _BOTH.get(type(err))
    if both is None:
        return err
    out = both(str(err))
    out.errno = err.errno  # the OSError attribute, which the constructor left unset
    return out
