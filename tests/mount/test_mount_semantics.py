"""``docs/semantics.md``, section by section, on real mounts of a file:// store.

One store and three mounts serve the whole module: the store (``--ref-ttl 1``), a snapshot
mount of the first commit (``cams@<first>``) and a read-only store mount. Tests that damage the
store use their own. Behaviour under load, faults and concurrency is checked by the other mount
tests (``test_mount_read.py``, ``test_mount_write.py``, ``test_mount_model.py``).
"""

from __future__ import annotations

import errno
import hashlib
import mmap
import os
import socket
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from s3fsv.store.objects import TreeEntry
from s3fsv.store.repo import Repository
from s3fsv.store.store import Store
from s3fsv.store.transfer import put
from tests.mounting import drop_page_cache, mounted

CHUNK = 64 * 1024
FILES = {
    "images/cam-01/0001.jpg": b"\xff\xd8" + bytes(range(256)) * 10,
    "images/cam-01/0002.jpg": b"\xff\xd8second",
    "images/Zeta.txt": b"upper-case names sort first\n",
    "images/ä-umlaut.txt": b"non-ASCII names sort last\n",
    "images/b.txt": b"b\n",
    "big.bin": bytes(range(256)) * (3 * CHUNK // 256) + b"tail",
    "top.txt": b"top\n",
}


@dataclass
class World:
    url: str
    env: dict[str, str]
    first: str  # the commit holding FILES; tag v1 and branch dev point at it
    hidden: str  # on main, more than 50 first-parent steps below every head
    ambiguous: str  # a 4-hex prefix that several commits share
    store: Path  # the store mount
    snap: Path  # the mount of cams@first
    ro: Path  # the read-only store mount
    src: Path  # the local tree FILES were put from

    @property
    def commit_dir(self) -> Path:
        return self.store / "cams" / "commit" / self.first


def _empty_commits(repo: Repository, branch: str, n: int) -> list[str]:
    return [repo.commit(branch, {}, f"{branch} {i}") for i in range(n)]


def _ambiguous_prefix(repo: Repository, known: list[str]) -> str:
    """Commit on branch ``many`` until two commits share their first 4 hex digits."""
    seen = {c[:4] for c in known}
    for i in range(5000):
        cid = repo.commit("many", {}, f"many {i}")
        if cid[:4] in seen:
            return cid[:4]
        seen.add(cid[:4])
    raise AssertionError("no two commits shared a 4-digit prefix")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("semantics")
    env = {
        **os.environ,
        "XDG_STATE_HOME": str(root / "state"),
        "XDG_CACHE_HOME": str(root / "cache"),
        "XDG_CONFIG_HOME": str(root / "config"),
    }
    url = f"file://{root}/store"
    repo = Store.init(url).create_repo("cams", chunk_size=CHUNK)
    for rel, data in FILES.items():
        (root / "src" / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / "src" / rel).write_bytes(data)
    os.symlink("top.txt", root / "src" / "link")
    first, _ = put(repo, "main", root / "src", "", "ingest")
    repo.create_tag("v1", first)
    repo.create_branch("dev", first)
    repo.create_branch("many", first)
    main = _empty_commits(repo, "main", 55)
    hidden = main[1]  # 54 steps below main's head
    ambiguous = _ambiguous_prefix(repo, [first, *main])
    with (
        mounted(url, root / "store-mnt", env, "--ref-ttl", "1") as store,
        mounted(f"{url}/cams@{first}", root / "snap-mnt", env) as snap,
        mounted(url, root / "ro-mnt", env, "--read-only") as ro,
    ):
        yield World(url, env, first, hidden, ambiguous, store, snap, ro, root / "src")


def _errno_of(call: Callable[[], object]) -> int:
    with pytest.raises(OSError) as info:
        call()
    return info.value.errno


def _open(path: Path, flags: int) -> None:
    os.close(os.open(path, flags))


# -- layout ---------------------------------------------------------------------------------------


def test_layout(world: World) -> None:
    cams = world.store / "cams"
    assert os.listdir(world.store) == ["cams"]
    assert sorted(os.listdir(cams)) == ["branch", "commit", "tag"]
    assert sorted(os.listdir(cams / "branch")) == ["dev", "main", "many"]
    assert os.listdir(cams / "tag") == ["v1"]
    for virtual in (world.store, cams, cams / "branch", cams / "commit", cams / "tag"):
        assert stat.S_IMODE(os.stat(virtual).st_mode) == 0o555, virtual
    # The snapshot mount shows the commit at the mount point itself.
    assert sorted(os.listdir(world.snap)) == sorted(os.listdir(world.commit_dir))


def test_commit_listing_and_lookup_beyond_it(world: World) -> None:
    commits = os.listdir(world.store / "cams" / "commit")
    assert world.first in commits  # the head of tag v1
    assert world.hidden not in commits  # more than 50 first-parent steps from every head
    for name in (world.hidden, world.hidden[:8]):
        listing = sorted(os.listdir(world.store / "cams" / "commit" / name))
        assert listing == ["big.bin", "images", "link", "top.txt"]


def test_pinned_mount_says_which_commit(world: World, tmp_path: Path) -> None:
    """A mount of a tag, a prefix or REF~N prints the full commit id it pinned."""
    for ref in ("v1", world.first[:8].upper(), "dev~0", world.first):
        said: list[str] = []
        with mounted(f"{world.url}/cams@{ref}", tmp_path / "m", world.env, said=said):
            pass
        shown = f"(commit {world.first})" in said[0]
        assert shown == (ref != world.first), (ref, said[0])


# -- lookup ---------------------------------------------------------------------------------------


def test_lookup_errors(world: World) -> None:
    commit = world.store / "cams" / "commit"
    assert _errno_of(lambda: os.stat(world.commit_dir / "missing")) == errno.ENOENT
    assert _errno_of(lambda: os.stat(world.commit_dir / ("n" * 256))) == errno.ENAMETOOLONG
    assert _errno_of(lambda: os.stat(world.commit_dir / "top.txt" / "x")) == errno.ENOTDIR
    for name in ("xyz1", "zzzz" + world.first[4:], world.first[:3], "0000000000"):
        if not world.first.startswith(name):
            assert _errno_of(lambda n=name: os.stat(commit / n)) == errno.ENOENT, name
    assert _errno_of(lambda: os.stat(commit / world.ambiguous)) == errno.EINVAL


# -- readdir --------------------------------------------------------------------------------------


def test_readdir_order_and_errors(world: World) -> None:
    images = os.listdir(world.commit_dir / "images")
    assert images == sorted(images, key=lambda n: n.encode())
    assert images[0] == "Zeta.txt" and images[-1] == "ä-umlaut.txt"
    assert _errno_of(lambda: os.listdir(world.commit_dir / "top.txt")) == errno.ENOTDIR


# -- open -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["commit", "snapshot"])
def test_open_flags_on_read_only_files(world: World, where: str) -> None:
    base = world.commit_dir if where == "commit" else world.snap
    for flags in (os.O_WRONLY, os.O_RDWR, os.O_RDONLY | os.O_TRUNC, os.O_WRONLY | os.O_APPEND):
        assert _errno_of(lambda f=flags: _open(base / "top.txt", f)) == errno.EROFS, flags
    assert _errno_of(lambda: _open(base / "new.txt", os.O_WRONLY | os.O_CREAT)) == errno.EROFS
    _open(base / "top.txt", os.O_RDONLY | os.O_APPEND)  # nothing can be written through it
    assert _errno_of(lambda: _open(base / "images", os.O_WRONLY)) == errno.EISDIR
    _open(base / "images", os.O_RDONLY)


def test_shared_mappings(world: World) -> None:
    """Snapshots map shared; committed files of a branch (direct I/O) only privately."""

    def mapped(path: Path, access: int) -> bytes:
        with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=access) as m:
            return bytes(m[:])

    top = FILES["top.txt"]
    assert mapped(world.commit_dir / "top.txt", mmap.ACCESS_READ) == top
    assert mapped(world.snap / "top.txt", mmap.ACCESS_READ) == top
    branch_file = world.store / "cams/branch/main/top.txt"
    assert mapped(branch_file, mmap.ACCESS_COPY) == top
    assert _errno_of(lambda: mapped(branch_file, mmap.ACCESS_READ)) == errno.ENODEV


