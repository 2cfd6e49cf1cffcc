"""A stateful model test of ``Transaction``: writes, uploads, deletes, renames, copies (also
from older commits) and mkdirs, committed or aborted, against a model of each commit as files
(path -> bytes) and directories.

The model holds directories too: a directory stays when its last file goes (directories are real
entries), and writing a file where one is must fail. After every commit the new commit is read
back every way the API reads (walk, read_bytes, ranged reads of ``open``, read_many), and every
older commit must still be what it was.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from api_support import CHUNK, new_store
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    precondition,
    rule,
    run_state_machine_as_test,
)

from s3fsv.errors import (
    AlreadyExists,
    IsADirectory,
    NotADirectory,
    NotFound,
    S3fsvError,
    UsageError,
)

NAMES = ["a", "b", "c"]
paths = st.lists(st.sampled_from(NAMES), min_size=1, max_size=3).map("/".join)
contents = st.one_of(
    st.binary(max_size=40),
    st.just(b""),
    st.tuples(st.integers(0, 2**32), st.integers(CHUNK - 2, 3 * CHUNK + 3)).map(
        lambda t: random.Random(t[0]).randbytes(t[1])
    ),
)
# A local directory to upload: files (relative path -> bytes) and empty directories.
local_trees = st.tuples(
    st.dictionaries(
        st.lists(st.sampled_from(NAMES), min_size=1, max_size=2).map("/".join),
        st.binary(max_size=20),
        max_size=4,
    ),
    st.sets(st.sampled_from(NAMES), max_size=2),
)

Errors = tuple[type[S3fsvError], ...]


class Boom(Exception):
    """Raised inside a transaction's ``with`` block to abort it."""


