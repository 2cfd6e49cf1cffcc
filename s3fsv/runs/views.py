"""How a run's command sees its inputs: read-only and pinned, through a FUSE mount of the store
(``MOUNT/<repo>/commit/<id>``), or downloaded, verified and made read-only in a local directory
when FUSE cannot be used. Either way an input's path stands for the root of its commit, with
the input's PATH at its own place below it: ``{in}/images`` is ``cams@ID:images``.

One mount serves every input. A live s3fsv mount of the same store on this machine is used as
it is; otherwise the run serves its own read-only mount from its own process (no daemon to
start) and always unmounts it when the run ends, on errors and signals too.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from s3fsv.api import Store
from s3fsv.config import private_dir
from s3fsv.errors import MountError
from s3fsv.mount import daemon
from s3fsv.mount.embedded import EmbeddedMount, reclaim_signals
from s3fsv.mount.mounttable import Mounted, is_dead, mount_table, mounted_at
from s3fsv.mount.runtime_files import pid_file
from s3fsv.runs.readahead import BUDGET as READ_AHEAD
from s3fsv.runs.readahead import ReadAhead
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
    mount: StoreMount | None,
    say: Say,
) -> Iterator[Views]:
    """Show ``pinned`` to a command: through ``mount`` (see :class:`StoreMount`), or, without
    one or when FUSE turns out to be unavailable or refused (said through ``say``),
    downloaded into ``run_dir/in``. Through a mount, up to ``READ_AHEAD`` bytes of the
    inputs are read ahead of the command (:class:`ReadAhead`) while it starts. Afterwards the
    downloads are gone, and the run's own mount is being taken away
    (:meth:`StoreMount.finish` waits for that)."""
    if mount is not None:
        try:
            root = mount.wait(pinned)
        except _NoFuse as why:
            say(f"FUSE cannot be used here ({why}): inputs are downloaded instead (--no-fuse)")
        else:
            if not mount.own:
                say(f"inputs read through the mount at {root.path} (already mounted)")
            views = Views("fuse", mountpoint=Path(root.path), reused=not mount.own)
            for item in pinned:
                base = Path(root.path) / item.spec.repo if mount.whole_store else Path(root.path)
                here = Path(root.path) if mount.snapshot else base / "commit" / item.commit
                views.paths[item.spec.name] = str(here)
            ahead = ReadAhead(
                [Path(views.paths[i.spec.name], i.spec.path) for i in pinned], READ_AHEAD
            )
            ahead.start()
            try:
                yield views
            finally:
                ahead.stop()
                mount.release()
            return
    with _downloaded(store, pinned, run_dir / "in", say) as views:
        yield views


class _NoFuse(Exception):
    """Mounting is impossible on this machine; raised before the command runs."""


# -- through a mount -------------------------------------------------------------------------


class StoreMount:
    """The mount a run reads its inputs through: a live mount of the same store on this
    machine, else one the run serves itself (:class:`EmbeddedMount`, no daemon) read-only at
    ``run_dir/mnt``: of the one commit every input reads when they all read the same one (a
    snapshot the kernel caches for good), else of the whole store. Its own mount is always
    removed: :meth:`finish` must be called, also on errors. Mounting is attempted only where
    FUSE is available."""

    def __init__(
        self,
        url: str,
        repos: set[str],
        run_dir: Path,
        endpoint_url: str | None,
        say: Say,
        s3_options: dict[str, Any] | None = None,
    ) -> None:
        self._say = say
        self._url = url
        self._endpoint = endpoint_url
        self._s3 = s3_options
        self._found = find_store_mount(url, repos)
        self.own = self._found is None
        # A mount of the whole store shows <repo>/commit/<id>; one of a repo, commit/<id>.
        self.whole_store = self.own or (self._found is not None and self._found.source == url)
        self.snapshot = False  # the run's own mount shows one commit at its root
        self._mp = run_dir / "mnt"
        self._mount: EmbeddedMount | None = None
        self._starting: threading.Thread | None = None
        self._failure: BaseException | None = None
        self._stopping: threading.Thread | None = None

    def begin(self, pinned: Sequence[PinnedInput]) -> None:
        """Start making the run's own mount of ``pinned``, in the background (while the run
        checks its output); nothing when a mount is there already or being made."""
        if self._found is None and self._starting is None:
            self._starting = threading.Thread(
                target=self._start, args=(pinned,), name="s3fsv-run-mount"
            )
            self._starting.start()

    def wait(self, pinned: Sequence[PinnedInput]) -> Mounted:
        """The mount, once usable; ``_NoFuse`` or ``MountError`` when it could not be made."""
        if self._found is not None:
            return self._found
        self.begin(pinned)
        assert self._starting is not None
        self._starting.join()
        if self._failure is not None:
            raise self._failure
        assert self._mount is not None
        reclaim_signals()
        return Mounted(str(self._mp), "fuse.s3fsv", self._mount.source)

    def _start(self, pinned: Sequence[PinnedInput]) -> None:
        try:
            daemon.check_fuse()
        except MountError as err:
            self._failure = _NoFuse(str(err).split(": ", 1)[-1])
            return
        self._mp.mkdir(mode=0o700, exist_ok=True)
        shown = {(item.spec.repo, item.commit) for item in pinned}
        repo, commit = next(iter(shown)) if len(shown) == 1 else (None, None)
        mount = EmbeddedMount(
            self._url, self._mp, repo=repo, commit=commit,
            endpoint_url=self._endpoint, s3_options=self._s3,
        )  # fmt: skip
        try:
            mount.start()
        except BaseException as err:
            mount.stop()
            with contextlib.suppress(OSError):
                self._mp.rmdir()
            refused = isinstance(err, MountError) and _refused(err)
            self._failure = _NoFuse(str(err)) if refused else err
            return
        self.snapshot = repo is not None
        self._mount = mount

    def release(self) -> None:
        """Start taking the run's own mount away, in the background (its inputs are no longer
        needed); nothing for a mount that was there already. Idempotent."""
        if self._starting is not None and self._stopping is None:
            self._stopping = threading.Thread(target=self._stop, name="s3fsv-run-unmount")
            self._stopping.start()

    def _stop(self) -> None:
        assert self._starting is not None
        self._starting.join()  # a mount still being made is taken away once it is up
        if self._mount is not None:
            release_mount(self._mount, self._say)

    def finish(self) -> None:
        """Release the mount and wait until it is gone."""
        self.release()
        if self._stopping is not None:
            self._stopping.join()


def find_store_mount(url: str, repos: set[str]) -> Mounted | None:
    """A live s3fsv mount on this machine that shows every repo of ``repos`` of the store at
    ``url`` with its ``commit/`` directories: a mount of the whole store, or of the one repo
    when ``repos`` is just that one. Its daemon must be this user's (its pid file is ours)."""
    table = mount_table() or {}
    want = url.rstrip("/")  # what the found mount's source is then too
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


