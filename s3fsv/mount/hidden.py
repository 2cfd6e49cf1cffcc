"""Files unlinked while still open, keyed by the path libfuse addresses them by.

With ``hard_remove`` off, libfuse turns the unlink of an open file into a rename to
``<dir>/.fuse_hidden<N>`` and keeps addressing the file by that path: in ``getattr`` and
``truncate``, and in the final ``unlink`` after the last descriptor is closed. Its path follows
the directory: when the directory is renamed, libfuse sends the new path; when the directory is
removed (or replaced by a rename), libfuse has no path for the file any more, passes a null path
to the calls that carry a file handle, fails the others itself, and never sends the final unlink.
``HiddenFiles`` mirrors exactly that, so its keys are always the paths libfuse would send.
"""

from __future__ import annotations

from typing import TypeVar

V = TypeVar("V")


class HiddenFiles(dict[str, V]):
    """Hidden path -> what the file was when it was unlinked. Not thread-safe: callers hold
    the overlay's lock."""

    def move_below(self, old: str, new: str) -> None:
        """A directory moved from ``old`` to ``new``: re-key the hidden files below it (at any
        depth) to the same place below ``new``."""
        prefix = old + "/"
        for path in [p for p in self if p.startswith(prefix)]:
            self[new + path[len(old) :]] = self.pop(path)

    def forget_below(self, path: str) -> None:
        """The directory at ``path`` is gone: forget the hidden files in it, which libfuse can
        no longer address by path (their descriptors keep working through the file handle)."""
        prefix = path + "/"
        for p in [p for p in self if p.startswith(prefix)]:
            del self[p]
