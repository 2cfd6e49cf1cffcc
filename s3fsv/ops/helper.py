"""The mount helper that lets fstab entries and systemd ``.mount`` units of type
``fuse.s3fsv`` mount: ``/sbin/mount.fuse.s3fsv``, a short script that runs *this*
installation of s3fsv. ``mount(8)`` runs helpers with a reset ``PATH``, so an ``s3fsv`` in a
virtualenv would not be found by name (``mount.fuse`` fails with ``s3fsv: not found``)."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from s3fsv.errors import AlreadyExists, NotPermitted
from s3fsv.mount.daemon import s3fsv_command

HELPER_PATH = Path("/sbin/mount.fuse.s3fsv")
MARKER = "# s3fsv mount helper, written by `s3fsv setup mount-helper`"
SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def helper_script() -> str:
    """The helper for this installation: it runs ``s3fsv fstab-mount`` with mount(8)'s
    arguments, with a sane ``PATH`` for the programs the daemon runs (``fusermount3``)."""
    command = " ".join(shlex.quote(part) for part in s3fsv_command())
    return (
        "#!/bin/sh\n"
        f"{MARKER}\n"
        "# mount(8) runs it for fstab entries and .mount units of type fuse.s3fsv.\n"
        f'PATH="${{PATH:-{SAFE_PATH}}}"\n'
        "export PATH\n"
        f'exec {command} fstab-mount "$@"\n'
    )


def ours(path: Path) -> bool:
    """Whether ``path`` is a helper this command wrote (any installation's)."""
    try:
        with open(path, errors="replace") as fh:
            return MARKER in fh.read(4096)
    except OSError:
        return False


def install(path: Path = HELPER_PATH, *, force: bool = False) -> Path:
    """Write the helper to ``path`` (0755, atomically). Another program's file there is left
    alone unless ``force``."""
    if path.exists() and not ours(path) and not force:
        raise AlreadyExists(
            f"{path} exists and was not written by s3fsv: pass --force to replace it"
        )
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o755)
        with os.fdopen(fd, "w") as fh:
            fh.write(helper_script())
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)
    except PermissionError:
        raise NotPermitted(f"cannot write {path}: run s3fsv setup mount-helper as root") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def uninstall(path: Path = HELPER_PATH) -> bool:
    """Remove the helper at ``path`` if s3fsv wrote it; whether one was removed."""
    if not ours(path):
        return False
    try:
        path.unlink()
    except PermissionError:
        raise NotPermitted(f"cannot remove {path}: run as root") from None
    return True
