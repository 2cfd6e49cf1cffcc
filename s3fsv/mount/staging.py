"""Crash-safe staged changes of one branch, as seen by one mount.

A staging area is a 0700 directory under the state directory::

    DIR/lock          held (flock) by the daemon using this area; a second mount takes another slot
    DIR/staging.db    SQLite in WAL mode: the staged entries, the base commit, recorded reads
    DIR/data/<name>   content of staged files, 0600, written in place by the filesystem
    DIR/writing       '+NAME' / '-NAME' lines as a data file gets its first writer and loses its
                      last: what was open for writing if the daemon dies

Every change to the entry table is one SQLite transaction, so after a crash (``kill -9``) the
table is exactly as of the last completed operation; file contents live in ordinary files that
survive a process crash, and ``fsync`` makes them survive power loss. The next mount of the same
store, repo and branch opens the same area and finds everything.

Entries are keyed by branch-relative path. Kinds:

- ``file`` with ``data``: staged content in ``DIR/data/<data>`` (size and mtime from that file);
- ``file`` without ``data``: committed content (``chunks``, and ``pack``/``pack_offset`` for a
  packed file) moved or re-moded without a copy;
- ``dir``: ``tree`` is the base content shown below it (the empty tree for a new directory);
  ``replace`` says whether a commit replaces what is there or only makes sure it exists;
- ``link``: a symlink to ``target``;
- ``deleted``: a whiteout hiding what the base has at this path.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from s3fsv.config import private_dir
from s3fsv.store.objects import TreeEntry

MAX_SLOTS = 16
WRITING_JOURNAL_MAX = 1 << 20  # bytes of the writing journal before it is compacted


@dataclass(frozen=True)
class Staged:
    path: str
    kind: str
    mode: int = 0o644
    mtime_ns: int = 0
    data: str | None = None
    size: int = 0
    sha256: str = ""
    chunks: tuple[str, ...] = ()
    tree: str = ""
    replace: bool = False
    target: str = ""
    pack: str = ""
    pack_offset: int = 0

    @property
    def parent(self) -> str:
        return self.path.rpartition("/")[0]


@dataclass(frozen=True)
class Read:
    repo: str
    commit: str
    via: str


_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    path TEXT PRIMARY KEY, kind TEXT NOT NULL, mode INTEGER, mtime_ns INTEGER, data TEXT,
    size INTEGER, sha256 TEXT, chunks TEXT, tree TEXT, replace INTEGER, target TEXT);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS reads (
    repo TEXT, commit_id TEXT, via TEXT, PRIMARY KEY (repo, commit_id, via));
"""


