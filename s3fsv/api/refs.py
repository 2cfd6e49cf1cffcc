"""Uploaded content that no commit holds yet, passed between processes as JSON."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from s3fsv.errors import CorruptObject
from s3fsv.store.objects import TreeEntry


@dataclass(frozen=True)
class FileRef:
    """A file (or symlink) whose content is stored in a repo's objects but not yet placed in a
    commit: what ``Repo.upload`` returns and ``Transaction.put`` places. Its JSON form
    (``to_json``/``from_json``, the tree-entry encoding of docs/format.md section 4.1) lets
    one process upload and another commit, as pipeline workers and their coordinator do.
    Content that stays unplaced is garbage, collected like any unreferenced object."""

    entry: TreeEntry

    @property
    def kind(self) -> str:
        return self.entry.kind

    @property
    def size(self) -> int:
        return self.entry.size

    @property
    def sha256(self) -> str:
        return self.entry.sha256

    def to_json(self) -> dict[str, Any]:
        return self.entry.to_json()

    @classmethod
    def from_json(cls, data: Any) -> FileRef:
        """The ref ``to_json`` gave; ``CorruptObject`` for anything else."""
        entry = TreeEntry.from_json(data, "file reference")
        if entry.kind == "dir":
            raise CorruptObject("file reference", "a directory is not a file reference")
        return cls(entry)
