"""``Type=notify``: a foreground mount tells the ``NOTIFY_SOCKET`` it is ready only once the
mount is usable, pings the watchdog, and says it is stopping when SIGTERM unmounts it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

from mounting import S3FSV, force_unmount, in_mount_table

from s3fsv.mount.notify import Notifier
from s3fsv.store.store import Store


def receive(sock: socket.socket) -> dict[str, str]:
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.splitlines() if "=" in line)


def test_foreground_mount_notifies_ready_watchdog_and_stopping(
    tmp_path: Path, env: dict[str, str]
) -> None:
    url = f"file://{tmp_path}/store"
    Store.init(url).create_repo("cams")
    mp = tmp_path / "mnt"
    mp.mkdir()
    address = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(address))
        sock.settimeout(60)
        proc = subprocess.Popen(
            [*S3FSV, "mount", url, str(mp), "--foreground"],
            env={**env, "NOTIFY_SOCKET": str(address), "WATCHDOG_USEC": "400000"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            ready = receive(sock)
            assert ready["READY"] == "1" and ready["MAINPID"] == str(proc.pid)
            assert os.path.ismount(mp) and (mp / "cams").is_dir()  # usable when told so
            assert "mounted" in ready["STATUS"]
            assert receive(sock) == {"WATCHDOG": "1"}
            assert receive(sock) == {"WATCHDOG": "1"}
            proc.send_signal(signal.SIGTERM)
            while (said := receive(sock)).get("WATCHDOG"):
                pass
            assert said["STOPPING"] == "1"
            assert proc.wait(timeout=60) == 0
            assert not in_mount_table(mp)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            force_unmount(mp, Path(env["XDG_STATE_HOME"]))


def test_notifier_abstract_socket_and_no_socket() -> None:
    name = f"s3fsv-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        assert Notifier("@" + name).send("READY=1")
        assert sock.recv(100) == b"READY=1"
    assert not Notifier(None).send("READY=1")  # outside systemd: nothing, no error
    assert not Notifier("/nonexistent/socket").send("READY=1")  # logged, never raised
