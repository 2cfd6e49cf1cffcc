"""A stateful model test of a writable branch through a REAL FUSE mount.

Hypothesis drives real syscalls (write, append, positional writes, truncate, mkdir, rmdir,
unlink, rename of files and directories, ``s3fsv commit``, remounts and ``kill -9`` of the
daemon, a foreign writer moving the branch through the Python API, and descriptors kept open
across steps while their file is written, renamed, unlinked, replaced or committed) against a
reference model: the branch working tree as ``path -> bytes`` plus a set of directories, the
content behind every open descriptor, and every commit as a snapshot of both.

After every step the mounted branch tree must equal the model exactly (paths, sizes, bytes,
directories), and so must what every open descriptor reads. After every commit the new
snapshot must read back identically through a fresh ``STORE/cams@<commit>`` mount with an empty
cache, and every snapshot so far through the Python API (a fresh ``Store``, no cache). At
teardown every snapshot (the foreign writer's too) is read back once more through one fresh
mount of the store, with an empty cache, under ``cams/commit/<id>/`` (the handle-based read
path, where ``@<commit>`` mounts skip OPEN).

Names come from a tiny alphabet so operations collide often; operations that must fail (a file
over a directory, rmdir of a non-empty directory, ...) are issued too and must fail with the
errno POSIX and ``docs/semantics.md`` give.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import signal
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from s3fsv.store.store import Store
from s3fsv.store.transfer import put
from tests.model_support import (
    CHUNK,
    FOREIGN,
    MAX_DIR_DEPTH,
    MAX_HANDLES,
    NAMES,
    REF_TTL,
    REFRESH_WAIT,
    Blob,
    Files,
    Handle,
    Orphan,
    Snap,
    api_tree,
    assert_tree,
    blobs,
    describe_diff,
    join,
    moved,
    pread_all,
    read_tree,
    tracked,
    under,
)
from tests.mounting import (
    alive,
    daemon_pids,
    force_unmount,
    in_mount_table,
    mount_table,
    mounted,
    run_cli,
    wait_for_open_writers,
)


class MountModel(RuleBasedStateMachine):
    """One example: a fresh store, repo ``cams`` and mount. ``base_url`` None means file://."""

    base_url: str | None = None

    def __init__(self) -> None:
        super().__init__()
        self.broken = True
        self.tmp = Path(tempfile.mkdtemp(prefix="s3fsv-model-"))
        self.live = contextlib.ExitStack()
        try:
            if self.base_url is None:
                self.url = f"file://{self.tmp}/store"
            else:
                self.url = f"{self.base_url}/{uuid.uuid4().hex[:12]}"
            repo = Store.init(self.url).create_repo("cams", chunk_size=CHUNK)
            root = repo.resolve("main")
            self.env = dict(os.environ)
            self.env["XDG_STATE_HOME"] = str(self.tmp / "state")
            self.env["XDG_CACHE_HOME"] = str(self.tmp / "cache")
            self.env["XDG_CONFIG_HOME"] = str(self.tmp / "config")
            self.mp = self.tmp / "mnt"
            self.branch = self.mp / "cams" / "branch" / "main"
            self.files: Files = {}
            self.dirs: set[str] = set()
            self.head_files: Files = {}  # the branch head as committed
            self.head_dirs: set[str] = set()
            self.snapshots: list[Snap] = [Snap(root, {}, set(), "init")]
            self.handles: list[Handle] = []
            self.verify_count = 0
            self.mount()
        except BaseException:
            self.cleanup()
            raise
        self.broken = False

    # -- mount plumbing ---------------------------------------------------------------------
    def mount(self) -> None:
        self.live.enter_context(mounted(self.url, self.mp, self.env, "--ref-ttl", REF_TTL))

    def unmount(self) -> None:
        self.live.close()
        assert not in_mount_table(self.mp)

    def close_handles(self) -> None:
        handles, self.handles = self.handles, []
        for h in handles:
            os.close(h.fd)

    def cleanup(self) -> None:
        try:
            for h in self.handles:
                with contextlib.suppress(OSError):
                    os.close(h.fd)
            self.handles = []
            self.live.close()
        finally:
            # Never delete through a mount that failed to go away (a dead FUSE mount is not
            # even reported by os.path.ismount): look in the kernel's mount table.
            points = mount_table()
            if not any(p == str(self.tmp) or p.startswith(f"{self.tmp}/") for p in points):
                shutil.rmtree(self.tmp, ignore_errors=True)

    def fresh_env(self) -> tuple[dict[str, str], Path]:
        """An environment with a new, empty cache and state directory, and a new mountpoint."""
        self.verify_count += 1
        home = self.tmp / f"verify-{self.verify_count}"
        env = dict(self.env)
        env["XDG_STATE_HOME"] = str(home / "state")
        env["XDG_CACHE_HOME"] = str(home / "cache")
        return env, home / "mnt"

    def teardown(self) -> None:
        try:
            if not self.broken:
                self.check_all_snapshots_fresh_mount()
                self.check_snapshots_api()
        finally:
            self.cleanup()

    # -- model helpers ----------------------------------------------------------------------
    def my_dirs(self) -> list[str]:
        """Directories the mount's rules may use (the root is ``""``), sorted for determinism."""
        return [""] + sorted(d for d in self.dirs if not under(d, FOREIGN))

    def my_files(self) -> list[str]:
        return sorted(f for f in self.files if not under(f, FOREIGN))

    def has_children(self, d: str) -> bool:
        prefix = d + "/"
        return any(p.startswith(prefix) for p in self.files) or any(
            p.startswith(prefix) for p in self.dirs
        )

    def orphan_handles(self, path: str) -> None:
        """The file at ``path`` leaves the tree: descriptors open on it keep its content, one
        file for all of them (a write or truncate through one is seen through the others)."""
        orphan = Orphan(self.files[path])
        for h in self.handles:
            if h.path == path:
                h.path, h.orphan = None, orphan
                h.orphan_dir = path.rpartition("/")[0]

    def content(self, h: Handle) -> bytes:
        return self.files[h.path] if h.path is not None else h.orphan.data

    def set_content(self, h: Handle, data: bytes) -> None:
        if h.path is not None:
            self.files[h.path] = data
        else:
            h.orphan.data = data

    def attempt(self, expected: int | None, what: str, op: Callable[[], object]) -> bool:
        """Run ``op``; it must succeed when ``expected`` is None, else fail with that errno."""
        event(f"{what.split()[0]}: {errno.errorcode[expected] if expected else 'ok'}")
        try:
            op()
        except OSError as err:
            if expected is None:
                raise AssertionError(f"{what} failed unexpectedly: {err!r}") from err
            assert err.errno == expected, (
                f"{what}: expected {errno.errorcode[expected]}, got {err!r}"
            )
            return False
        assert expected is None, f"{what} succeeded; expected {errno.errorcode[expected]}"
        return True

    def at(self, path: str) -> Path:
        return self.branch / path if path else self.branch

    # -- file contents ----------------------------------------------------------------------
    @rule(data=st.data(), name=st.sampled_from(NAMES), blob=blobs)
    @tracked
    def write_file(self, data: st.DataObject, name: str, blob: Blob) -> None:
        """Create or overwrite (O_TRUNC) a file; over a directory: EISDIR."""
        path = join(data.draw(st.sampled_from(self.my_dirs()), label="parent"), name)
        expected = errno.EISDIR if path in self.dirs else None
        if self.attempt(expected, f"write {path}", lambda: self.at(path).write_bytes(blob.data)):
            self.files[path] = blob.data

    @precondition(lambda self: self.my_files())
    @rule(data=st.data(), blob=blobs)
    @tracked
    def append(self, data: st.DataObject, blob: Blob) -> None:
        path = data.draw(st.sampled_from(self.my_files()), label="path")
        with open(self.at(path), "ab") as fh:
            fh.write(blob.data)
        self.files[path] += blob.data

    @precondition(lambda self: self.my_files())
    @rule(data=st.data(), blob=blobs)
    @tracked
    def write_at(self, data: st.DataObject, blob: Blob) -> None:
        """A positional write inside a file (r+b, seek, write); it may extend the file."""
        path = data.draw(st.sampled_from(self.my_files()), label="path")
        old = self.files[path]
        offset = data.draw(st.integers(0, len(old)), label="offset")
        with open(self.at(path), "r+b") as fh:
            fh.seek(offset)
            fh.write(blob.data)
        self.files[path] = old[:offset] + blob.data + old[offset + len(blob.data) :]

    @precondition(lambda self: self.my_files())
    @rule(data=st.data(), through_handle=st.booleans())
    @tracked
    def truncate(self, data: st.DataObject, through_handle: bool) -> None:
        """Shrink or extend (with zeros) a file, by path or through an open descriptor."""
        path = data.draw(st.sampled_from(self.my_files()), label="path")
        old = self.files[path]
        length = data.draw(
            st.one_of(st.integers(0, len(old)), st.integers(len(old), len(old) + 2 * CHUNK + 3)),
            label="length",
        )
        if through_handle:
            with open(self.at(path), "r+b") as fh:
                fh.truncate(length)
        else:
            os.truncate(self.at(path), length)
        self.files[path] = old[:length] + b"\0" * (length - len(old))

    @precondition(lambda self: self.files)
    @rule(data=st.data(), in_snapshot=st.booleans())
    @tracked
    def read_range(self, data: st.DataObject, in_snapshot: bool) -> None:
        """pread of a random range, across chunk boundaries and past the end, of a branch file
        or of a file of a committed snapshot (``cams/commit/<id>/`` of this mount)."""
        snaps = [s for s in self.snapshots if s.files]
        if in_snapshot and snaps:
            snap = data.draw(st.sampled_from(snaps), label="snapshot")
            path = data.draw(st.sampled_from(sorted(snap.files)), label="path")
            where, want = self.mp / "cams" / "commit" / snap.cid / path, snap.files[path]
        else:
            path = data.draw(st.sampled_from(sorted(self.files)), label="path")
            where, want = self.at(path), self.files[path]
        offset = data.draw(st.integers(0, len(want) + 10), label="offset")
        size = data.draw(st.integers(0, 3 * CHUNK), label="size")
        fd = os.open(where, os.O_RDONLY)
        try:
            got = pread_all(fd, size, offset)
        finally:
            os.close(fd)
        assert got == want[offset : offset + size], (
            f"pread({where}, {size}, {offset}): {describe_diff(want[offset : offset + size], got)}"
        )

    # -- descriptors open across steps --------------------------------------------------------
    @precondition(lambda self: self.my_files() and len(self.handles) < MAX_HANDLES)
    @rule(data=st.data())
    @tracked
    def open_handle(self, data: st.DataObject) -> None:
        """Open a file O_RDWR and keep it open: it follows renames, survives unlink and
        replacement (then holding the old content), and sees writes made through its path."""
        path = data.draw(st.sampled_from(self.my_files()), label="path")
        self.handles.append(Handle(os.open(self.at(path), os.O_RDWR), path))

    @precondition(lambda self: self.handles)
    @rule(data=st.data(), blob=blobs)
    @tracked
    def handle_write(self, data: st.DataObject, blob: Blob) -> None:
        h = data.draw(st.sampled_from(self.handles), label="handle")
        old = self.content(h)
        offset = data.draw(st.integers(0, len(old)), label="offset")
        assert os.pwrite(h.fd, blob.data, offset) == len(blob.data)
        self.set_content(h, old[:offset] + blob.data + old[offset + len(blob.data) :])

    @precondition(lambda self: self.handles)
    @rule(data=st.data())
    @tracked
    def handle_truncate(self, data: st.DataObject) -> None:
        h = data.draw(st.sampled_from(self.handles), label="handle")
        old = self.content(h)
        length = data.draw(st.integers(0, len(old) + CHUNK + 1), label="length")
        os.ftruncate(h.fd, length)
        self.set_content(h, old[:length] + b"\0" * (length - len(old)))

    @precondition(lambda self: self.handles)
    @rule(data=st.data())
    @tracked
    def close_handle(self, data: st.DataObject) -> None:
        h = data.draw(st.sampled_from(self.handles), label="handle")
        self.handles.remove(h)
        os.close(h.fd)

    # -- namespace --------------------------------------------------------------------------
    @rule(data=st.data(), name=st.sampled_from(NAMES))
    @tracked
    def mkdir(self, data: st.DataObject, name: str) -> None:
        parents = [d for d in self.my_dirs() if d.count("/") + 1 < MAX_DIR_DEPTH or not d]
        path = join(data.draw(st.sampled_from(parents), label="parent"), name)
        expected = errno.EEXIST if path in self.files or path in self.dirs else None
        if self.attempt(expected, f"mkdir {path}", lambda: os.mkdir(self.at(path))):
            self.dirs.add(path)

    @rule(top=st.sampled_from(NAMES), sub=st.sampled_from(NAMES))
    @tracked
    def makedirs(self, top: str, sub: str) -> None:
        """``os.makedirs(top/sub)``: creates the missing levels."""
        path = f"{top}/{sub}"
        if top in self.files:
            expected: int | None = errno.ENOTDIR
        elif path in self.files or path in self.dirs:
            expected = errno.EEXIST
        else:
            expected = None
        if self.attempt(expected, f"makedirs {path}", lambda: os.makedirs(self.at(path))):
            self.dirs.update({top, path})

    @precondition(lambda self: len(self.my_dirs()) > 1 or self.my_files())
    @rule(data=st.data())
    @tracked
    def rmdir(self, data: st.DataObject) -> None:
        """rmdir of a directory (ENOTEMPTY unless empty) or, to collide, of a file (ENOTDIR)."""
        path = data.draw(st.sampled_from(self.my_dirs()[1:] + self.my_files()), label="path")
        if path in self.files:
            expected: int | None = errno.ENOTDIR
        elif self.has_children(path):
            expected = errno.ENOTEMPTY
        else:
            expected = None  # unlinked files still open in it do not count, as on a local disk
        if self.attempt(expected, f"rmdir {path}", lambda: os.rmdir(self.at(path))):
            self.dirs.discard(path)
            for h in self.handles:
                if h.orphan_dir == path:
                    h.orphan_dir = None

    @precondition(lambda self: len(self.my_dirs()) > 1 or self.my_files())
    @rule(data=st.data())
    @tracked
    def unlink(self, data: st.DataObject) -> None:
        """unlink of a file or, to collide, of a directory (EISDIR)."""
        path = data.draw(st.sampled_from(self.my_files() + self.my_dirs()[1:]), label="path")
        expected = errno.EISDIR if path in self.dirs else None
        if self.attempt(expected, f"unlink {path}", lambda: os.unlink(self.at(path))):
            self.orphan_handles(path)
            del self.files[path]

    @precondition(lambda self: self.my_files())
    @rule(data=st.data(), name=st.sampled_from(NAMES))
    @tracked
    def rename_file(self, data: st.DataObject, name: str) -> None:
        """os.replace of a file to a new name or over an existing file; onto a directory:
        EISDIR, or ENOTEMPTY when that directory is an ancestor of the file (the kernel checks
        ancestry first)."""
        src = data.draw(st.sampled_from(self.my_files()), label="src")
        dst = join(data.draw(st.sampled_from(self.my_dirs()), label="parent"), name)
        expected: int | None = None
        if src.startswith(dst + "/"):
            expected = errno.ENOTEMPTY
        elif dst in self.dirs:
            expected = errno.EISDIR
        ok = self.attempt(
            expected, f"replace {src} -> {dst}", lambda: os.replace(self.at(src), self.at(dst))
        )
        if ok and src != dst:
            if dst in self.files:
                self.orphan_handles(dst)
            for h in self.handles:
                if h.path == src:
                    h.path = dst
            self.files[dst] = self.files.pop(src)

    @precondition(lambda self: len(self.my_dirs()) > 1)
    @rule(data=st.data(), name=st.sampled_from(NAMES))
    @tracked
    def rename_dir(self, data: st.DataObject, name: str) -> None:
        """os.rename of a directory: to a new name, over an empty directory, and the failures
        (into itself: EINVAL; onto a file: ENOTDIR; onto a non-empty directory: ENOTEMPTY)."""
        src = data.draw(st.sampled_from(self.my_dirs()[1:]), label="src")
        dst = join(data.draw(st.sampled_from(self.my_dirs()), label="parent"), name)
        expected: int | None = None
        if dst == src:
            expected = None
        elif dst.startswith(src + "/"):
            expected = errno.EINVAL
        elif dst in self.files:
            expected = errno.ENOTDIR
        elif dst in self.dirs and self.has_children(dst):
            expected = errno.ENOTEMPTY
        ok = self.attempt(
            expected, f"rename {src} -> {dst}", lambda: os.rename(self.at(src), self.at(dst))
        )
        if not ok or dst == src:
            return
        self.dirs.discard(dst)  # an empty directory replaced
        for h in self.handles:
            if h.orphan_dir == dst:
                h.orphan_dir = None
        self.files = {
            (moved(p, src, dst) if under(p, src) else p): c for p, c in self.files.items()
        }
        self.dirs = {moved(d, src, dst) if under(d, src) else d for d in self.dirs}
        for h in self.handles:
            if h.path is not None and under(h.path, src):
                h.path = moved(h.path, src, dst)
            if h.orphan_dir is not None and under(h.orphan_dir, src):
                h.orphan_dir = moved(h.orphan_dir, src, dst)

    # -- commits, remounts, a foreign writer ------------------------------------------------
    def changed(self) -> bool:
        return (self.files, self.dirs) != (self.head_files, self.head_dirs)

    def run_commit(self) -> str:
        """``s3fsv commit`` of the branch: the new commit id, or "" when nothing was staged."""
        result = run_cli("commit", str(self.branch), "-m", "model commit", env=self.env)
        cid = result.stdout.strip()
        event(f"commit: {'new commit' if cid else 'nothing to commit'}")
        assert not cid or (len(cid) == 64 and all(c in "0123456789abcdef" for c in cid)), cid
        assert cid or "nothing to commit" in result.stderr, result.stderr
        return cid

    @precondition(lambda self: self.changed())
    @rule(again=st.booleans())
    @tracked
    def commit(self, again: bool) -> None:
        """Commit the staged changes (descriptors may stay open); with ``again``, commit once
        more at once. That finds nothing staged and prints nothing on stdout, unless a file is
        still open: an open staged file stays staged across a commit (docs/semantics.md), so it
        makes a commit of the same tree. (Only when the tree changed: Hypothesis favours rules
        with few arguments, and runs of no-op commits only cost time.)"""
        self.commit_changes()
        if again:
            cid = self.run_commit()
            if any(h.path is not None for h in self.handles):
                assert cid, "a file open across a commit did not stay staged"
                self.record_commit(cid)
            else:
                assert cid == "", "a second commit found something staged"

    def commit_changes(self) -> None:
        cid = self.run_commit()
        assert cid, "nothing committed although the tree differs from the branch head"
        self.record_commit(cid)

    def record_commit(self, cid: str) -> None:
        """A commit of the model's tree: check it through a fresh mount and the API."""
        assert cid not in {s.cid for s in self.snapshots}, f"commit {cid} made twice"
        self.head_files, self.head_dirs = dict(self.files), set(self.dirs)
        snap = Snap(cid, dict(self.files), set(self.dirs), "mount")
        self.snapshots.append(snap)
        self.check_snapshot_fresh_mount(snap)
        self.check_snapshots_api()

    @precondition(lambda self: self.changed())
    @rule(crash=st.booleans())
    @tracked
    def remount(self, crash: bool) -> None:
        """Unmount (or ``kill -9`` the daemon) and mount again with the same state directory:
        the staged changes survive (every file was closed after its step)."""
        event(f"remount: {'kill -9' if crash else 'unmount'}")
        self.close_handles()  # an unmount with open files fails (busy); closed files survive
        if crash:
            state = Path(self.env["XDG_STATE_HOME"])
            wait_for_open_writers(state)  # closed files are closed for the daemon too
            pids = daemon_pids(state, self.mp)
            assert pids, "no daemon recorded for the mount"
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while any(alive(pid) for pid in pids):
                assert time.monotonic() < deadline, f"daemon {pids} survived SIGKILL"
                time.sleep(0.02)
            force_unmount(self.mp, state)
        self.unmount()
        self.mount()

    @rule(name=st.sampled_from(NAMES), blob=blobs, commit_at_once=st.booleans())
    @tracked
    def foreign_write(self, name: str, blob: Blob, commit_at_once: bool) -> None:
        """Another writer commits ``foreign/<name>`` through the Python API; the mount shows it
        after its next refresh, with its own staged changes still on top. With
        ``commit_at_once`` (and something staged) the mount commits before it has noticed the
        move: the commit goes on top of the foreign one, and the branch shows both at once."""
        path = f"{FOREIGN}/{name}"
        src = self.tmp / "foreign-src"
        src.write_bytes(blob.data)
        repo = Store.open(self.url).repo("cams")
        cid, _ = put(repo, "main", src, path, "foreign write")
        self.files[path] = blob.data
        self.dirs.add(FOREIGN)
        self.head_files[path] = blob.data
        self.head_dirs.add(FOREIGN)
        self.snapshots.append(Snap(cid, dict(self.head_files), set(self.head_dirs), "foreign"))
        if commit_at_once and self.changed():
            self.commit_changes()
            got = self.at(path).read_bytes()
            assert got == blob.data, f"after the commit, {path}: {describe_diff(blob.data, got)}"
        self.wait_until_shown(path, blob.data, cid)

    def wait_until_shown(self, path: str, want: bytes, cid: str) -> None:
        """Poll until the mount shows ``want`` at ``path``, its size included: the kernel may
        keep attributes for up to ``--ref-ttl`` seconds, as documented."""
        deadline = time.monotonic() + REFRESH_WAIT
        while True:
            with contextlib.suppress(FileNotFoundError):
                where = self.at(path)
                if where.read_bytes() == want and os.stat(where).st_size == len(want):
                    return
            assert time.monotonic() < deadline, f"the mount never showed {path} of {cid[:12]}"
            time.sleep(0.05)

    # -- checks -----------------------------------------------------------------------------
    @invariant()
    @tracked
    def branch_matches_model(self) -> None:
        got_files, got_dirs = read_tree(self.branch)
        assert_tree("branch", got_files, got_dirs, self.files, self.dirs)
        for h in self.handles:  # the whole content through every open descriptor
            want = self.content(h)
            got = pread_all(h.fd, len(want) + 1, 0)
            assert got == want, f"read through {h}: {describe_diff(want, got)}"

    def check_snapshot_fresh_mount(self, snap: Snap) -> None:
        """One snapshot through a new ``STORE/cams@<commit>`` mount with an empty cache."""
        env, mp = self.fresh_env()
        where = f"cams@{snap.cid[:12]}"
        with mounted(f"{self.url}/cams@{snap.cid}", mp, env):
            got_files, got_dirs = read_tree(mp)
            assert_tree(where, got_files, got_dirs, snap.files, snap.dirs)
            for path, want in sorted(snap.files.items()):
                digest = os.getxattr(mp / path, "user.s3fsv.sha256").decode()
                assert digest == hashlib.sha256(want).hexdigest(), f"{where}: {path}: sha256"
                assert os.getxattr(mp / path, "user.s3fsv.commit").decode() == snap.cid

    def check_all_snapshots_fresh_mount(self) -> None:
        """Every snapshot through one new mount of the store with an empty cache."""
        env, mp = self.fresh_env()
        with mounted(self.url, mp, env):
            for snap in self.snapshots:
                got_files, got_dirs = read_tree(mp / "cams" / "commit" / snap.cid)
                where = f"commit/{snap.cid[:12]} ({snap.source})"
                assert_tree(where, got_files, got_dirs, snap.files, snap.dirs)

    def check_snapshots_api(self) -> None:
        for snap in self.snapshots:
            got_files, got_dirs = api_tree(self.url, snap.cid)
            where = f"API {snap.cid[:12]} ({snap.source})"
            assert_tree(where, got_files, got_dirs, snap.files, snap.dirs)


def run_machine(base_url: str | None, **options: Any) -> None:
    machine = type("MountModel", (MountModel,), {"base_url": base_url})
    run_state_machine_as_test(
        machine,
        settings=settings(
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
            **options,
        ),
    )


# A passing run takes a minute or two; a failing one shrinks for longer, so the timeouts leave
# room for Hypothesis to print a minimal failing program.
@pytest.mark.timeout(900)
def test_mount_model_file() -> None:
    run_machine(None, max_examples=15, stateful_step_count=25)


@pytest.mark.s3
@pytest.mark.timeout(900)
def test_mount_model_seaweed(s3_bucket_url: str) -> None:
    run_machine(s3_bucket_url, max_examples=3, stateful_step_count=12)
