"""The mount-side commands of ``s3fsv``: ``mount``, ``unmount``, and ``commit``, ``status`` and
``discard``, which reach the daemon owning a mount through its control socket.

This module must not import ``s3fsv.cli.app``, which imports it: ``main`` merges
:data:`COMMANDS` into its command table instead.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from s3fsv.access.connect import attach_store, reach
from s3fsv.cli.parser import Commands
from s3fsv.config import parse_size
from s3fsv.errors import MountError, S3fsvError, StoreUnavailable, UsageError
from s3fsv.mount.mounttable import mount_table
from s3fsv.store.address import shown_path
from s3fsv.store.objects import is_object_id

COMMANDS = Commands()
_command = COMMANDS.register


def _print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


# -- finding the mount a path belongs to -----------------------------------------------------


def find_mount(path: str) -> tuple[Path, str]:
    """(mount root, absolute path inside the mount) for a path in an s3fsv mount."""
    from s3fsv.mount.runtime_files import pid_file

    table = mount_table()
    tried = []
    for candidate in (os.path.abspath(path), os.path.realpath(path)):
        if candidate in tried:
            continue
        tried.append(candidate)
        root = Path(candidate)
        # The table, unlike ismount, also shows a dead mount (its root fails stat).
        while root != root.parent and (
            str(root) not in table if table is not None else not os.path.ismount(root)
        ):
            root = root.parent
        if table is not None:
            known = str(root) in table and table[str(root)].is_s3fsv
        else:
            known = pid_file(root).exists()
        if known:
            inner = os.path.relpath(candidate, root)
            return root, "/" if inner == "." else "/" + inner
    if not os.path.lexists(path):
        raise UsageError(f"{path}: no such file or directory")
    raise UsageError(f"{path} is not inside an s3fsv mount")


# -- mount and unmount -----------------------------------------------------------------------


@_command("mount")
def cmd_mount(args: argparse.Namespace) -> int:
    from s3fsv.mount import daemon, options

    parse_size(args.cache_size)
    policy = options.parse_commit_on(args.commit_on)
    if args.metrics_addr is not None:
        options.parse_listen_address(args.metrics_addr)
    if args.read_only and policy.kind != "manual":
        raise UsageError("--commit-on has nothing to commit on a --read-only mount")
    if args.read_only and args.rw:
        raise UsageError("--read-only and --rw contradict each other")
    if "://" in args.mountpoint:
        raise UsageError(
            f"{args.mountpoint} looks like a store URL: the order is s3fsv mount STORE MOUNTPOINT"
        )
    daemon.check_fuse()
    daemon.check_mountpoint(args.mountpoint)
    daemon.check_cache_dir(args.cache_dir)
    with contextlib.suppress(UsageError):
        outer, inner = find_mount(args.mountpoint)
        # Nested mounts tie the two daemons' unmounts and the outer branch's staging together.
        # (The mountpoint itself, when it holds a dead mount, is no nesting: it gets replaced.)
        if inner != "/":
            raise MountError(
                f"mountpoint {os.path.abspath(args.mountpoint)} is inside the s3fsv mount "
                f"{outer}: choose a directory outside it"
            )
    if args.pinned_commit and not (args.daemonized and is_object_id(args.pinned_commit)):
        raise UsageError("--pinned-commit is for the daemon a pinned mount starts")
    # The daemon of a pinned mount serves the commit the command resolved and printed.
    text, endpoint, s3, gateway = _through_gateway(args)
    store, source = daemon.store_for_mount(text, args.store, endpoint, args.pinned_commit, **s3)
    attach_store(store.events, store.backend, gateway)  # its changes go to the audit trail
    pinned = bool(args.pinned_commit) or (
        source.ref is not None and source.ref not in store.repo(source.repo or "").refs.branches()
    )
    if args.rw and (source.repo is None or source.ref is None or pinned):
        raise UsageError("--rw makes a REPO@BRANCH mount writable; this source is not a branch")
    if source.ref is not None and not args.rw and policy.kind != "manual":
        raise UsageError(
            "--commit-on has nothing to commit here: a REPO@REF mount is read-only "
            "(a REPO@BRANCH mount takes --rw)"
        )
    writable = not args.read_only and (source.ref is None or args.rw)
    leftovers = _leftover_staging(store.url, source.repo, source.ref) if writable else []
    if args.foreground:
        daemon.check_mountpoint(args.mountpoint, replace_dead=True)
        _tell_leftovers(leftovers)
        return daemon.serve(args, store, source, args.mountpoint)
    # A ref such as main~1 could name another commit by the time the daemon resolves it.
    pin = ["--pinned-commit", source.commit] if pinned and source.commit else []
    here = os.path.abspath(args.mountpoint)
    daemon.start([*args.argv, *pin], args.mountpoint, foreground=False)
    shown = args.source
    if pinned and source.commit and source.commit != (source.ref or "").lower():
        shown += f" (commit {source.commit})"  # in full: what a rerun pins to
    print(f"mounted {shown} at {here}", file=sys.stderr)
    _tell_leftovers(leftovers)
    return 0


def _through_gateway(args: argparse.Namespace) -> tuple[str, str | None, dict[str, Any], Any]:
    """(source, endpoint, S3 options, gateway client or None): with ``--gateway``, the
    store and endpoint it names (a bare REPO[@REF] is in its store), and its refreshing
    credentials."""
    if not (args.gateway or os.environ.get("S3FSV_GATEWAY")):
        return args.source, args.endpoint_url, {}, None
    way = reach(None, None, args.gateway, args.token_file)
    text = args.source
    if "://" not in text:
        text = f"{way.url}/{text}"
    elif text.rstrip("/") != way.url and not text.startswith(way.url + "/"):
        raise UsageError(f"the gateway serves {way.url}, not {args.source}")
    return text, way.endpoint_url, way.s3, way.client


def _leftover_staging(
    url: str, repo: str | None, branch: str | None
) -> list[tuple[str, list[tuple[int, int]]]]:
    """(REPO@BRANCH, [(staged paths, interrupted files) per slot]) of branches this mount will
    show, with writes that earlier mounts of them staged and did not commit."""
    from s3fsv.config import state_dir
    from s3fsv.mount.staging import leftover_staging

    found = leftover_staging(state_dir() / "staging", url, repo)
    return [(f"{r}@{b}", counts) for r, b, counts in found if branch in (None, b)]


def _tell_leftovers(leftovers: list[tuple[str, list[tuple[int, int]]]]) -> None:
    for branch, ((shown, interrupted), *others) in leftovers:
        # One mount shows one staging slot: those of other earlier concurrent mounts wait.
        more = (
            f"; {sum(n for n, _ in others)} more in {len(others)} other staging slot(s) are "
            "shown by a mount running alongside this one, or by the next once these are "
            "committed or discarded"
            if others
            else ""
        )
        if interrupted:
            more += (
                f"; {interrupted} file(s) were open for writing when that mount stopped and may "
                "be incomplete (status names them; commits refuse them until written again)"
            )
        print(
            f"s3fsv: {branch} has {shown} path(s) staged by an earlier mount, shown again here "
            f"(s3fsv status lists them; commit or discard){more}",
            file=sys.stderr,
        )


@_command("unmount")
def cmd_unmount(args: argparse.Namespace) -> int:
    from s3fsv.mount import daemon

    return daemon.unmount(args.mountpoint)


# -- staged writes ---------------------------------------------------------------------------


def _ask(root: Path, inner: str, shown: str, payload: dict[str, Any], **kw: Any) -> Any:
    """``control.request``, with the daemon's name for the path (``/cams/branch/main``, from
    the mount root) replaced in error messages by the path as the user gave it."""
    from s3fsv.mount.control import request

    try:
        return request(root, payload, **kw)
    except S3fsvError as err:
        text = str(err)
        if text.startswith(inner + " "):
            err.args = (shown + text[len(inner) :],)
        raise


@_command("commit")
def cmd_commit(args: argparse.Namespace) -> int:
    root, inner = find_mount(args.path)
    payload = {
        "op": "commit",
        "path": inner,
        "message": args.message,
        "author": args.author,
        "overwrite": args.overwrite,
    }
    try:
        cid = _ask(root, inner, args.path, payload, timeout=None)  # as long as uploads take
    except KeyboardInterrupt:
        print(
            "s3fsv: interrupted; the daemon finishes this commit on its own "
            f"(see `s3fsv status {args.path}`)",
            file=sys.stderr,
        )
        return 130
    if args.json:
        _print_json({"commit": cid})
    elif cid:
        print(cid)
    else:
        print("nothing to commit", file=sys.stderr)
    return 0


@_command("status")
def cmd_status(args: argparse.Namespace) -> int:
    root, inner = find_mount(args.path)
    status = _ask(root, inner, args.path, {"op": "status", "path": inner})
    if not isinstance(status, dict):
        raise UsageError(f"unexpected status answer from the daemon for {root}")
    health = status.get("mount") if isinstance(status.get("mount"), dict) else None
    # The whole report either way; a script learns of an outage from the exit code too.
    down = health is not None and (health.get("store") or {}).get("reachable") is False
    code = StoreUnavailable.exit_code if down else 0
    if args.json:
        _print_json(status)
        return code
    reads = _READ_PATHS.get(status.get("read_path"))
    if health is not None:
        _print_health(health)
        if reads:
            print(f"{'reads:':<12}{reads}")
        if "repo" not in status:  # the root of a mount that is no single writable branch
            return code
    changes = 0
    for mark, key in (("A", "added"), ("M", "modified"), ("D", "deleted")):
        for path in status.get(key) or ():
            print(f"{mark}\t{shown_path(path)}")
            changes += 1
    for path in status.get("interrupted") or ():
        print(
            f"s3fsv: {shown_path(path)} was open for writing when an earlier mount stopped and "
            "may be incomplete: check it, then write it again or `touch` it to keep it as is",
            file=sys.stderr,
        )
    if not changes and "branch" in status:
        where = f"{status.get('repo', '?')}@{status.get('branch', '?')}"
        print(f"nothing staged on {where}", file=sys.stderr)
    if reads and health is None:
        print(f"reads: {reads}", file=sys.stderr)
    return code


_READ_PATHS = {
    "passthrough": "FUSE passthrough (files whole in the cache are read by the kernel)",
    "fuse": "through the daemon (no FUSE passthrough)",
}


def _print_health(h: dict[str, Any]) -> None:
    """The health report of ``s3fsv status MOUNTPOINT``, one aspect per line."""
    view, store, cache = h.get("view") or {}, h.get("store") or {}, h.get("cache") or {}
    if view.get("kind") == "commit":
        shows = f"commit {view.get('commit')} (pinned)"
    elif view.get("kind") == "branch":
        rw = "writable" if view.get("writable") else "read-only"
        shows = f"branch {view.get('branch')} at {str(view.get('head'))[:12]} ({rw})"
    else:
        heads = view.get("heads") or {}
        shows = f"{view.get('kind')}; branch heads read: " + (
            ", ".join(f"{b} at {c[:12]}" for b, c in heads.items()) or "none yet"
        )
    if store.get("reachable"):
        reach = f"reachable, round trip {store.get('rtt_ms')} ms"
    else:
        reach = f"UNREACHABLE: {store.get('error')}"
    if store.get("outage"):
        reach += f" (outage since {store['outage']['since']})"
    staged = h.get("staged") or []
    error = h.get("last_error")
    rows = [
        ("mount", f"{h.get('mountpoint')} (pid {h.get('pid')}, s3fsv {h.get('version')})"),
        ("source", str(h.get("source"))),
        ("shows", shows),
        ("store", f"{store.get('url')}: {reach}; {store.get('outages', 0)} outage(s) seen"),
        (
            "cache",
            f"{cache.get('dir')}: {_size(cache.get('used_bytes'))} of "
            f"{_size(cache.get('limit_bytes'))}",
        ),
        (
            "staged",
            "; ".join(
                f"{s['repo']}@{s['branch']}: {s['paths']} path(s), {_size(s['bytes'])}"
                + (f", {s['interrupted']} possibly incomplete" if s.get("interrupted") else "")
                for s in staged
            )
            or "nothing",
        ),
        ("last error", f"{error['time']}: {error['message']}" if error else "none"),
        ("uptime", f"{_duration(h.get('uptime_s'))} (since {h.get('started')})"),
        ("commit on", str(h.get("commit_on"))),
        ("metrics", f"http://{h['metrics']}/metrics" if h.get("metrics") else "off"),
    ]
    for name, value in rows:
        print(f"{name + ':':<12}{value}")


def _size(n: object) -> str:
    value = float(n) if isinstance(n, (int, float)) else 0.0
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value} B"


def _duration(seconds: object) -> str:
    s = int(seconds) if isinstance(seconds, (int, float)) else 0
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    parts = [f"{days}d"] if days else []
    parts += [f"{hours}h"] if days or hours else []
    return " ".join([*parts, f"{minutes}m", f"{s}s"])


@_command("discard")
def cmd_discard(args: argparse.Namespace) -> int:
    root, inner = find_mount(args.path)
    dropped = _ask(root, inner, args.path, {"op": "discard", "path": inner})
    if args.json:
        _print_json({"discarded": dropped})
    else:
        with contextlib.suppress(TypeError, ValueError):
            dropped = int(dropped)
        info = _ask(root, inner, args.path, {"op": "status", "path": inner})
        where = (
            f"{info.get('repo', '?')}@{info.get('branch', '?')}" if isinstance(info, dict) else ""
        )
        plural = "" if dropped == 1 else "s"
        print(f"discarded {dropped} staged path{plural} of {where or 'the branch'} (all of it)")
    return 0
