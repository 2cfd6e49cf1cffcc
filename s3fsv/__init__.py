"""s3fsv: versioned S3 prefixes as repos, mounted as a directory tree or used from Python.

    import s3fsv
    store = s3fsv.open_store("s3://bucket/data")      # or S3FSV_STORE / the config file
    cams = store.repo("cams")
    pinned = cams.resolve("main")                      # one snapshot, for every read below
    data = cams.read_bytes(pinned, "images/0001.jpg")  # verified against its SHA-256
    with cams.transaction("main", message="labels") as tx:
        tx.write("labels/0001.json", b"{}")          # one commit, with provenance, on exit

Errors are :class:`s3fsv.errors.S3fsvError` subclasses, never a boto3 exception. docs/api.md
documents every name.

``open_store`` here is ``s3fsv.api.open_store`` with the store's audit trail attached, and it
also opens a store through an access gateway with no cloud credentials at all::

    store = s3fsv.open_store(gateway="https://gw.example.com", token_file="~/.s3fsv-token")
"""

from s3fsv.access.connect import open_store
from s3fsv.api import (
    CommitInfo,
    Diff,
    EntryInfo,
    FileRef,
    Repo,
    RepoFile,
    Store,
    Transaction,
)
from s3fsv.errors import Conflict, NotFound, S3fsvError
from s3fsv.version import __version__

__all__ = [
    "CommitInfo",
    "Conflict",
    "Diff",
    "EntryInfo",
    "FileRef",
    "NotFound",
    "Repo",
    "RepoFile",
    "S3fsvError",
    "Store",
    "Transaction",
    "__version__",
    "open_store",
]
