"""Status, commit and discard of a writable branch's staged changes (mixed into
``BranchOverlay``; see ``overlay.py``), and the provenance a commit records."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from s3fsv.errors import Conflict, Interrupted, S3fsvError
from s3fsv.mount.staging import Read, committed_entry, watch_sets
from s3fsv.store.objects import TreeEntry, check_name
from s3fsv.store.repo import related_paths
from s3fsv.store.tree import lookup
from s3fsv.store.upload import upload_files

if TYPE_CHECKING:
    from s3fsv.mount.staging import Staging
    from s3fsv.mount.write_behind import WriteBehind
    from s3fsv.store.repo import Repository

log = logging.getLogger(__name__)

MAX_COMMANDS = 20
UPLOAD_THREADS = 16


class CommitOps:
    """Mixin: needs the staging area, repo and locks of ``BranchOverlay``."""

    repo: Repository
    branch: str
    staging: Staging
    lock: threading.RLock
    commit_lock: threading.Lock
    early: WriteBehind
    open_data: dict[str, int]
    _commands: set[str]
    _head: Callable[[], tuple[str, str]]
    _seen: set[str]

    def _follow(self, head: str) -> None:
        raise NotImplementedError

    def stale(self) -> set[str]:
        raise NotImplementedError

    def reset_base(self, head: str) -> None:
        raise NotImplementedError

    @property
    def base_commit(self) -> str:
        return self.staging.get_meta("base") or self._head()[0]

    def _in_use(self) -> set[str]:
        raise NotImplementedError

    def status(self) -> dict[str, Any]:
        added, modified, deleted = [], [], []
        for e in self.staging.all():
            parts = e.path.split("/")
            in_base = self._in_head(parts)
            if e.kind == "deleted":
                deleted.append(e.path)
            elif e.kind != "dir" or not in_base:
                (modified if in_base else added).append(e.path)
        interrupted = self.staging.interrupted()
        return {
            "repo": self.repo.name,
            "branch": self.branch,
            "base": self.base_commit,
            "added": added,
            "modified": modified,
            "deleted": deleted,
            "interrupted": sorted(e.path for e in self.staging.all() if e.data in interrupted),
        }

    def _in_head(self, parts: list[str]) -> bool:
        _, tree = self._head()
        entry: TreeEntry | None = None
        for name in parts:
            entry = lookup(self.repo.objects, tree, name) if tree else None
            if entry is None:
                return False
            tree = entry.tree if entry.kind == "dir" else ""
        return True

    def commit(
        self,
        message: str,
        author: str | None,
        provenance: dict[str, Any],
        *,
        overwrite: bool = False,
    ) -> str | None:
        """Commit the staged changes; on success drop those that did not change meanwhile.
        Commits of one branch run one at a time. A path another writer changed since this mount
        staged or read it is a ``Conflict``, unless ``overwrite``: then the staged version
        replaces theirs (as of what the view shows)."""
        with self.commit_lock:
            return self._commit(message, author, provenance, overwrite)

    def _commit(
        self, message: str, author: str | None, provenance: dict[str, Any], overwrite: bool
    ) -> str | None:
        with self.lock:
            view = self._head()[0]
            if view != self.base_commit:
                self._follow(view)  # what the view shows is what the changes were made against
            snapshot = self.staging.all()
            generations = dict(self.staging.generation)
            reads = self.staging.reads()
            # Taken with the entries: a command first seen during the upload stays recorded
            # for the next commit, with the writes it made meanwhile.
            commands = json.loads(self.staging.get_meta("commands") or "[]")
            since = self.base_commit  # what the stale marks are relative to
            base = view if overwrite else since
            stale = self.stale()
            interrupted = self.staging.interrupted()
        if not snapshot:
            return None
        suspect = [e.path for e in snapshot if e.data and e.data in interrupted]
        if suspect:
            raise Interrupted(suspect)
        mine = {e.path for e in snapshot}
        paths, ensure = watch_sets(snapshot)
        hits = related_paths(paths, stale) | (ensure & stale)
        if hits and not overwrite:
            raise Conflict(hits, self.branch)
        changes: dict[str, TreeEntry | None] = {}
        data_stamps: dict[str, tuple[int, int]] = {}
        for e in snapshot:
            check_name(e.path.rpartition("/")[2])
            if not (e.kind == "file" and e.data):
                changes[e.path] = committed_entry(e)
        local = [e for e in snapshot if e.kind == "file" and e.data]
        self.early.settle(e.data or "" for e in local)
        data = {e.path: e.data or "" for e in local}
        uploaded = upload_files(
            self.repo.objects,
            self.repo.chunk_size,
            {path: self.staging.data_path(name) for path, name in data.items()},
            threads=UPLOAD_THREADS,
            early=lambda path, up: self.early.content(data[path], up),
        )
        for e in local:
            content, st = uploaded[e.path]
            data_stamps[e.path] = (st.st_size, st.st_mtime_ns)
            changes[e.path] = content.entry(e.path.rpartition("/")[2], e.mode, st.st_mtime_ns)
        prov = dict(provenance)
        prov["inputs"] = [{"repo": r.repo, "commit": r.commit, "via": r.via} for r in reads]
        if commands:
            prov["commands"] = commands
        cid = self.repo.commit(
            self.branch,
            changes,
            message,
            author=author,
            provenance=prov,
            base=base,
            missing_ok=True,
        )
        foreign = self._changed_under(cid, since)
        with self.lock, self.staging.transaction():
            for e in snapshot:
                if self.staging.generation.get(e.path) != generations.get(e.path):
                    continue  # changed again while we committed: stays staged
                if e.path in data_stamps and e.data:
                    try:
                        st = os.stat(self.staging.data_path(e.data))
                    except FileNotFoundError:
                        st = None
                    if st is None or (st.st_size, st.st_mtime_ns) != data_stamps[e.path]:
                        continue
                if e.data and e.data in self.open_data:
                    # Still open: it stays staged, so every descriptor, old or new, keeps
                    # writing the same data file wherever the file is renamed to.
                    continue
                self.staging.remove(e.path)
            paths, ensure = watch_sets(self.staging.all())
            if overwrite:  # theirs was replaced knowingly: not stale again
                paths, ensure = paths - mine, ensure - mine
            watched = paths | (self._seen - mine if overwrite else self._seen)
            still = (stale - mine) | related_paths(watched, foreign) | (ensure & foreign)
            self.staging.set_meta("stale", json.dumps(sorted(still)))
            self.staging.set_meta("base", cid)
            self.staging.clear_reads(reads)
            self._reads.difference_update(reads)
            later = json.loads(self.staging.get_meta("commands") or "[]")
            self.staging.set_meta("commands", json.dumps([c for c in later if c not in commands]))
            self._commands.difference_update(commands)
            self.staging.collect_garbage(self._in_use())
            self.early.forget(e.data for e in local if e.data not in self.open_data)
        return cid

    def _changed_under(self, cid: str, base: str) -> set[str]:
        """What other writers changed between ``base`` and the parent our commit ``cid`` went
        on top of: staged or read paths among them are stale from now on."""
        parents = self.repo.commit_object(cid).parents
        if not parents or parents[0] == base:
            return set()
        try:
            theirs = self.repo.diff_trees(
                self.repo.commit_object(base).tree, self.repo.commit_object(parents[0]).tree
            )
        except S3fsvError as err:  # the commit is made: be safe about what stays staged
            log.warning("cannot list changes between %s and %s: %s", base, parents[0], err)
            return {e.path for e in self.staging.all()}
        return theirs.paths()

    def discard(self) -> int:
        with self.lock, self.staging.transaction():
            entries = self.staging.all()
            for e in entries:
                self.staging.remove(e.path)
            self.reset_base(self._head()[0])
            self._seen.clear()
            # What was read and run went into the writes just dropped: it is no provenance
            # of whatever is committed next.
            self.forget_provenance()
        return len(entries)

    def forget_provenance(self) -> None:
        """Drop the reads and command lines recorded for the next commit."""
        self.staging.clear_reads(self.staging.reads())
        self._reads.clear()
        self.staging.set_meta("commands", "[]")
        self._commands.clear()

    def record_read(self, read: Read) -> None:
        """Record an input for the next commit (once: every open of a file reports one)."""
        if read in self._reads:  # the common case, on every open: no lock, no database
            return
        self.staging.record_read(read)
        self._reads.add(read)

    def record_command(self, command: str) -> None:
        """Remember a command line that wrote to this branch (at most ``MAX_COMMANDS``)."""
        if command in self._commands:  # the common case, on every write: no lock
            return
        with self.lock:
            if command in self._commands:
                return
            known = json.loads(self.staging.get_meta("commands") or "[]")
            if command not in known and len(known) < MAX_COMMANDS:
                known.append(command)
                self.staging.set_meta("commands", json.dumps(known))
            self._commands.add(command)
