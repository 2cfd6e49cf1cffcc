"""A watcher process that takes a mount away should the process serving it die without doing so:
what libfuse's ``auto_unmount`` asks fusermount3 to do, for where it cannot be asked for (a
libfuse newer than the installed fusermount3, which refuses the option).

The watcher is a shell waiting to read a line from a pipe whose only writer is the serving
process. :meth:`UnmountGuard.release` writes ``done`` (the mount is gone, by this process's own
unmount) and the watcher ends. Any other end of the pipe (the serving process killed, even
with SIGKILL) makes it detach the mount lazily with ``fusermount3 -uz``. It ignores the
signals a terminal or a service manager sends to a whole process group (it is in a session of
its own as well), so a Ctrl-C that stops the serving process leaves it to do its job; it holds
no file below the mount point (it runs in ``/``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import threading

log = logging.getLogger(__name__)

_SCRIPT = 'trap "" HUP INT QUIT TERM; read -r said; [ "$said" = done ] || exec fusermount3 -uz "$1"'


class UnmountGuard:
    """Guards the mount at ``mountpoint`` (an absolute path) from the moment :meth:`start`
    has returned until :meth:`release`."""

    def __init__(self, mountpoint: str) -> None:
        self.mountpoint = mountpoint
        self._write: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._released = False

    def start(self) -> None:
        """Start the watcher; a failure to start one is logged, not raised (the mount works
        without it)."""
        with self._lock:
            if self._proc is not None or self._released:
                return
            if shutil.which("fusermount3") is None:
                log.warning("no fusermount3: %s stays should s3fsv die", self.mountpoint)
                return
            read, write = os.pipe()  # (not inherited by this process's other children)
            try:
                self._proc = subprocess.Popen(
                    ["/bin/sh", "-c", _SCRIPT, "s3fsv-unmount-guard", self.mountpoint],
                    stdin=read,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    cwd="/",
                    start_new_session=True,
                )
            except (OSError, subprocess.SubprocessError) as err:
                os.close(write)
                log.warning("no watcher to unmount %s should s3fsv die: %s", self.mountpoint, err)
                return
            finally:
                os.close(read)
            self._write = write

    def release(self) -> None:
        """The mount is gone (or was never made): end the watcher without it unmounting
        anything. Idempotent."""
        with self._lock:
            self._released = True
            write, proc, self._write, self._proc = self._write, self._proc, None, None
        if write is not None:
            with contextlib.suppress(OSError):
                os.write(write, b"done\n")
            os.close(write)
        if proc is not None:
            proc.wait()
