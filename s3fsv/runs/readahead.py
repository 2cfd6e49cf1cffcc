"""Reading a run's mounted inputs ahead of its command.

A command spends its first second or so starting (an interpreter, its imports) before it reads
an input; a mount is fresh, so its first read of each file would otherwise wait for the store
then. :class:`ReadAhead` reads the input files through the mount meanwhile, in name order (the
order of a sorted walk), so that the command finds them in the kernel's page cache (a pinned
commit is immutable: the kernel keeps what it read). It stops after ``budget`` bytes, when
the run ends, or at the first error (the command meets that error itself, if it reads there).
What is read ahead is only the inputs' PATHs: what the run record names as read.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from s3fsv.mount.embedded import CALLER_SIGNALS

log = logging.getLogger(__name__)

BUDGET = 256 * 1024 * 1024  # at most this much is read ahead per run
_BLOCK = 1024 * 1024


class ReadAhead:
    """Reads the files below ``roots`` in a thread of its own, until :meth:`stop`."""

    def __init__(self, roots: Sequence[Path], budget: int = BUDGET) -> None:
        self.roots = list(roots)
        self.budget = budget
        self.read = 0  # bytes read so far
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="s3fsv-run-readahead", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop reading and wait for the thread (it ends within one block's read)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        log.debug("read %d bytes of the inputs ahead of the command", self.read)

    def _run(self) -> None:
        # Signals are the main thread's to take (it passes them on to the command).
        signal.pthread_sigmask(signal.SIG_BLOCK, CALLER_SIGNALS)
        buf = bytearray(_BLOCK)
        try:
            for path in self._files():
                if self._stop.is_set() or self.read >= self.budget:
                    return
                self.read += self._read_file(path, buf)
        except OSError as err:
            log.debug("read-ahead stopped: %s", err)

    def _files(self) -> Iterator[str]:
        for root in self.roots:
            if root.is_file():
                yield str(root)
                continue
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames.sort()
                for name in sorted(filenames):
                    yield os.path.join(dirpath, name)

    def _read_file(self, path: str, buf: bytearray) -> int:
        done = 0
        with contextlib.suppress(FileNotFoundError), open(path, "rb", buffering=0) as fh:
            while not self._stop.is_set() and self.read + done < self.budget:
                n = fh.readinto(buf)
                if not n:
                    break
                done += n
        return done