# -- read -----------------------------------------------------------------------------------------


def test_read_returns_the_committed_bytes(world: World) -> None:
    for base in (world.commit_dir, world.snap, world.store / "cams/tag/v1"):
        for rel, data in FILES.items():
            assert (base / rel).read_bytes() == data, (base, rel)
    with open(world.commit_dir / "big.bin", "rb") as fh:  # ranges across chunk boundaries
        fh.seek(CHUNK - 3)
        assert fh.read(CHUNK + 6) == FILES["big.bin"][CHUNK - 3 : 2 * CHUNK + 3]


def _log_text(env: dict[str, str]) -> str:
    logs = Path(env["XDG_STATE_HOME"]) / "s3fsv" / "logs"
    return "".join(p.read_text() for p in logs.glob("*.log"))


@pytest.mark.parametrize("damage", ["delete", "corrupt"])
def test_read_of_damaged_store_data_is_eio_and_logged(
    tmp_path: Path, env: dict[str, str], damage: str
) -> None:
    url = f"file://{tmp_path}/store"
    repo = Store.init(url).create_repo("r", chunk_size=CHUNK)
    (tmp_path / "src").mkdir()
    (tmp_path / "src/big.bin").write_bytes(FILES["big.bin"])
    (tmp_path / "src/small.txt").write_bytes(b"small\n")
    (tmp_path / "src/sub").mkdir()
    (tmp_path / "src/sub/in.txt").write_bytes(b"in\n")
    cid, _ = put(repo, "main", tmp_path / "src", "", "x")
    big, small = repo.stat(cid, "big.bin"), repo.stat(cid, "small.txt")
    victims = {"big.bin": big.chunks[1], "small.txt": small.pack or small.chunks[0]}
    sub_tree = repo.stat(cid, "sub").tree
    for oid in [*victims.values(), sub_tree]:
        key = repo.objects.key(oid)
        if damage == "delete":
            repo.backend.delete(key)
        else:
            repo.backend.put(key, b"not what was stored")
    with mounted(f"{url}/r@{cid}", tmp_path / "mnt", env) as mp:
        for name in victims:
            assert _errno_of(lambda n=name: (mp / n).read_bytes()) == errno.EIO, name
        assert _errno_of(lambda: os.listdir(mp / "sub")) == errno.EIO  # not "no such dir"
    log = _log_text(env)
    for oid in victims.values():  # by id, or by its key in the store
        assert oid in log or repo.objects.key(oid) in log, f"no log line names {oid}"


