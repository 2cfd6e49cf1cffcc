"""A read-only mount served by threads of the calling process, for a caller that needs it only
while it waits for something else (``s3fsv run`` while its command runs).

Compared with a daemon (``s3fsv mount``), nothing is started or imported a second time: the
mount is up as soon as the store is opened and the kernel has accepted the session. It has no
control socket and no pid file, so no other command finds it or uses it; it is this
process's alone. Should the process die without unmounting, the mount is taken away for it
(``auto_unmount`` in ``fuse.mount``) rather than left behind dead.

Signals stay the caller's: the serving threads block SIGINT, SIGTERM, SIGHUP, SIGQUIT and
SIGCHLD (a signal sent to the process reaches the thread that waits for it), and the
handlers libfuse installs where none was set are replaced by the caller's own once the
mount is up (by :meth:`EmbeddedMount.start` in the main thread, else by
:func:`reclaim_signals`, which the main thread calls then).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from s3fsv.errors import MountError

log = logging.getLogger(__name__)

READY_TIMEOUT = 30.0
# The signals a caller's main thread waits for: helper threads block them so they reach it.
CALLER_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGCHLD}


class EmbeddedMount:
    """``store_url`` (``REPO@COMMIT`` of it when ``repo`` and ``commit`` are given: an
    immutable snapshot, which the kernel may cache for as long as it likes) mounted
    read-only at ``mountpoint`` (an empty directory) by this process. Call :meth:`start`,
    then :meth:`stop` (also after a failed start)."""

    def __init__(
        self,
        store_url: str,
        mountpoint: Path,
        *,
        repo: str | None = None,
        commit: str | None = None,
        endpoint_url: str | None = None,
        s3_options: dict[str, Any] | None = None,
    ) -> None:
        self.url = store_url.rstrip("/")
        self.mountpoint = mountpoint
        self.repo, self.commit = repo, commit
        self._endpoint = endpoint_url
        self._s3 = dict(s3_options or {})
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._fs: Any = None
        self._store: Any = None

    @property
    def source(self) -> str:
        """What is mounted, as ``s3fsv mount`` would name it."""
        return f"{self.url}/{self.repo}@{self.commit}" if self.repo else self.url

    def start(self) -> None:
        """Open the store, mount it and return once the mount is usable; ``MountError`` (or
        the store's own error) when it cannot be."""
        from s3fsv.mount.daemon import make_filesystem, mount_name, store_for_mount

        text, pin = self.url, None
        if self.repo is not None:
            text, pin = f"{self.url}/{self.repo}@{self.commit}", self.commit
        t = time.monotonic()
        self._store, source = store_for_mount(text, None, self._endpoint, pin, **self._s3)
        log.debug("store of the mount opened in %.2f s", time.monotonic() - t)
        options = SimpleNamespace(
            cache_dir=None, cache_size="10G", ref_ttl=5.0, read_only=True, rw=False,
            warm_probe=False,
        )  # fmt: skip
        self._fs = make_filesystem(options, self._store, source)
        name = mount_name(source, pinned=self._fs.immutable)
        log.debug("filesystem made after %.2f s", time.monotonic() - t)
        self._thread = threading.Thread(
            target=self._serve, args=(name,), name="s3fsv-embedded-mount", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(READY_TIMEOUT):
            raise MountError(f"mount of {self.mountpoint} not ready in {READY_TIMEOUT:.0f} s")
        if self._error is not None:
            raise self._error
        reclaim_signals()
        log.debug("mounted %s at %s in this process after %.2f s", self.source, self.mountpoint,
                  time.monotonic() - t)  # fmt: skip

    def _serve(self, name: str) -> None:
        from s3fsv.mount.fuse import mount

        signal.pthread_sigmask(signal.SIG_BLOCK, CALLER_SIGNALS)  # libfuse's workers inherit it
        try:
            mount(
                self._fs,
                str(self.mountpoint),
                ref_ttl=5.0,
                fsname=name,
                on_ready=self._ready.set,
                auto_unmount=True,
            )
        except BaseException as err:
            self._error = err
        finally:
            self._ready.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Unmount (``MountError`` saying "busy" while a process holds a file there: try
        again, or :func:`detach`), wait for the serving thread, close the store."""
        if self._thread is not None and self._thread.is_alive() and self._error is None:
            from s3fsv.mount.daemon import fusermount_unmount

            failure = fusermount_unmount(self.mountpoint)
            if failure is not None and os.path.ismount(self.mountpoint):
                raise failure
            self._thread.join(timeout)
        self.close()

    def detach(self) -> None:
        """Unmount lazily (the kernel finishes once nothing holds a file there), then close."""
        subprocess.run(["fusermount3", "-uz", str(self.mountpoint)], capture_output=True)
        if self._thread is not None:
            self._thread.join(5.0)
        self.close()

    def close(self) -> None:
        """Release the filesystem and the store (once the thread no longer serves)."""
        if self._thread is not None and self._thread.is_alive():
            return  # still serving (a lazy detach pending): the process's end releases them
        fs, store, self._fs, self._store = self._fs, self._store, None, None
        if fs is not None:
            fs.close()
        if store is not None:
            store.close()


def reclaim_signals() -> None:
    """Give SIGHUP, SIGTERM and SIGINT back to the handlers Python has for them: libfuse sets
    its own (which would end the mount) on those that had none. Only the main thread can:
    elsewhere this does nothing, and the main thread should call it once the mount is up."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
        handler = signal.getsignal(sig)
        if handler is not None:
            signal.signal(sig, handler)
