"""systemd's service notification protocol (``sd_notify(3)``), for ``Type=notify`` units.

A foreground daemon started by systemd finds ``NOTIFY_SOCKET`` in its environment (a unix
datagram socket; a leading ``@`` names one in the abstract namespace) and sends it
``READY=1`` once the mount is usable, ``STOPPING=1`` when it starts to unmount, ``STATUS=...``
lines for ``systemctl status``, and, where the unit sets ``WatchdogSec=``, ``WATCHDOG=1`` at
half that interval for as long as the mount answers a ``stat`` of its root: a hung mount
stops the pings and systemd restarts it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class Notifier:
    """Sends notifications to ``address``; does nothing when it is None. Never raises: a
    service manager that went away must not take the mount down."""

    def __init__(self, address: str | None, watchdog_usec: int = 0) -> None:
        self.address = address
        self.watchdog = watchdog_usec / 1e6 if watchdog_usec > 0 else 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_environment(cls) -> Notifier:
        """The notifier systemd set up for this process, removing its variables from the
        environment so that programs this one starts do not notify in its name."""
        address = os.environ.pop("NOTIFY_SOCKET", None) or None
        usec, pid = os.environ.pop("WATCHDOG_USEC", ""), os.environ.pop("WATCHDOG_PID", "")
        try:
            watchdog = int(usec) if not pid or int(pid) == os.getpid() else 0
        except ValueError:
            watchdog = 0
        return cls(address, watchdog)

    def send(self, *lines: str) -> bool:
        if not self.address:
            return False
        target = self.address
        if target.startswith("@"):
            target = "\0" + target[1:]
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.connect(target)
                sock.sendall("\n".join(lines).encode())
        except OSError as err:
            log.warning("cannot notify the service manager at %s: %s", self.address, err)
            return False
        return True

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def stopping(self, status: str) -> None:
        self.stop_watchdog()
        self.send("STOPPING=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def start_watchdog(self, alive: Callable[[], object]) -> None:
        """Ping every half watchdog interval, each time after ``alive()`` returned (it may
        block: a mount that hangs must stop the pings)."""
        if not self.address or not self.watchdog or self._thread is not None:
            return

        def run() -> None:
            while not self._stop.wait(self.watchdog / 2):
                try:
                    alive()
                except OSError as err:  # answered, with an error: the daemon is not hung
                    log.debug("watchdog check: %s", err)
                if not self._stop.is_set():
                    self.send("WATCHDOG=1")

        self._thread = threading.Thread(target=run, name="s3fsv-watchdog", daemon=True)
        self._thread.start()

    def stop_watchdog(self) -> None:
        self._stop.set()
        self._thread = None
