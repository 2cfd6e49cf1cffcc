"""How a run's command sees its inputs: read-only and pinned, through a FUSE mount of the store
(``MOUNT/<repo>/commit/<id>/<path>``), or downloaded, verified and made read-only in a local
directory when FUSE cannot be used.

One mount serves every input. A live s3fsv mount of the same store on this machine is used as
it is; otherwise the run starts its own read-only mount (a daemon, as ``s3fsv mount`` does) and
always unmounts it when the run ends, on errors and signals too.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from s3fsv.api import Store
from s3fsv.errors import MountError
from s3fsv.mount import daemon
from s3fsv.mount.mounttable import Mounted, is_dead, mount_table
from s3fsv.mount.runtime_files import pid_file
from s3fsv.runs.spec import PinnedInput

Say = Callable[[str], None]
UNMOUNT_ATTEMPTS = 20  # about 10 s for the command's leftover children to let go


@dataclass
class Views:
    """Where each input is (``paths``: input name -> local path) and how it got there."""

    mode: str  # "fuse" or "local", as the run record says
    paths: dict[str, str] = field(default_factory=dict)
    mountpoint: Path | None = None
    reused: bool = False


@contextlib.contextmanager
def input_views(
    store: Store,
    pinned: Sequence[PinnedInput],
    run_dir: Path,
    *,
    fuse: bool = True,
    endpoint_url: str | None = None,
    say: Say,
) -> Iterator[Views]:
    """Show ``pinned`` to a command. With ``fuse`` (the default), through a mount, falling
    back to downloads (saying so) when FUSE is unavailable or mounting is refused; without,
    downloaded into ``run_dir/in``. Whatever was mounted or downloaded is gone afterwards."""
    if fuse:
        try:
            with _mounted(store, pinned, run_dir, endpoint_url, say) as views:
                yield views
            return
        except _NoFuse as why:
            say(f"FUSE cannot be used here ({why}): inputs are downloaded instead (--no-fuse)")
    with _downloaded(store, pinned, run_dir / "in", say) as views:
        yield views


class _NoFuse(Exception):
    """Mounting is impossible on this machine; raised before the command runs."""


# -- through a mount -------------------------------------------------------------------------


@contextlib.contextmanager
def _mounted(
    store: Store,
    pinned: Sequence[PinnedInput],
    run_dir: Path,
    endpoint_url: str | None,
    say: Say,
) -> Iterator[Views]:
    repos = {p.spec.repo for p in pinned}
    found = find_store_mount(store.url, repos)
    if found is not None:
        root, own = found, False
        say(f"inputs read through the mount at {root.path} (already mounted)")
    else:
        own = True
        try:
            daemon.check_fuse()
        except MountError as err:
            raise _NoFuse(str(err).split(": ", 1)[-1]) from None
        mp = run_dir / "mnt"
        mp.mkdir(mode=0o700, exist_ok=True)
        argv = ["mount", store.url, str(mp), "--read-only"]
        argv += ["--endpoint-url", endpoint_url] if endpoint_url else []
        try:
            daemon.start(argv, str(mp), foreground=False)
        except MountError as err:
            with contextlib.suppress(OSError):
                mp.rmdir()
            if _refused(err):
                raise _NoFuse(str(err)) from None
            raise
        root = Mounted(str(mp), "fuse.s3fsv", store.url)
    try:
        views = Views("fuse", mountpoint=Path(root.path), reused=not own)
        whole_store = root.source.rstrip("/") == store.url.rstrip("/")
        for item in pinned:
            base = Path(root.path) / item.spec.repo if whole_store else Path(root.path)
            view = base / "commit" / item.commit / item.spec.path
            views.paths[item.spec.name] = str(view).rstrip("/")
        yield views
    finally:
        if own:
            release_mount(Path(root.path), say)


def find_store_mount(url: str, repos: set[str]) -> Mounted | None:
    """A live s3fsv mount on this machine that shows every repo of ``repos`` of the store at
    ``url`` with its ``commit/`` directories: a mount of the whole store, or of the one repo
    when ``repos`` is just that one. Its daemon must be this user's (its pid file is ours)."""
    table = mount_table() or {}
    want = url.rstrip("/")
    for path, mounted in table.items():
        if not mounted.is_s3fsv:
            continue
        source = mounted.source.replace("\\,", ",").replace("\\\\", "\\").rstrip("/")
        base, _, last = source.rpartition("/")
        if source != want and not (base == want and repos == {last}):
            continue
        if not _daemon_answers(Path(path), want):
            continue
        return Mounted(path, mounted.fstype, source)
    return None


def _daemon_answers(mp: Path, url: str) -> bool:
    try:
        info = json.loads(pid_file(mp).read_text())
        if str(info.get("source", "")).rstrip("/") != url:
            return False
        os.kill(int(info["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False
    return not is_dead(mp)


def _refused(err: MountError) -> bool:
    """Whether a failed mount was refused by the system (no FUSE permission) rather than
    failing for a reason a download would meet too (the store)."""
    text = str(err).lower()
    return any(
        why in text
        for why in ("fuse", "operation not permitted", "permission denied", "fusermount")
    )


def release_mount(mp: Path, say: Say) -> None:
    """Unmount a mount this run made and remove its directory. A command's leftover
    background process holding a file there is waited for briefly, then the mount is
    detached lazily (the kernel finishes once it lets go) so that none is left behind."""
    for _ in range(UNMOUNT_ATTEMPTS):
        try:
            daemon.unmount(str(mp))
            break
        except MountError as err:
            if "busy" not in str(err):
                if not os.path.ismount(mp):
                    break
                say(f"could not unmount {mp}: {err}")
                return
            time.sleep(0.5)
    else:
        say(f"{mp} is still busy: detaching it lazily")
        subprocess.run(["fusermount3", "-uz", str(mp)], capture_output=True)
    with contextlib.suppress(OSError):
        mp.rmdir()


# -- downloaded ------------------------------------------------------------------------------


@contextlib.contextmanager
def _downloaded(
    store: Store, pinned: Sequence[PinnedInput], root: Path, say: Say
) -> Iterator[Views]:
    """Each input downloaded to ``root/<n>/<its last name>``, every file checked against its
    SHA-256, then made read-only; removed afterwards."""
    views = Views("local")
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        for n, item in enumerate(pinned):
            spec = item.spec
            where = root / str(n)
            where.mkdir(mode=0o700)
            dest = where / (spec.path.rsplit("/", 1)[-1] if spec.path else spec.repo)
            files = store.repo(spec.repo).download(item.commit, spec.path, dest)
            say(f"downloaded {files} file(s) of {item} to {dest}")
            _read_only(where)
            views.paths[spec.name] = str(dest)
        yield views
    finally:
        remove_tree(root)


def _read_only(top: Path) -> None:
    """Take away write permission below ``top`` (a run's inputs are read-only). Links are
    left alone (their mode means nothing, and chmod would follow them)."""
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if not stat.S_ISLNK(st.st_mode):
                os.chmod(path, stat.S_IMODE(st.st_mode) & ~0o222)


def remove_tree(top: Path) -> None:
    """``rm -rf top``, giving back the write permission a read-only input took away."""

    def retry(func: Callable[..., object], path: str, _exc: object) -> None:
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(path), 0o700)
            if os.path.isdir(path) and not os.path.islink(path):
                os.chmod(path, 0o700)
        func(path)

    if top.exists():
        shutil.rmtree(top, onerror=retry)  # onexc from Python 3.12
