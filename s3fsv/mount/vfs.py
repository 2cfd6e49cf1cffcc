"""The mounted filesystem as plain Python: path -> attributes, listings, reads, xattrs.

No FUSE here: ``fuse.py`` is a thin adapter that calls one method of ``Filesystem`` per FUSE
operation and maps the ``S3fsvError`` it raises to an errno. The layout (ARCHITECTURE.md)::

    [<repo>/]branch/<name>/...   the branch head, refreshed at most every ``ref_ttl`` seconds
    [<repo>/]commit/<id>/...     any commit by full id or unique prefix (immutable)
    [<repo>/]tag/<name>/...      a tag (immutable)

or a single snapshot at the root for ``STORE/REPO@REF`` mounts.
"""

from __future__ import annotations

import itertools
import logging
import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from cachetools import LRUCache, TTLCache

from s3fsv.config import state_dir
from s3fsv.errors import (
    AccessDenied,
    InvalidName,
    NotADirectory,
    NotFound,
    S3fsvError,
    UsageError,
)
from s3fsv.mount.handles import Attr, OpenFile, OpenStaged, RepoState, Snapshot, inode
from s3fsv.mount.last_good import LastGood
from s3fsv.mount.overlay import BranchOverlay, Node
from s3fsv.mount.purges import PurgeWatch, apply_purges
from s3fsv.mount.staging import Read, SlotLock, Staging
from s3fsv.mount.vfs_read import ReadOps
from s3fsv.mount.vfs_write import WriteOps
from s3fsv.store.listing import Listed, dir_listing, listed
from s3fsv.store.objects import TreeEntry, check_name, is_commit_prefix, is_object_id
from s3fsv.store.reader import ChunkReader, Sequential
from s3fsv.store.store import Store
from s3fsv.store.tree import entries_after, lookup, root_entry
from s3fsv.store.wholefile import WholeFiles

log = logging.getLogger(__name__)

SECTIONS = ("branch", "commit", "tag")
RECENT_COMMITS = 50
DIR_LOOKAHEAD = 16  # siblings after a listed directory whose listings are loaded ahead
XATTR_PREFIX = "user.s3fsv."


@dataclass(frozen=True)
class MountSpec:
    """What to show: the whole store, one repo, or one snapshot (``ref``) of a repo."""

    repo: str | None = None
    ref: str | None = None
    ref_ttl: float = 5.0
    read_only: bool = False
    rw: bool = False  # a REPO@BRANCH mount is writable only when asked
    staging_root: str | None = None  # where branch staging areas live (state dir)


