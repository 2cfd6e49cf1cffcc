"""fstab entries of type ``fuse.s3fsv``: what ``mount(8)`` passes its helper, turned into an
``s3fsv mount`` command line.

``mount(8)`` runs ``/sbin/mount.fuse.s3fsv SOURCE MOUNTPOINT [-sfnvrw] [-N NS] [-o OPTIONS]
[-t TYPE]`` with the entry's options (less those only it uses, such as ``noauto`` or
``x-systemd.*``). Every option of ``s3fsv mount`` has an ``-o`` spelling (:data:`VALUED`,
:data:`FLAGS`); options that concern ``mount(8)`` or systemd are accepted and left to them
(:data:`LEFT_TO_MOUNT`); anything else fails naming the option, unless ``-s`` (sloppy) asks
to ignore what is unknown.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from s3fsv.config import parse_size
from s3fsv.errors import UsageError
from s3fsv.mount.options import parse_commit_on, parse_listen_address

LOG_LEVELS = ("debug", "info", "warning", "error")


def _seconds(text: str) -> None:
    try:
        ok = float(text) > 0 and float(text) != float("inf")
    except ValueError:
        ok = False
    if not ok:
        raise UsageError(f"{text!r} is not a positive number of seconds")


def _level(text: str) -> None:
    if text not in LOG_LEVELS:
        raise UsageError(f"{text!r} is not one of {', '.join(LOG_LEVELS)}")


def _nonempty(text: str) -> None:
    if not text:
        raise UsageError("it needs a value")


#: ``-o NAME=VALUE`` -> the ``s3fsv mount`` option it stands for, and a check of the value.
VALUED: dict[str, tuple[str, Callable[[str], object]]] = {
    "cache_dir": ("--cache-dir", _nonempty),
    "cache_size": ("--cache-size", parse_size),
    "ref_ttl": ("--ref-ttl", _seconds),
    "commit_on": ("--commit-on", parse_commit_on),
    "metrics_addr": ("--metrics-addr", parse_listen_address),
    "store": ("--store", _nonempty),
    "endpoint_url": ("--endpoint-url", _nonempty),
    "log_level": ("--log-level", _level),
}
#: ``-o NAME`` -> the ``s3fsv mount`` flag. ``rw`` is not ``--rw``: mount(8) passes ``rw`` to
#: every entry that does not say ``ro``, so a REPO@BRANCH entry is made writable by ``writable``.
FLAGS = {
    "ro": "--read-only",
    "read_only": "--read-only",
    "writable": "--rw",
    "allow_other": "--allow-other",
}
#: Options that mount(8) or systemd act on (``nosuid`` and ``nodev`` hold for every s3fsv
#: mount anyway): accepted, nothing to pass on. Others, such as ``noexec``, are refused
#: rather than silently not applied.
LEFT_TO_MOUNT = frozenset(
    {"rw", "defaults", "auto", "noauto", "_netdev", "nofail", "user", "nouser", "users"}
    | {"owner", "group", "nosuid", "nodev"}
)
#: Options only the helper takes.
HELPER_ONLY = ("env_file",)
REFUSED = {
    "foreground": "the helper must return once the mount is usable: for a daemon in the "
    "foreground, use examples/systemd/s3fsv-mount@.service",
}


@dataclass
class HelperCall:
    """One run of the helper, as ``mount(8)`` made it."""

    source: str
    mountpoint: str
    options: list[str] = field(default_factory=list)
    sloppy: bool = False  # -s: ignore options this helper does not know
    fake: bool = False  # -f: check and show what would run, mount nothing
    verbose: bool = False  # -v


def split_options(text: str) -> list[str]:
    """``a,b=c,,d`` -> ``["a", "b=c", "d"]``."""
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_helper_args(argv: Sequence[str]) -> HelperCall:
    """``SOURCE MOUNTPOINT [-sfnvrw] [-N NS] [-o OPTS] [-t TYPE]`` in any order, as
    mount(8) and people call helpers."""
    positional: list[str] = []
    options: list[str] = []
    call = HelperCall("", "")
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg in ("-o", "-t", "-N"):
            if not args:
                raise UsageError(f"{arg} needs a value")
            value = args.pop(0)
            if arg == "-o":
                options += split_options(value)
            elif arg == "-N":
                raise UsageError("-N (another mount namespace) is not supported")
            elif value not in ("fuse.s3fsv", "s3fsv"):
                raise UsageError(f"this helper mounts type fuse.s3fsv, not {value}")
        elif arg.startswith("-o") and len(arg) > 2:
            options += split_options(arg[2:])
        elif arg.startswith("-") and len(arg) > 1 and set(arg[1:]) <= set("sfnvrw"):
            call.sloppy |= "s" in arg
            call.fake |= "f" in arg
            call.verbose |= "v" in arg
            options += ["ro"] if "r" in arg else []
        elif arg.startswith("-") and len(arg) > 1:
            raise UsageError(f"unknown helper flag {arg}")
        else:
            positional.append(arg)
    if len(positional) != 2:
        raise UsageError("usage: SOURCE MOUNTPOINT [-o OPTIONS] (as mount(8) runs a helper)")
    call.source, call.mountpoint = positional
    call.options = options
    return call


def translate(call: HelperCall) -> tuple[list[str], dict[str, str], list[str]]:
    """The ``s3fsv mount`` arguments for ``call``, the environment variables its
    ``env_file`` sets, and the unknown options a sloppy call ignored. A bad option raises
    ``UsageError`` naming it."""
    argv = ["mount", call.source, call.mountpoint]
    env: dict[str, str] = {}
    ignored: list[str] = []
    for option in call.options:
        name, has_value, value = option.partition("=")
        if name.startswith("x-") or name == "comment":
            continue  # notes for other tools (x-systemd.*, comment=...)
        if name in REFUSED:
            raise UsageError(f"option {name} is not for fstab: {REFUSED[name]}")
        if name in VALUED:
            flag, check = VALUED[name]
            if not has_value or not value:
                raise UsageError(f"option {name} needs a value: {name}=...")
            try:
                check(value)
            except UsageError as err:
                raise UsageError(f"bad option {option}: {err}") from None
            argv += [flag, value]
        elif name in FLAGS or name in LEFT_TO_MOUNT:
            if has_value:
                raise UsageError(f"option {name} takes no value (got {option})")
            argv += [FLAGS[name]] if name in FLAGS and FLAGS[name] not in argv else []
        elif name == "env_file":
            if not value:
                raise UsageError("option env_file needs a value: env_file=FILE")
            env.update(read_env_file(Path(value)))
        elif call.sloppy:
            ignored.append(option)
        else:
            raise UsageError(
                f"unknown option {name!r} (s3fsv takes {', '.join(sorted([*VALUED, *FLAGS]))}, "
                "env_file, and mount(8)'s own such as _netdev and nofail)"
            )
    return argv, env, ignored


def read_env_file(path: Path) -> dict[str, str]:
    """``VAR=value`` lines (blank lines and ``#`` comments skipped, one pair of quotes around a
    value removed). The file holds credentials: one that others may read is refused."""
    try:
        st = os.stat(path)
        text = path.read_text()
    except OSError as err:
        raise UsageError(f"cannot read env_file {path}: {err.strerror}") from None
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise UsageError(f"env_file {path} may be read by others: chmod 600 it (credentials)")
    out = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, eq, value = line.removeprefix("export ").partition("=")
        name = name.strip()
        if not eq or not name.replace("_", "a").isalnum() or name[0].isdigit():
            raise UsageError(f"{path}:{n}: not a VAR=value line")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[name] = value
    return out
