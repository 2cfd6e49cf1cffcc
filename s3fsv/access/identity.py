"""Who the current process acts as, when it uses the store's own credentials (not a gateway):
``S3FSV_PRINCIPAL``, else the login name. Recorded in grant changes and audit records."""

from __future__ import annotations

import getpass
import os
import socket

from s3fsv.version import __version__

TOOL = "s3fsv"


def current_principal() -> str:
    name = os.environ.get("S3FSV_PRINCIPAL", "").strip()
    if name:
        return name
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


def stamp() -> dict[str, str]:
    """The tool, version and host every record carries."""
    return {"tool": TOOL, "version": __version__, "host": socket.gethostname()}