class Filesystem(ReadOps, WriteOps):
    """A mount as plain Python. Thread-safe. Methods take absolute mount paths (``/a/b``)."""

    def __init__(
        self, store: Store, spec: MountSpec, cache: object, *, metrics: Any = None
    ) -> None:
        """``metrics``: a ``metrics.MountMetrics`` to record reads and commits in, or None."""
        from s3fsv.store.cache import DiskCache

        if not isinstance(cache, DiskCache):
            raise TypeError("a mount needs a DiskCache")
        self.metrics = metrics
        self.store = store
        self.spec = spec
        self.cache = cache
        self._repos: dict[str, RepoState] = {}
        self._repo_names: TTLCache[str, list[str]] = TTLCache(maxsize=1, ttl=spec.ref_ttl)
        self._last_good = LastGood()  # refs and listings as last read, for store outages
        self._lock = threading.Lock()
        self._handles: dict[int, OpenFile | OpenStaged] = {}
        self._overlays: dict[tuple[str, str], BranchOverlay] = {}
        self._slots: list[SlotLock] = []
        self.reads: set[Read] = set()
        self._next_fh = itertools.count(1)
        self._resolved: LRUCache[tuple[str, str], TreeEntry] = LRUCache(maxsize=32_768)
        self._fixed_snaps: LRUCache[tuple[str, str, str], Snapshot] = LRUCache(maxsize=4096)
        # Read-ahead state per path for mounts without file handles (immutable snapshots).
        self._sequential: LRUCache[str, Sequential] = LRUCache(maxsize=256)
        self.uid, self.gid = os.getuid(), os.getgid()
        self.started_ns = time.time_ns()
        # "passthrough" once the FUSE session has it (fuse.py): the kernel reads files whole
        # in the cache from their whole-file entries; "fuse": every read comes here.
        self.read_path_mode = "fuse"
        self.whole = WholeFiles(cache)
        self.purges = PurgeWatch(store.backend, cache, spec.ref_ttl, self._forget_chunks)
        # Set by the FUSE adapter: drop the kernel's caches of a path (purged files).
        self.invalidate: Callable[[str], None] | None = None
        self.fixed: Snapshot | None = None
        if spec.repo is not None:
            self._state(spec.repo)  # fails early for an unknown repo
            if spec.ref is not None:
                self.fixed = self._snapshot(spec.repo, "@", spec.ref)
                if self.fixed.immutable:
                    self._state(spec.repo).reader.warm_snapshot(self.fixed.tree)
        self.purges.start(self._apply_purges)

    @property
    def immutable(self) -> bool:
        """True when nothing in this mount can change (a pinned commit or tag)."""
        return self.fixed is not None and self.fixed.immutable

    def close(self) -> None:
        """Release readers, staging databases, slot locks and the cache (which evicts if it
        is over budget). Safe to call twice."""
        self.purges.stop()
        with self._lock:
            states, self._repos = list(self._repos.values()), {}
            overlays, self._overlays = list(self._overlays.values()), {}
            slots, self._slots = self._slots, []
        for state in states:
            state.reader.close()
        for overlay in overlays:
            with overlay.commit_lock:  # let a commit in progress finish first
                overlay.early.close()
                overlay.staging.close()
        for slot in slots:
            slot.release()
        self.whole.close()
        self.cache.close()

    # -- writable branches ------------------------------------------------------------------
    def _writable(self, snap: Snapshot) -> bool:
        if snap.immutable or self.spec.read_only:
            return False
        return snap.label.startswith("branch/") or self.spec.rw

    def staging_root(self) -> Path:
        """Where this mount's branch staging areas live."""
        return Path(self.spec.staging_root or state_dir()) / "staging"

    def _overlay(self, snap: Snapshot) -> BranchOverlay | None:
        """The staging overlay of a writable branch view, created on first use."""
        if not self._writable(snap):
            return None
        branch = snap.label.split("/", 1)[1] if "/" in snap.label else snap.label[1:]
        key = (snap.repo, branch)
        with self._lock:
            overlay = self._overlays.get(key)
        if overlay is not None:
            return overlay
        slot = SlotLock(self.staging_root(), self.store.url, snap.repo, branch)
        state = self._state(snap.repo)

        def head() -> tuple[str, str]:
            current = self._snapshot(snap.repo, "branch", branch)
            return current.commit, current.tree

        overlay = BranchOverlay(state.repo, branch, state.reader, Staging(slot.path), head)
        with self._lock:
            if key in self._overlays:
                slot.release()
                return self._overlays[key]
            self._overlays[key] = overlay
            self._slots.append(slot)
            seen = list(self.reads)
        for read in seen:
            overlay.record_read(read)
        log.info("staging for %s@%s in %s", snap.repo, branch, slot.path)
        return overlay

    def _record(self, read: Read) -> None:
        """An input for every writable branch of this mount (each records it until its next
        commit or discard); ``reads`` keeps them all, for branches written later."""
        with self._lock:
            self.reads.add(read)
            overlays = list(self._overlays.values())
        for overlay in overlays:
            overlay.record_read(read)

    def branch_moved(self, repo: str, branch: str, commit: str | None) -> None:
        """Show ``commit`` as the head of ``branch`` at once (after this mount committed); with
        None, read the head from the store at its next use instead of after --ref-ttl."""
        state = self._state(repo)
        with state.lock:
            state.moves += 1  # a head read before this is older than what follows
            if commit is None:
                state.heads.pop(branch, None)
                return
            state.heads[branch] = commit
        self._last_good.remember(_head_key(repo, branch), commit)

    def known_heads(self) -> dict[tuple[str, str], str]:
        """The branch heads this mount shows now, as last read (at most ``ref_ttl`` ago);
        branches not looked at since then are left out."""
        with self._lock:
            states = dict(self._repos)
        out = {}
        for name, state in states.items():
            with state.lock:
                out.update({(name, b): c for b, c in list(state.heads.items())})
        return out

    # -- purges -----------------------------------------------------------------------------
    def _forget_chunks(self, oids: list[str]) -> None:
        with self._lock:
            states = list(self._repos.values())
        for state in states:
            state.reader.forget(oids)
        if oids:  # a whole-file entry is named by its file, not its chunks: drop them all
            self.whole.discard_all()

    def _apply_purges(self) -> None:
        apply_purges(self)

    # -- repos and refs ---------------------------------------------------------------------
    def _state(self, name: str) -> RepoState:
        with self._lock:
            state = self._repos.get(name)
        if state is not None:
            return state
        repo = self.store.repo(name)
        ttl = self.spec.ref_ttl
        state = RepoState(
            repo,
            ChunkReader(repo.objects, self.cache, repo.chunk_size, meter=self.metrics),
            TTLCache(maxsize=1024, ttl=ttl),
            TTLCache(maxsize=4, ttl=ttl),
        )
        with self._lock:
            known = self._repos.get(name)
            if known is None:
                self._repos[name] = state
        if known is not None:  # another thread got there first
            state.reader.close()
            return known
        if self.spec.ref is None:  # repo/store mount: main's head (or commits sharing its dirs)
            state.reader.warm_later(lambda: self._tree(state, self._branch_head(state, "main")))
        return state

    def _repo_list(self) -> list[str]:
        names = self._repo_names.get("")
        if names is None:
            names = self._last_good.get("repos", self.store.repos)
            self._repo_names[""] = names
        return names

    def _has_repo(self, name: str) -> bool:
        """Whether the store has repo ``name``. Credentials limited to some repos (from an
        access gateway) may not list the store's top level: then the repo itself is asked."""
        try:
            return name in self._repo_list()
        except AccessDenied:
            try:
                self._state(name)
            except (NotFound, InvalidName):
                return False
            return True

    def _snapshot(self, repo: str, section: str, name: str) -> Snapshot:
        state = self._state(repo)
        key = (repo, section, name)
        if section == "@":  # REPO@NAME: a branch if there is one, else resolved once below
            with self._lock:
                snap = self._fixed_snaps.get(key)
            if snap is not None:
                return snap
        if section in ("branch", "@"):
            commit = self._head_within_ttl(state, name, required=section == "branch")
            if commit is not None:
                label = f"branch/{name}" if section == "branch" else f"@{name}"
                return Snapshot(repo, commit, self._tree(state, commit), False, label)
        # Tags, commits and other refs are resolved once per mount: no TTL.
        with self._lock:
            snap = self._fixed_snaps.get(key)
        if snap is not None:
            return snap
        if section == "tag":
            commit = state.repo.refs.tag(name)
        elif section == "commit":
            hexid = name.lower()  # as the command line takes ids
            if not is_commit_prefix(hexid):
                raise NotFound(f"not a commit id: {name}")
            if is_object_id(hexid):  # no ref is named like this: just check the commit
                commit = hexid
                state.repo.commit_object(commit)
            else:
                commit = state.repo.resolve(hexid)
        else:
            commit = state.repo.resolve(name)
        commit = self.purges.current(commit)  # a commit a purge rewrote shows its rewrite
        label = f"{section}/{name}" if section != "@" else f"@{name}"
        snap = Snapshot(repo, commit, self._tree(state, commit), True, label)
        with self._lock:
            self._fixed_snaps[key] = snap
        return snap

    def _branch_head(self, state: RepoState, name: str) -> str:
        """The head of branch ``name`` as the store has it now (as last read, while the store
        is unreachable)."""
        return self._last_good.get(
            _head_key(state.repo.name, name), lambda: state.repo.branch_head(name).commit
        )

    def _head_within_ttl(self, state: RepoState, name: str, *, required: bool) -> str | None:
        """The head of branch ``name``, read from the store at most every ``ref_ttl`` seconds;
        None when there is no such branch, unless ``required`` (then ``NotFound``)."""
        with state.lock:
            commit = state.heads.get(name)
            moves = state.moves
        if commit is not None:
            return commit
        try:
            fetched = self._branch_head(state, name)
        except (NotFound, InvalidName):
            if required:
                raise
            return None
        with state.lock:
            if state.moves == moves:
                state.heads[name] = commit = fetched
            else:  # this mount committed meanwhile: what it set is newer
                commit = state.heads.get(name) or fetched
        return commit

    def _tree(self, state: RepoState, commit: str) -> str:
        return state.repo.commit_object(commit).tree

    def _recent_commits(self, state: RepoState) -> list[str]:
        with state.lock:
            recent = state.recent.get("")
        if recent is not None:
            return recent
        recent = self._last_good.get(("recent", state.repo.name), lambda: self._walk_recent(state))
        with state.lock:
            state.recent[""] = recent
        return recent

    def _walk_recent(self, state: RepoState) -> list[str]:
        seen: dict[str, None] = {}
        refs = list(state.repo.refs.branches().values()) + list(state.repo.refs.tags().values())
        for head in refs:
            cid: str | None = head
            for _ in range(RECENT_COMMITS):
                if cid is None or cid in seen:
                    break
                seen[cid] = None
                parents = state.repo.commit_object(cid).parents
                cid = parents[0] if parents else None
        return sorted(seen)

    # -- path resolution --------------------------------------------------------------------
    def _locate(self, path: str | None) -> tuple[str, Snapshot | None, list[str]]:
        """Split a mount path into (virtual-dir key, snapshot, path inside the snapshot).
        For virtual directories the snapshot is None and the key names the directory.
        ``None`` (libfuse's null path for an open file whose directory was removed): NotFound."""
        if path is None:
            raise NotFound("the file has no path any more (its directory was removed)")
        parts = [p for p in path.split("/") if p]
        for p in parts:
            check_name(p)
        if self.fixed is not None:
            if self.fixed.immutable:
                return "", self.fixed, parts
            # A REPO@BRANCH mount: the head as of now (within --ref-ttl), not as of mounting.
            return "", self._snapshot(self.fixed.repo, "@", self.spec.ref or ""), parts
        if self.spec.repo is None:
            if not parts:
                return "/", None, []
            repo, parts = parts[0], parts[1:]
            if not self._has_repo(repo):
                raise NotFound(f"no such repo: {repo}")
        else:
            repo = self.spec.repo
        if not parts:
            return f"repo:{repo}", None, []
        section, parts = parts[0], parts[1:]
        if section not in SECTIONS:
            raise NotFound(f"no such entry: {section}")
        if not parts:
            return f"section:{repo}:{section}", None, []
        return "", self._snapshot(repo, section, parts[0]), parts[1:]

    def _entry(self, snap: Snapshot, inner: list[str]) -> TreeEntry:
        # A root is dated by its commit, and two commits may share a tree: key roots by commit.
        key = (snap.tree, "/".join(inner)) if inner else (snap.commit, "")
        with self._lock:
            found = self._resolved.get(key)
        if found is not None:
            return found
        state = self._state(snap.repo)
        if not inner:
            when = _iso_ns(state.repo.commit_object(snap.commit).time)
            entry = replace(root_entry(snap.tree), mtime_ns=when)
        else:
            parent = self._entry(snap, inner[:-1])
            if parent.kind != "dir":
                raise NotADirectory(f"not a directory: {'/'.join(inner[:-1])}")
            found = lookup(state.repo.objects, parent.tree, inner[-1])
            if found is None:
                raise NotFound(f"no such file or directory: {'/'.join(inner)}")
            entry = found
        with self._lock:
            self._resolved[key] = entry
        return entry

    def _ino_key(self, snap: Snapshot, inner: list[str]) -> str:
        ident = f"{snap.repo}:{snap.label if not snap.immutable else snap.commit}:"
        return ident + "/".join(inner)

    def _ino(self, snap: Snapshot, inner: list[str]) -> int:
        return inode(self._ino_key(snap, inner))

    def _attr(self, snap: Snapshot, inner: list[str], entry: TreeEntry) -> Attr:
        return _entry_attr(entry, self._ino(snap, inner))

    def _overlay_attr(
        self, ov: BranchOverlay, snap: Snapshot, inner: list[str], node: Node
    ) -> Attr:
        mode, size, mtime, kind = ov.attrs(node)
        return Attr(mode, size, mtime, self._ino(snap, inner), 2 if kind == "dir" else 1)

    def _virtual_attr(self, key: str) -> Attr:
        return Attr(stat.S_IFDIR | 0o555, 0, self.started_ns, inode("v:" + key), 2)

    # -- operations -------------------------------------------------------------------------
    def getattr(self, path: str | None, fh: int | None = None) -> Attr:
        """Attributes of ``path``; with an open file handle ``fh`` (not 0), of that open file
        when ``path`` is None or no longer resolves (an unlinked file, see ``hidden.py``)."""
        try:
            return self._path_attr(path)
        except NotFound:
            if not fh:
                raise
        h = self._handle(fh)
        return h.attr() if isinstance(h, OpenStaged) else h.attr(self._writable(h.snapshot))

    def _path_attr(self, path: str | None) -> Attr:
        key, snap, inner = self._locate(path)
        if snap is None:
            return self._virtual_attr(key)
        ov = self._overlay(snap)
        if ov is not None:
            return self._overlay_attr(ov, snap, inner, ov.node(inner))
        return self._attr(snap, inner, self._entry(snap, inner))

    def readdir(self, path: str) -> list[tuple[str, Attr]]:
        key, snap, inner = self._locate(path)
        if snap is None:
            return [(n, self._virtual_attr(f"{key}/{n}")) for n in self._virtual_names(key)]
        ov = self._overlay(snap)
        if ov is not None:
            return [
                (name, self._overlay_attr(ov, snap, [*inner, name], node))
                for name, node in ov.listdir(inner)
            ]
        entry = self._entry(snap, inner)
        if entry.kind != "dir":
            raise NotADirectory(f"not a directory: {path}")
        state = self._state(snap.repo)
        if not inner and snap.immutable:  # a walk of a commit or tag starts with its root
            state.reader.warm_snapshot(snap.tree)
        state.reader.load_pages(entry.tree)
        children = list(dir_listing(state.repo.objects, entry.tree))
        subdirs = [TreeEntry(c[0], "dir", c[2], c[3], tree=c[5]) for c in children if c[5]]
        state.reader.warm_trees(d.tree for d in subdirs)
        if inner:
            self._warm_next_dirs(state, snap, inner)
        # Only subdirectories are remembered: a walk lists them next, while a file is looked
        # up (if ever: the listing carries its attributes) with one search of this listing.
        where = "".join(f"{p}/" for p in inner)
        with self._lock:
            for d in subdirs:
                self._resolved[(snap.tree, where + d.name)] = d
        prefix = self._ino_key(snap, inner) + ("/" if inner else "")
        return [(c[0], _listed_attr(c, inode(prefix + c[0]))) for c in children]

    def _warm_next_dirs(self, state: RepoState, snap: Snapshot, inner: list[str]) -> None:
        """A walk lists a directory's next siblings after it: load them ahead (the root's
        listing warmed only its first subdirectories)."""
        try:
            parent = self._entry(snap, inner[:-1])
            after = entries_after(state.repo.objects, parent.tree, inner[-1], DIR_LOOKAHEAD)
        except S3fsvError as err:
            log.debug("directory look-ahead skipped: %s", err)
            return
        state.reader.warm_trees(e.tree for e in after if e.kind == "dir")

    def _virtual_names(self, key: str) -> list[str]:
        if key == "/":
            return self._repo_list()
        if key.startswith("repo:"):
            return list(SECTIONS)
        _, repo, section = key.split(":")
        state = self._state(repo)
        name = state.repo.name
        if section == "branch":
            return sorted(self._last_good.get(("branches", name), state.repo.refs.branches))
        if section == "tag":
            return sorted(self._last_good.get(("tags", name), state.repo.refs.tags))
        return self._recent_commits(state)

    def readlink(self, path: str) -> str:
        _, snap, inner = self._locate(path)
        if snap is None:
            raise UsageError(f"not a symlink: {path}")
        ov = self._overlay(snap)
        if ov is not None:
            node = ov.node(inner)
            target = node.staged.target if node.staged is not None else node.base.target  # type: ignore[union-attr]
            if node.kind != "link":
                raise UsageError(f"not a symlink: {path}")
            return target
        entry = self._entry(snap, inner)
        if entry.kind != "link":
            raise UsageError(f"not a symlink: {path}")
        return entry.target

    # -- extended attributes ----------------------------------------------------------------
    def xattrs(self, path: str) -> dict[str, bytes]:
        key, snap, inner = self._locate(path)
        if snap is None:
            return {}
        ov = self._overlay(snap)
        # Linux allows user.* attributes only on files and directories: links list none.
        if ov is not None:
            node = ov.node(inner)
            if node.kind == "link":
                return {}
            # Staged itself or changed below: no commit holds what is shown here (yet).
            if node.staged is not None or ov.staging.has_below("/".join(inner)):
                return {XATTR_PREFIX + "repo": snap.repo.encode(), XATTR_PREFIX + "staged": b"1"}
            entry = node.base if node.base is not None else ov.as_entry(node.staged)
        else:
            entry = self._entry(snap, inner)
            if entry.kind == "link":
                return {}
        out = {
            XATTR_PREFIX + "repo": snap.repo.encode(),
            XATTR_PREFIX + "commit": snap.commit.encode(),
        }
        if entry.kind == "file":
            out[XATTR_PREFIX + "sha256"] = entry.sha256.encode()
            if entry.source is not None:
                out[XATTR_PREFIX + "source"] = entry.source.url.encode()
            for name, value in entry.attrs:  # imported metadata: user.s3fsv.attr.house=h1234
                out[f"{XATTR_PREFIX}attr.{name}"] = value.encode()
        elif entry.kind == "dir":
            out[XATTR_PREFIX + "tree"] = entry.tree.encode()
        return out

    def statfs(self) -> dict[str, int]:
        st = os.statvfs(self.cache.root)
        return {
            "f_bsize": st.f_bsize,
            "f_frsize": st.f_frsize,
            "f_blocks": st.f_blocks,
            "f_bfree": st.f_bfree,
            "f_bavail": st.f_bavail,
            "f_files": st.f_files,
            "f_ffree": st.f_ffree,
            "f_favail": st.f_favail,
            "f_namemax": 255,
        }


def _entry_attr(entry: TreeEntry, ino: int) -> Attr:
    return _listed_attr(listed(entry), ino)


def _listed_attr(item: Listed, ino: int) -> Attr:
    _, kind, mode, mtime_ns, size, _ = item
    perm = mode & 0o7777 & ~0o222  # snapshots and read-only views take no writes
    if kind == "dir":
        return Attr(stat.S_IFDIR | (perm or 0o555), 0, mtime_ns, ino, 2)
    if kind == "link":
        return Attr(stat.S_IFLNK | 0o777, size, mtime_ns, ino)
    return Attr(stat.S_IFREG | perm, size, mtime_ns, ino)


def _head_key(repo: str, branch: str) -> tuple[str, str, str]:
    return ("head", repo, branch)


def _iso_ns(when: str) -> int:
    """Nanoseconds since the epoch of a commit's ISO 8601 time (0 if it does not parse)."""
    try:
        moment = datetime.fromisoformat(when.replace("Z", "+00:00"))
    except ValueError:
        return 0
    return int(moment.timestamp()) * 10**9 + moment.microsecond * 1000