def ancestors(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def below(path: str, other: str) -> bool:
    return other.startswith(path + "/")


@dataclass
class Snapshot:
    files: dict[str, bytes] = field(default_factory=dict)
    dirs: set[str] = field(default_factory=set)

    def clone(self) -> Snapshot:
        return Snapshot(dict(self.files), set(self.dirs))

    def kind(self, path: str) -> str | None:
        return "file" if path in self.files else "dir" if path in self.dirs else None

    def paths(self) -> list[str]:
        return sorted(self.files.keys() | self.dirs)

    # -- the operations, as the model has them: an error they predict, or None once done ----
    def write(self, path: str, data: bytes) -> Errors | None:
        if any(a in self.files for a in ancestors(path)):
            return (NotADirectory,)
        if path in self.dirs:
            return (IsADirectory,)
        self.files[path] = data
        self.dirs.update(ancestors(path))
        return None

    def upload_dir(self, dest: str, files: dict[str, bytes], dirs: set[str]) -> Errors | None:
        if any(a in self.files for a in ancestors(dest)):
            return (NotADirectory,)
        new_dirs = {dest} | {f"{dest}/{d}" for d in dirs}
        new_dirs |= {f"{dest}/{a}" for f in files for a in ancestors(f)}
        new_files = {f"{dest}/{f}": data for f, data in files.items()}
        errors: set[type[S3fsvError]] = set()
        if new_dirs & self.files.keys():
            errors.add(NotADirectory)
        if new_files.keys() & self.dirs:
            errors.add(IsADirectory)
        if errors:
            return tuple(errors)
        self.dirs |= new_dirs | set(ancestors(dest))
        self.files.update(new_files)
        return None

    def delete(self, path: str) -> Errors | None:
        if path in self.files:
            del self.files[path]
        elif path in self.dirs:
            self.files = {p: v for p, v in self.files.items() if not below(path, p)}
            self.dirs = {d for d in self.dirs if d != path and not below(path, d)}
        else:
            return (NotFound,)
        return None

    def mkdir(self, path: str) -> Errors | None:
        if any(a in self.files for a in ancestors(path)):
            return (NotADirectory,)
        if path in self.files:
            return (AlreadyExists,)
        self.dirs.update([path, *ancestors(path)])
        return None

    def copy(self, src: str, dst: str, origin: Snapshot | None = None) -> Errors | None:
        """Copy ``src`` of ``origin`` (an older commit), or of this snapshot, to ``dst``."""
        source = origin or self
        kind = source.kind(src)
        if kind is None:
            return (NotFound,)
        if origin is None and dst == src:
            return None
        if origin is None and below(src, dst):
            return (UsageError,)
        if dst in self.dirs:
            return (IsADirectory,)
        if any(a in self.files for a in ancestors(dst)):
            return (NotADirectory,)
        if kind == "dir" and dst in self.files:
            return (NotADirectory,)
        if kind == "file":
            self.files[dst] = source.files[src]
        else:
            moved = {p: v for p, v in source.files.items() if below(src, p)}
            self.files.update({dst + p[len(src) :]: v for p, v in moved.items()})
            self.dirs |= {dst + d[len(src) :] for d in source.dirs if d == src or below(src, d)}
        self.dirs.update(ancestors(dst))
        return None

    def rename(self, old: str, new: str) -> Errors | None:
        if old == new or self.kind(old) is None:
            return self.copy(old, new)
        errors = self.copy(old, new)
        if errors is None:  # the copy went elsewhere: the original goes
            self.files = {p: v for p, v in self.files.items() if p != old and not below(old, p)}
            self.dirs = {d for d in self.dirs if d != old and not below(old, d)}
            self.dirs.update(ancestors(new))
        return errors


class TransactionModel(RuleBasedStateMachine):
    def __init__(self, where: Path) -> None:
        super().__init__()
        self.where = where
        self.store = new_store(where)
        self.repo = self.store.repo("r")
        # Commits in the order they were made, with what each must hold.
        self.commits: list[tuple[str, Snapshot]] = [(self.repo.resolve("main"), Snapshot())]
        self.locals = 0
        self.steps = 0
        self.begin()

    def teardown(self) -> None:
        if not self.tx.commit_id:
            self.tx.abort()
        self.store.close()  # (the files stay: the cache may still be written to in the background)

    def begin(self) -> None:
        self.steps += 1
        self.tx = self.repo.transaction("main", message=f"step {self.steps}")
        assert self.tx.base == self.commits[-1][0]
        self.model = self.commits[-1][1].clone()
        self.changed = False  # a change was made (committing or aborting nothing says little)

    def some_path(self, data: st.DataObject) -> str:
        """A path the transaction has now (mostly), or any path."""
        known = self.model.paths()
        if known and data.draw(st.integers(0, 3)):
            return data.draw(st.sampled_from(known))
        return data.draw(paths)

    def expect(self, errors: Errors | None, action: Callable[[], object]) -> None:
        """Run ``action``: it must succeed when the model did, else raise one of ``errors``."""
        if errors is None:
            action()
            self.changed = True
            return
        with pytest.raises(errors):
            action()

    def target_path(self, data: st.DataObject) -> str:
        """Where to rename or copy to: any path, sometimes in a directory not there yet."""
        path = self.some_path(data)
        if data.draw(st.booleans()):
            path = f"{path}/{data.draw(st.sampled_from(NAMES))}"
        return path

    def local_dir(self) -> Path:
        self.locals += 1
        return self.where / "local" / str(self.locals)

    # -- changes ----------------------------------------------------------------------------
    @rule(data=st.data(), content=contents)
    def write(self, data: st.DataObject, content: bytes) -> None:
        path = self.some_path(data)
        self.expect(self.model.write(path, content), lambda: self.tx.write(path, content))

    @rule(data=st.data(), content=contents)
    def upload_file(self, data: st.DataObject, content: bytes) -> None:
        path = self.some_path(data)
        local = self.local_dir()
        local.mkdir(parents=True)
        (local / "f").write_bytes(content)
        self.expect(self.model.write(path, content), lambda: self.tx.upload(local / "f", path))

    @rule(data=st.data(), tree=local_trees)
    def upload_dir(self, data: st.DataObject, tree: tuple[dict[str, bytes], set[str]]) -> None:
        files, dirs = tree
        # A local directory cannot hold a file where another file needs a directory.
        files = {f: v for f, v in files.items() if not any(a in files for a in ancestors(f))}
        dirs = {d for d in dirs if d not in files}
        local = self.local_dir()
        for d in dirs:
            (local / d).mkdir(parents=True, exist_ok=True)
        for f, v in files.items():
            (local / f).parent.mkdir(parents=True, exist_ok=True)
            (local / f).write_bytes(v)
        local.mkdir(parents=True, exist_ok=True)
        path = self.some_path(data)
        self.expect(self.model.upload_dir(path, files, dirs), lambda: self.tx.upload(local, path))

    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        path = self.some_path(data)
        self.expect(self.model.delete(path), lambda: self.tx.delete(path))

    @rule(data=st.data())
    def rename(self, data: st.DataObject) -> None:
        old, new = self.some_path(data), self.target_path(data)
        self.expect(self.model.rename(old, new), lambda: self.tx.rename(old, new))

    @rule(data=st.data())
    def copy(self, data: st.DataObject) -> None:
        src, dst = self.some_path(data), self.target_path(data)
        self.expect(self.model.copy(src, dst), lambda: self.tx.copy(src, dst))

    @rule(data=st.data())
    def copy_from_a_commit(self, data: st.DataObject) -> None:
        cid, snapshot = data.draw(st.sampled_from(self.commits))
        known = snapshot.paths()
        src = data.draw(st.sampled_from(known) if known else paths)
        dst = self.target_path(data)
        self.expect(self.model.copy(src, dst, snapshot), lambda: self.tx.copy(src, dst, ref=cid))

    @rule(data=st.data())
    def mkdir(self, data: st.DataObject) -> None:
        path = self.some_path(data)
        made = path not in self.model.dirs

        def mkdir() -> None:
            assert self.tx.mkdir(path) is made

        self.expect(self.model.mkdir(path), mkdir)

    @rule(data=st.data())
    def kind(self, data: st.DataObject) -> None:
        path = self.some_path(data)
        assert self.tx.kind(path) == self.model.kind(path)

    # -- ending -----------------------------------------------------------------------------
    @precondition(lambda self: self.changed)
    @rule(data=st.data())
    def commit(self, data: st.DataObject) -> None:
        with self.tx:
            pass
        cid = self.tx.commit_id
        assert cid is not None and self.repo.resolve("main") == cid
        if cid == self.commits[-1][0]:  # nothing changed: no commit was made
            assert self.model == self.commits[-1][1]
        else:
            assert self.repo.commit(cid).parents == (self.commits[-1][0],)
            self.commits.append((cid, self.model))
        self.check_commit(cid, self.model, ranges=True)
        for older, snapshot in self.commits[:-1]:
            self.check_tree(older, snapshot)
        older, snapshot = data.draw(st.sampled_from(self.commits))
        assert self.repo.read_many(older, sorted(snapshot.files)) == snapshot.files
        self.begin()

    @precondition(lambda self: self.changed)
    @rule()
    def abort(self) -> None:
        with pytest.raises(Boom), self.tx:
            raise Boom()
        assert self.tx.commit_id is None
        assert self.repo.resolve("main") == self.commits[-1][0]
        self.begin()

    # -- checks -----------------------------------------------------------------------------
    def check_tree(self, cid: str, want: Snapshot) -> None:
        entries = list(self.repo.walk(cid))
        assert {e.path for e in entries if e.kind == "dir"} == want.dirs
        files = {e.path: e for e in entries if e.kind == "file"}
        assert files.keys() == want.files.keys()
        for path, entry in files.items():
            assert entry.size == len(want.files[path])
            assert entry.sha256 == hashlib.sha256(want.files[path]).hexdigest()

    def check_commit(self, cid: str, want: Snapshot, *, ranges: bool) -> None:
        self.check_tree(cid, want)
        assert self.repo.read_many(cid, sorted(want.files)) == want.files
        for path, content in want.files.items():
            assert self.repo.read_bytes(cid, path) == content
            if not ranges:
                continue
            with self.repo.open(cid, path) as fh:
                for offset, size in [(1, 5), (CHUNK - 3, 7), (CHUNK, CHUNK + 1), (0, 3 * CHUNK)]:
                    fh.seek(offset)
                    assert fh.read(size) == content[offset : offset + size]
                    assert fh.tell() == offset + len(content[offset : offset + size])
                fh.seek(-min(2, len(content)), 2)
                assert fh.read() == content[len(content) - min(2, len(content)) :]


def test_transactions_match_the_model(tmp_path: Path) -> None:
    examples = iter(range(10**9))
    run_state_machine_as_test(
        lambda: TransactionModel(tmp_path / f"example-{next(examples)}"),
        settings=settings(
            max_examples=60,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