# -- stat -----------------------------------------------------------------------------------------


def _commit_time(world: World) -> float:
    when = Store.open(world.url).repo("cams").commit_object(world.first).time
    return datetime.fromisoformat(when.replace("Z", "+00:00")).timestamp()


def test_stat_fields(world: World) -> None:
    for rel, data in FILES.items():
        st, src = os.stat(world.commit_dir / rel), os.stat(world.src / rel)
        assert stat.S_ISREG(st.st_mode) and st.st_size == len(data)
        assert st.st_mtime_ns == src.st_mtime_ns
        assert st.st_ctime_ns == st.st_atime_ns == st.st_mtime_ns
        assert stat.S_IMODE(st.st_mode) == stat.S_IMODE(src.st_mode) & ~0o222
        assert st.st_nlink == 1 and (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())
        assert st.st_blocks == (len(data) + 511) // 512
    d = os.stat(world.commit_dir / "images")
    assert stat.S_ISDIR(d.st_mode) and d.st_nlink == 2
    for root in (world.commit_dir, world.store / "cams/tag/v1", world.snap):
        assert os.stat(root).st_mtime == pytest.approx(_commit_time(world), abs=1e-3)
    assert _errno_of(lambda: os.stat(world.snap / "missing")) == errno.ENOENT
    assert _errno_of(lambda: os.stat(world.snap / "top.txt/x")) == errno.ENOTDIR


def test_inode_numbers_are_stable(world: World) -> None:
    inos = {rel: os.stat(world.commit_dir / rel).st_ino for rel in FILES}
    assert len(set(inos.values())) == len(inos)
    drop_page_cache()
    for rel, ino in inos.items():
        assert os.stat(world.commit_dir / rel).st_ino == ino
        assert os.stat(world.store / "cams/tag/v1" / rel).st_ino == ino  # same commit and path


def test_statfs_reports_the_cache_disk(world: World) -> None:
    mounted_fs, cache_fs = os.statvfs(world.store), os.statvfs(world.env["XDG_CACHE_HOME"])
    assert mounted_fs.f_blocks * mounted_fs.f_frsize == cache_fs.f_blocks * cache_fs.f_frsize
    assert mounted_fs.f_namemax == 255


# -- xattr ----------------------------------------------------------------------------------------


def test_xattrs_of_snapshots(world: World) -> None:
    repo = Store.open(world.url).repo("cams")
    for rel, data in FILES.items():
        path = world.commit_dir / rel
        assert os.getxattr(path, "user.s3fsv.sha256").decode() == hashlib.sha256(data).hexdigest()
        assert os.getxattr(path, "user.s3fsv.commit").decode() == world.first
        assert os.getxattr(path, "user.s3fsv.repo") == b"cams"
    images: TreeEntry = repo.stat(world.first, "images")
    assert os.getxattr(world.commit_dir / "images", "user.s3fsv.tree").decode() == images.tree
    assert os.getxattr(world.snap / "images", "user.s3fsv.commit").decode() == world.first
    assert _errno_of(lambda: os.getxattr(world.snap / "top.txt", "user.nope")) == errno.ENODATA
    # Linux refuses user.* attributes on symlinks, so a link lists none it could not read.
    assert os.listxattr(world.commit_dir / "link", follow_symlinks=False) == []
    staged_link = world.store / "cams/branch/dev/staged-link"
    os.symlink("top.txt", staged_link)
    assert os.listxattr(staged_link, follow_symlinks=False) == []


