"""``s3fsv://REPO[@REF]/PATH``: an fsspec filesystem over the Python API, registered through
the ``fsspec.specs`` entry point, so ``fsspec.open("s3fsv://cams@v1/data.csv")``,
``pandas.read_csv``, ``pyarrow.dataset`` and ``xarray.open_dataset`` read s3fsv repos.
docs/api.md (section "fsspec") says what it does and which of fsspec's tests it passes."""

from s3fsv.fsspec.errors import (
    Denied,
    DirectoryNotEmpty,
    FileExists,
    FileNotFound,
    IsADir,
    NotADir,
    ReadOnlyRef,
    Refused,
)
from s3fsv.fsspec.filesystem import S3fsvFileSystem
from s3fsv.fsspec.writing import S3fsvTransaction

__all__ = [
    "Denied",
    "DirectoryNotEmpty",
    "FileExists",
    "FileNotFound",
    "IsADir",
    "NotADir",
    "ReadOnlyRef",
    "Refused",
    "S3fsvFileSystem",
    "S3fsvTransaction",
]