class Staging:
    """The staged entries of one branch. Thread-safe. Keep one instance per area and process."""

    def __init__(self, root: Path) -> None:
        self.root = private_dir(root)
        self.data_dir = private_dir(root / "data")
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            root / "staging.db", check_same_thread=False, isolation_level=None
        )
        os.chmod(root / "staging.db", 0o600)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self.entries: dict[str, Staged] = {}
        self.children: dict[str, set[str]] = {}
        self.generation: dict[str, int] = {}
        self._gen = 0
        for row in self._db.execute(
            "SELECT path, kind, mode, mtime_ns, data, size, sha256, chunks, tree, replace, target"
            " FROM entries"
        ):
            chunks, pack, offset = _decode_chunks(row[7])
            e = Staged(
                row[0], row[1], row[2], row[3], row[4], row[5], row[6],
                chunks, row[8] or "", bool(row[9]), row[10] or "", pack, offset,
            )  # fmt: skip
            self._index(e)
        # Files an earlier daemon of this slot died writing may be incomplete: remembered until
        # written again (see ``interrupted``).
        self._journal = root / "writing"
        self._interrupted = set(json.loads(self.get_meta("interrupted") or "[]"))
        self._interrupted |= _still_open(self._journal)
        self._interrupted &= {e.data for e in self.entries.values() if e.data}
        self._save_interrupted()
        self._open: set[str] = set()  # data files with a writer now, as journaled
        self._writing = -1
        self._rewrite_journal()

    # -- files open for writing -------------------------------------------------------------------
    def writing(self, name: str, *, started: bool) -> None:
        """Journal that data file ``name`` got its first writer (``started``), before the writer
        changes it, or lost its last. Not fsynced: the journal must
        outlive the daemon (``kill -9``); data not yet fsynced would not outlive the machine."""
        with self._lock:
            os.write(self._writing, f"{'+' if started else '-'}{name}\n".encode())
            if started:
                self._open.add(name)
                return
            self._open.discard(name)
            if os.fstat(self._writing).st_size > WRITING_JOURNAL_MAX:
                self._rewrite_journal()

    def _rewrite_journal(self) -> None:
        """Replace the journal by one that lists only what is open now (atomically: a crash
        leaves the old journal or the new one)."""
        tmp = self._journal.with_name("writing.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, "".join(f"+{name}\n" for name in sorted(self._open)).encode())
            os.replace(tmp, self._journal)
        except BaseException:
            os.close(fd)
            raise
        if self._writing >= 0:
            os.close(self._writing)
        self._writing = fd

    def interrupt(self, names: set[str]) -> None:
        """Flag ``names`` as possibly incomplete (their writers never closed them)."""
        with self._lock:
            if names - self._interrupted:
                self._interrupted |= names
                self._save_interrupted()

    def vouch(self, name: str) -> None:
        """``name`` is whole: written again, or touched by someone who checked it."""
        if name not in self._interrupted:  # the common case, without the lock
            return
        with self._lock:
            if name in self._interrupted:
                self._interrupted.discard(name)
                self._save_interrupted()

    def _save_interrupted(self) -> None:
        self.set_meta("interrupted", json.dumps(sorted(self._interrupted)))

    def interrupted(self) -> set[str]:
        """Data files that were open for writing when an earlier daemon of this slot stopped
        and were not written since: their content may be incomplete."""
        with self._lock:
            live = {e.data for e in self.entries.values() if e.data}
            return self._interrupted & live

    # -- meta -----------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # -- entries --------------------------------------------------------------------------------
    def _index(self, e: Staged) -> None:
        self.entries[e.path] = e
        self.children.setdefault(e.parent, set()).add(e.path.rpartition("/")[2])
        self._gen += 1
        self.generation[e.path] = self._gen

    def _unindex(self, path: str) -> None:
        if self.entries.pop(path, None) is not None:
            parent, _, name = path.rpartition("/")
            kids = self.children.get(parent)
            if kids is not None:
                kids.discard(name)
                if not kids:
                    del self.children[parent]
            self.generation.pop(path, None)

    def path_of_data(self, name: str) -> str | None:
        with self._lock:
            for e in self.entries.values():
                if e.data == name:
                    return e.path
        return None

    def get(self, path: str) -> Staged | None:
        with self._lock:
            return self.entries.get(path)

    def child_names(self, path: str) -> list[str]:
        with self._lock:
            return sorted(self.children.get(path, ()))

    def below(self, path: str) -> list[Staged]:
        """Entries strictly below ``path`` (everything for ``""``)."""
        with self._lock:
            if not path:
                return list(self.entries.values())
            prefix = path + "/"
            return [e for p, e in self.entries.items() if p.startswith(prefix)]

    def has_below(self, path: str) -> bool:
        """Whether anything strictly below ``path`` is staged (stops at the first)."""
        prefix = path + "/" if path else ""
        with self._lock:
            return any(p.startswith(prefix) for p in self.entries)

    def all(self) -> list[Staged]:
        with self._lock:
            return sorted(self.entries.values(), key=lambda e: e.path)

    def __len__(self) -> int:
        with self._lock:
            return len(self.entries)

    def __bool__(self) -> bool:
        return len(self) > 0

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Group several puts/removes into one atomic step."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def put(self, e: Staged) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO entries VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    e.path, e.kind, e.mode, e.mtime_ns, e.data, e.size, e.sha256,
                    _encode_chunks(e), e.tree, int(e.replace), e.target,
                ),
            )  # fmt: skip
            self._unindex(e.path)
            self._index(e)

    def remove(self, path: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM entries WHERE path = ?", (path,))
            self._unindex(path)

    def move_below(self, old: str, new: str) -> None:
        """Re-key every entry strictly below ``old`` to the same place below ``new``."""
        with self._lock:
            for e in self.below(old):
                self.remove(e.path)
                self.put(replace(e, path=new + e.path[len(old) :]))

    # -- data files -----------------------------------------------------------------------------
    def new_data(self) -> tuple[str, int]:
        """A new empty data file (0600): its name and a read-write descriptor the caller owns."""
        name = uuid.uuid4().hex
        fd = os.open(self.data_dir / name, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        return name, fd

    def data_path(self, name: str) -> Path:
        return self.data_dir / name

    def data_bytes(self) -> int:
        """Bytes of the data files staged entries refer to (their size on disk now)."""
        with self._lock:
            names = {e.data for e in self.entries.values() if e.data}
        total = 0
        for name in names:
            with contextlib.suppress(OSError):
                total += os.stat(self.data_dir / name).st_size
        return total

    def collect_garbage(self, in_use: set[str]) -> None:
        """Delete data files no entry refers to and no open handle uses. The names are chosen
        under the lock; the (slow) unlinks run in the background so writers are not held up."""
        with self._lock:
            live = {e.data for e in self.entries.values() if e.data} | in_use
            doomed = [f for f in self.data_dir.iterdir() if f.name not in live]
        if doomed:
            threading.Thread(target=_unlink_all, args=(doomed,), daemon=True).start()

    # -- provenance -----------------------------------------------------------------------------
    def record_read(self, read: Read) -> bool:
        """Remember that ``read`` happened; True the first time."""
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO reads VALUES (?, ?, ?)", (read.repo, read.commit, read.via)
            )
            return cur.rowcount > 0

    def reads(self) -> list[Read]:
        with self._lock:
            rows = self._db.execute("SELECT repo, commit_id, via FROM reads ORDER BY 1, 2, 3")
            return [Read(*row) for row in rows]

    def clear_reads(self, done: list[Read]) -> None:
        with self._lock:
            self._db.executemany(
                "DELETE FROM reads WHERE repo = ? AND commit_id = ? AND via = ?",
                [(r.repo, r.commit, r.via) for r in done],
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()
            if self._writing >= 0:
                os.close(self._writing)
                self._writing = -1


def _still_open(journal: Path) -> set[str]:
    """The data files a ``writing`` journal leaves open."""
    try:
        lines = journal.read_text(errors="replace").splitlines()
    except OSError:
        return set()
    opened: set[str] = set()
    for line in lines:
        if line.startswith("+"):
            opened.add(line[1:])
        elif line.startswith("-"):
            opened.discard(line[1:])
    return opened


def _unlink_all(paths: list[Path]) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def leftover_staging(
    root: Path, store_url: str, repo: str | None = None
) -> list[tuple[str, str, list[tuple[int, int]]]]:
    """(repo, branch, [(staged paths, interrupted files) per slot]) of staging areas under
    ``root`` for ``store_url`` (and ``repo``) that hold staged writes that no running mount is
    using, in the order ``SlotLock`` takes them: a new mount of the branch shows the first.
    Interrupted files are those open for writing when the slot's daemon stopped."""
    found: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for ref_file in sorted(root.glob("*/ref")):
        with contextlib.suppress(OSError, ValueError):
            url, area_repo, branch = ref_file.read_text().splitlines()[:3]
            if url != store_url or repo not in (None, area_repo):
                continue
            for slot in _slot_dirs(ref_file.parent):
                count = 0 if _flocked(slot / "lock") else _staged_count(slot)
                if count:
                    found.setdefault((area_repo, branch), []).append(
                        (count, _interrupted_count(slot))
                    )
    return [(r, b, counts) for (r, b), counts in sorted(found.items())]


def _slot_dirs(area: Path) -> list[Path]:
    """Where the slots of a staging area live, in the order mounts try them."""
    return [area / f"slot-{n}" for n in range(MAX_SLOTS)]


def _staged_count(slot: Path) -> int:
    """Staged entries in ``slot`` (0 when it has no database or it cannot be read)."""
    if not (slot / "staging.db").exists():
        return 0
    try:
        with _read_only(slot) as db:
            (count,) = db.execute("SELECT count(*) FROM entries").fetchone()
        return int(count)
    except sqlite3.Error:
        return 0


def _read_only(slot: Path) -> contextlib.closing[sqlite3.Connection]:
    """The staging database of a slot another process may own, opened read-only."""
    return contextlib.closing(sqlite3.connect(f"file:{slot / 'staging.db'}?mode=ro", uri=True))


def _interrupted_count(slot: Path) -> int:
    """Staged files in ``slot`` that were open for writing when its daemon stopped."""
    try:
        with _read_only(slot) as db:
            live = {row[0] for row in db.execute("SELECT data FROM entries WHERE data != ''")}
            row = db.execute("SELECT value FROM meta WHERE key = 'interrupted'").fetchone()
        known = set(json.loads(row[0])) if row else set()
    except (sqlite3.Error, ValueError, TypeError):
        return 0
    return len((known | _still_open(slot / "writing")) & live)


def _flocked(path: Path) -> bool:
    """Whether some process holds a flock on ``path``, read from /proc/locks: taking the lock
    to find out would make a mount starting meanwhile skip to another slot."""
    try:
        st = os.stat(path)
        with open("/proc/locks") as fh:
            table = fh.read()
    except OSError:
        return False
    key = f" {os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino} "
    return any("FLOCK" in line and key in line for line in table.splitlines())


def area_key(store_url: str, repo: str, branch: str) -> str:
    return hashlib.sha256(f"{store_url}\0{repo}\0{branch}".encode()).hexdigest()[:24]


class SlotLock:
    """An exclusive, process-lifetime claim on one staging slot of a branch (released when the
    process dies, so a crashed daemon's slot is found again by the next mount).

    Concurrent mounts of one branch each need a slot of their own. A mount takes the first free
    slot that holds staged writes, else the first free one: writes that an earlier mount left
    in any slot are shown again by the next mount, whichever slot it would otherwise get."""

    def __init__(self, root: Path, store_url: str, repo: str, branch: str) -> None:
        base = private_dir(root / area_key(store_url, repo, branch))
        (base / "ref").write_text(f"{store_url}\n{repo}\n{branch}\n")
        empty: tuple[int, Path] | None = None  # the first free slot without staged writes
        try:
            for path in _slot_dirs(base):
                made = os.path.lexists(path)
                if not made and empty is not None:
                    continue  # never used: holds nothing
                try:
                    fd = _lock(private_dir(path))
                except OSError:
                    if not made:
                        raise
                    continue  # a slot this process cannot use (another user's, damaged)
                if fd is None:
                    continue
                try:
                    staged = _staged_count(path)
                except BaseException:
                    os.close(fd)
                    raise
                if staged:
                    if empty is not None:
                        os.close(empty[0])
                    self.fd, self.path = fd, path
                    return
                if empty is None:
                    empty = (fd, path)
                else:
                    os.close(fd)
        except BaseException:
            if empty is not None:
                os.close(empty[0])
            raise
        if empty is None:
            raise OSError(f"all {MAX_SLOTS} staging slots for {repo}@{branch} are in use")
        self.fd, self.path = empty

    def release(self) -> None:
        os.close(self.fd)


def _lock(slot: Path) -> int | None:
    """An fd holding the slot's flock, or None when another process holds it."""
    fd = os.open(slot / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def watch_sets(staged: list[Staged]) -> tuple[set[str], set[str]]:
    """(paths, directories that only need to exist) of staged entries: such a directory
    clashes only with a change of itself, not with changes below it."""
    ensure = {e.path for e in staged if e.kind == "dir" and not e.replace}
    return {e.path for e in staged if e.path not in ensure}, ensure


def committed_entry(e: Staged) -> TreeEntry | None:
    """The change a staged entry without local data makes in a commit."""
    name = e.path.rpartition("/")[2]
    if e.kind == "deleted":
        return None
    if e.kind == "file":
        return TreeEntry(
            name, "file", e.mode, e.mtime_ns, e.size, e.sha256, e.chunks,
            pack=e.pack, pack_offset=e.pack_offset,
        )  # fmt: skip
    if e.kind == "link":
        return TreeEntry(name, "link", e.mode, e.mtime_ns, len(e.target.encode()), target=e.target)
    return TreeEntry(name, "dir", e.mode, e.mtime_ns, tree=e.tree if e.replace else "")


def _encode_chunks(e: Staged) -> str:
    """The ``chunks`` column: a JSON list, or for a packed file an object with its location
    (a list is what areas written before packs existed hold, so both stay readable)."""
    if e.pack:
        return json.dumps({"chunks": list(e.chunks), "pack": e.pack, "offset": e.pack_offset})
    return json.dumps(list(e.chunks))


def _decode_chunks(text: str | None) -> tuple[tuple[str, ...], str, int]:
    raw = json.loads(text or "[]")
    if isinstance(raw, dict):
        return tuple(raw["chunks"]), str(raw["pack"]), int(raw["offset"])
    return tuple(raw), "", 0