def test_xattr_changes(world: World) -> None:
    for path in (world.commit_dir / "top.txt", world.snap / "top.txt", world.store / "cams"):
        assert _errno_of(lambda p=path: os.setxattr(p, "user.x", b"1")) == errno.EROFS, path
        assert _errno_of(lambda p=path: os.removexattr(p, "user.x")) == errno.EROFS, path
    ro_branch = world.ro / "cams/branch/dev/top.txt"
    assert _errno_of(lambda: os.setxattr(ro_branch, "user.x", b"1")) == errno.EROFS
    staged = world.store / "cams/branch/dev/staged-xattr.txt"
    staged.write_bytes(b"new\n")
    assert _errno_of(lambda: os.setxattr(staged, "user.x", b"1")) == errno.ENOTSUP
    assert _errno_of(lambda: os.removexattr(staged, "user.x")) == errno.ENOTSUP
    assert os.getxattr(staged, "user.s3fsv.staged") == b"1"
    assert os.getxattr(staged.parent, "user.s3fsv.staged") == b"1"  # a change below it
    assert "user.s3fsv.commit" not in os.listxattr(staged)


# -- write, rename, unlink ------------------------------------------------------------------------


def test_branch_refusals(world: World) -> None:
    branch = world.store / "cams/branch/dev"
    (branch / "mine.txt").write_bytes(b"x")
    assert _errno_of(lambda: os.chown(branch / "mine.txt", os.getuid() + 1, -1)) == errno.EPERM
    assert _errno_of(lambda: os.link(branch / "mine.txt", branch / "hard")) == errno.EPERM
    assert _errno_of(lambda: os.mknod(branch / "fifo", 0o600 | stat.S_IFIFO)) == errno.EPERM
    with socket.socket(socket.AF_UNIX) as sock:
        assert _errno_of(lambda: sock.bind(str(branch / "sock"))) == errno.EPERM
    assert _errno_of(lambda: os.rmdir(branch)) == errno.EPERM
    assert _errno_of(lambda: os.rename(branch, branch.parent / "renamed")) == errno.EPERM
    assert _errno_of(lambda: os.mknod(world.commit_dir / "fifo", stat.S_IFIFO)) == errno.EROFS


def test_rename_errors(world: World) -> None:
    branch = world.store / "cams/branch/dev"
    (branch / "full/sub").mkdir(parents=True)
    (branch / "empty").mkdir()
    (branch / "file.txt").write_bytes(b"f")
    assert _errno_of(lambda: os.rename(branch / "empty", branch / "full")) == errno.ENOTEMPTY
    assert _errno_of(lambda: os.rename(branch / "empty", branch / "file.txt")) == errno.ENOTDIR
    assert _errno_of(lambda: os.rename(branch / "file.txt", branch / "empty")) == errno.EISDIR
    other = world.store / "cams/branch/main"
    assert _errno_of(lambda: os.rename(branch / "file.txt", other / "f")) == errno.EXDEV
    assert _errno_of(lambda: os.rename(branch / "file.txt", world.commit_dir / "f")) == errno.EXDEV
    assert _errno_of(lambda: os.rename(world.commit_dir / "top.txt", branch / "t")) == errno.EXDEV
    tag = world.store / "cams/tag/v1"
    assert _errno_of(lambda: os.rename(world.commit_dir / "top.txt", tag / "t")) == errno.EROFS
    assert _errno_of(lambda: os.rmdir(branch / "full")) == errno.ENOTEMPTY
    os.rename(branch / "empty", branch / "full/sub")  # onto an empty directory: replaced
    assert not (branch / "empty").exists() and (branch / "full/sub").is_dir()


# -- fsync ----------------------------------------------------------------------------------------


def test_fsync(world: World) -> None:
    staged = world.store / "cams/branch/dev/synced.txt"
    paths = [world.commit_dir / "top.txt", world.snap / "top.txt", world.snap / "images", staged]
    staged.write_bytes(b"synced\n")
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.fdatasync(fd)
        finally:
            os.close(fd)
    fd = os.open(staged, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, b"more\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    assert staged.read_bytes() == b"synced\nmore\n"