def release_mount(mount: EmbeddedMount, say: Say) -> None:
    """Unmount a mount this run made and remove its directory. A command's leftover
    background process holding a file there is waited for briefly, then the mount is
    detached lazily (the kernel finishes once it lets go) so that none is left behind."""
    mp = mount.mountpoint
    for _ in range(UNMOUNT_ATTEMPTS):
        try:
            mount.stop()
            break
        except MountError as err:
            if "busy" not in str(err).lower():
                say(f"could not unmount {mp}: {err}; detaching it lazily")
                mount.detach()
                break
            time.sleep(0.5)
    else:
        say(f"{mp} is still busy: detaching it lazily")
        mount.detach()
    with contextlib.suppress(OSError):
        mp.rmdir()


def detach_left_mount(mp: Path) -> None:
    """Detach (lazily) an s3fsv mount at ``mp`` that a run's process left when it died;
    nothing when there is none. Only for the mount point of a run known to have ended."""
    there = mounted_at(mount_table() or {}, mp)
    if there is None or not there.is_s3fsv:
        return
    try:
        result = subprocess.run(["fusermount3", "-uz", str(mp)], capture_output=True, text=True)
    except OSError:  # no fusermount3 (root mounts without it)
        result = subprocess.run(["umount", "-l", str(mp)], capture_output=True, text=True)
    if result.returncode != 0:
        raise MountError(f"cannot detach the mount left at {mp}: {result.stderr.strip()}")


# -- downloaded ------------------------------------------------------------------------------


@contextlib.contextmanager
def _downloaded(
    store: Store, pinned: Sequence[PinnedInput], root: Path, say: Say
) -> Iterator[Views]:
    """Each input's PATH downloaded to ``root/<name>/PATH`` (``root/<name>`` stands for the
    commit's root, as in a mount), every file checked against its SHA-256, then made
    read-only; removed afterwards."""
    views = Views("local")
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        for item in pinned:
            spec = item.spec
            where = root / spec.name
            dest = where / spec.path if spec.path else where
            private_dir(dest.parent if spec.path else where)
            files = store.repo(spec.repo).download(item.commit, spec.path, dest)
            say(f"downloaded {files} file(s) of {item} to {dest}")
            _read_only(where)
            views.paths[spec.name] = str(where)
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
    """``rm -rf top``, giving back the write permission a read-only input took away. A mount
    point below ``top`` is never entered (``MountError``): a run's mount must be gone first."""
    for dirpath, dirnames, _files in os.walk(top):
        for name in dirnames:
            if os.path.ismount(os.path.join(dirpath, name)):
                raise MountError(f"{os.path.join(dirpath, name)} is still mounted: not removed")

    def retry(func: Callable[..., object], path: str, _exc: object) -> None:
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(path), 0o700)
            if os.path.isdir(path) and not os.path.islink(path):
                os.chmod(path, 0o700)
        func(path)

    if top.exists():
        shutil.rmtree(top, onerror=retry)  # onexc from Python 3.12
