"""The Python API: open a store, read any commit through the verified cache, and commit
changes as transactions. ``import s3fsv`` offers the same names. Sits on ``s3fsv.store``
only; the capabilities above it reach the store through these names."""

from s3fsv.api.files import RepoFile
from s3fsv.api.refs import FileRef
from s3fsv.api.repo import CommitInfo, Diff, EntryInfo, Repo
from s3fsv.api.store import Store, open_store
from s3fsv.api.transaction import Transaction

__all__ = [
    "CommitInfo",
    "Diff",
    "EntryInfo",
    "FileRef",
    "Repo",
    "RepoFile",
    "Store",
    "Transaction",
    "open_store",
]
