"""Where settings come from: command-line flags, then environment, then the config file.

The config file is ``$XDG_CONFIG_HOME/s3fsv/config.toml`` (default ``~/.config/s3fsv``), e.g.::

    store = "s3://my-bucket/data"
    endpoint_url = "http://127.0.0.1:8333"

State (logs, staging, control sockets) lives under ``$XDG_STATE_HOME/s3fsv`` and the shared read
cache under ``$XDG_CACHE_HOME/s3fsv``; both are created 0700.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from s3fsv.errors import UsageError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]


def _xdg(var: str, fallback: str) -> Path:
    # The XDG spec: a relative value is invalid and ignored. (A daemon runs from /, so a
    # relative one would name another place there.)
    value = os.environ.get(var)
    return Path(value) if value and os.path.isabs(value) else Path.home() / fallback


def config_path() -> Path:
    return _xdg("XDG_CONFIG_HOME", ".config") / "s3fsv" / "config.toml"


def state_dir() -> Path:
    return private_dir(_xdg("XDG_STATE_HOME", ".local/state") / "s3fsv")


def cache_dir() -> Path:
    return _xdg("XDG_CACHE_HOME", ".cache") / "s3fsv"


def private_dir(path: Path) -> Path:
    """Create ``path`` if needed and make sure it is 0700. Missing parents are made 0700 too
    (``mkdir(parents=True)`` would give them the umask's mode)."""
    missing = []
    parent = path
    while not parent.exists() and parent != parent.parent:
        missing.append(parent)
        parent = parent.parent
    for directory in reversed(missing):
        directory.mkdir(mode=0o700, exist_ok=True)
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)
    return path


CONFIG_KEYS = ("store", "endpoint_url")


def load_config() -> dict[str, Any]:
    """The config file's settings; a missing file is none. An unknown key or a value that is
    not a string is refused, so that a misspelt setting is not silently ignored."""
    path = config_path()
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise UsageError(f"cannot read config file {path}: {err}") from None
    for key, value in data.items():
        if key not in CONFIG_KEYS:
            known = ", ".join(CONFIG_KEYS)
            raise UsageError(f"unknown setting {key!r} in {path} (known: {known})")
        if not isinstance(value, str):
            raise UsageError(f"setting {key!r} in {path} must be a string")
    return data


def store_url(flag: str | None) -> str:
    """The store URL from ``--store``, ``S3FSV_STORE`` or the config file, in that order. An
    empty ``--store`` is a mistake (an unset variable in a script), not a request to fall back."""
    if flag is not None and not flag.strip():
        raise UsageError("--store is empty: give a store URL such as s3://bucket/prefix")
    url = flag or os.environ.get("S3FSV_STORE") or load_config().get("store")
    if not url:
        raise UsageError(
            "no store given: use --store URL, set S3FSV_STORE, "
            f'or put store = "..." in {config_path()}'
        )
    if str(url).startswith("memory://"):
        raise UsageError(
            "a memory:// store lives inside one process and is gone when it exits: "
            "use file:///PATH or s3://BUCKET/PREFIX"
        )
    return str(url)


def endpoint_url(flag: str | None) -> str | None:
    value = flag or os.environ.get("AWS_ENDPOINT_URL") or load_config().get("endpoint_url")
    if value and not re.match(r"https?://[^/\s]+", str(value)):
        raise UsageError(f"endpoint URL {value!r} must start with http:// or https://")
    return str(value) if value else None


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """``10G``, ``512MiB``, ``1000000`` -> bytes (binary multiples)."""
    m = _SIZE.match(text)
    if not m:
        raise UsageError(f"bad size {text!r}: use e.g. 512M or 20G")
    factor = 1024 ** " kmgt".index((m.group(2) or " ").lower())
    size = int(float(m.group(1)) * factor)
    if size <= 0:
        raise UsageError(f"bad size {text!r}: a cache needs room (e.g. 512M or 20G)")
    return size


_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*")
_SECONDS_PER = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``30m``, ``1.5h``, ``7d`` -> seconds: a number, whole or decimal, of
    seconds, minutes, hours or days (no unit: seconds), surrounding spaces allowed. Every
    command that takes a span (``gc --grace``, ``access token create --expires``, ``audit log
    --since``) reads it here; a command that needs it positive says so itself."""
    m = _DURATION.fullmatch(text)
    if not m:
        raise UsageError(f"bad duration {text!r}: use e.g. 90s, 30m, 12h or 7d")
    return float(m.group(1)) * _SECONDS_PER[m.group(2)]
