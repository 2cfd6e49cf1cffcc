"""Merkle trees with history-independent paging: the same set of files gives the same root id
however it was built, incremental updates touch only what changed, and reads agree with a model."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from s3fsv.errors import InvalidName, NotADirectory, NotFound
from s3fsv.store.backend.memory import MemoryBackend
from s3fsv.store.objects import Tree, TreeEntry, TreePage, sha256_hex
from s3fsv.store.objectstore import ObjectStore
from s3fsv.store.tree import (
    DEFAULT_DIR_MODE,
    PAGE_THRESHOLD,
    Change,
    apply_changes,
    dir_entries,
    is_boundary,
    lookup,
    resolve,
    walk,
    write_dir,
)

# Implicitly created directories take the newest mtime of the changes below them, so a fixed
# mtime for every file keeps directory entries independent of the batches they were made in.
MTIME = 1_700_000_000_123_456_789
SLOW = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.large_base_example],
)


def new_store() -> ObjectStore:
    return ObjectStore(MemoryBackend(), "repo")


def file_entry(path: str, version: int = 0) -> TreeEntry:
    digest = sha256_hex(f"{path}\0{version}".encode())
    size = len(path) + version + 1
    return TreeEntry(path.rsplit("/", 1)[-1], "file", 0o644, MTIME, size, digest, (digest,))


def build_from_scratch(store: ObjectStore, files: dict[str, TreeEntry]) -> str:
    """The root id computed directly with ``write_dir``, bottom-up, without ``apply_changes``."""
    nested: dict[str, Any] = {}
    for path, entry in files.items():
        *dirs, leaf = path.split("/")
        node = nested
        for part in dirs:
            node = node.setdefault(part, {})
        node[leaf] = entry

    def write(node: dict[str, Any]) -> str:
        entries = []
        for name in sorted(node):
            value = node[name]
            if isinstance(value, dict):
                value = TreeEntry(name, "dir", DEFAULT_DIR_MODE, MTIME, tree=write(value))
            entries.append(value)
        return write_dir(store, entries)

    return write(nested)


def related(a: str, b: str) -> bool:
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def consistent(paths: set[str]) -> set[str]:
    """Drop every path that another path needs as a directory."""
    dirs = {p.rsplit("/", 1)[0] for p in paths if "/" in p}
    prefixes = set()
    for d in dirs:
        parts = d.split("/")
        prefixes.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    return {p for p in paths if p not in prefixes}


_small_part = st.sampled_from(["a", "b", "c", "d", "é", "z z"])
small_paths = st.lists(_small_part, min_size=1, max_size=3).map("/".join)


def big_names(rng: random.Random, count: int) -> list[str]:
    out: set[str] = set()
    while len(out) < count:
        stem = rng.choice(["f", "file-", "Ä", "x.", "データ", "~"])
        out.add(f"{stem}{rng.randrange(10**7)}")
    return sorted(out)


@st.composite
def file_sets(draw: st.DrawFn) -> tuple[dict[str, TreeEntry], str, random.Random]:
    """Random paths, including one directory with 300-2000 entries (so it is paged)."""
    rng = random.Random(draw(st.integers(0, 2**32)))
    big_dir = draw(st.sampled_from(["big", "a/big", "c/d/big"]))
    count = draw(st.integers(300, 2000))
    paths = {f"{big_dir}/{n}" for n in big_names(rng, count)}
    paths |= set(draw(st.lists(small_paths, max_size=25)))
    files = {p: file_entry(p) for p in sorted(consistent(paths))}
    return files, big_dir, rng


def build_in_batches(
    store: ObjectStore, files: dict[str, TreeEntry], rng: random.Random
) -> tuple[str, int]:
    """Apply ``files`` in random batches, in random order, deleting some present files (and some
    whole directories) along the way and re-adding them later. Returns the root and batch count."""
    pending = list(files)
    rng.shuffle(pending)
    present: set[str] = set()
    root: str | None = None
    batches = 0
    while pending:
        take = rng.randint(1, max(1, len(pending) // rng.randint(1, 4)))
        adds, pending = pending[:take], pending[take:]
        changes: dict[str, Change] = {p: files[p] for p in adds}
        candidates = sorted(present - set(adds))
        for victim in rng.sample(candidates, k=min(len(candidates), rng.randint(0, 5))):
            if rng.random() < 0.2 and "/" in victim:  # delete the whole directory
                victim = victim.rsplit("/", 1)[0]
            if victim not in present and not any(p.startswith(victim + "/") for p in present):
                continue  # already deleted with its directory in this batch
            if any(related(victim, c) for c in changes):
                continue  # one change per path, none inside another
            changes[victim] = None
            gone = {p for p in present if p == victim or p.startswith(victim + "/")}
            present -= gone
            pending.extend(sorted(gone))
        rng.shuffle(pending)
        root = apply_changes(store, root, changes)
        present.update(adds)
        batches += 1
    assert present == set(files)
    assert root is not None
    return root, batches


def check_paging(store: ObjectStore, tree_id: str, names: list[str]) -> None:
    """The directory's structure is exactly what its name set dictates."""
    tree = store.get(tree_id, Tree)
    assert [e.name for e in dir_entries(store, tree_id)] == names
    if len(names) <= PAGE_THRESHOLD:
        assert not tree.paged
        return
    assert tree.paged
    flat: list[str] = []
    for i, ref in enumerate(tree.pages):
        page = [e.name for e in store.get(ref.id, TreePage).entries]
        assert page and ref.first == page[0] and ref.count == len(page)
        assert not any(is_boundary(n) for n in page[:-1])
        if i < len(tree.pages) - 1:
            assert is_boundary(page[-1])
        flat.extend(page)
    assert flat == names


@SLOW
@given(file_sets())
def test_same_files_same_root_whatever_the_order(case: Any) -> None:
    files, big_dir, rng = case
    store = new_store()
    one_shot = apply_changes(store, None, files)
    scratch = build_from_scratch(store, files)
    batched, _ = build_in_batches(new_store(), files, rng)
    assert one_shot == scratch
    assert batched == one_shot
    # Reversed insertion order in a single call gives the same result too.
    assert apply_changes(new_store(), None, dict(reversed(list(files.items())))) == one_shot
    big = resolve(store, one_shot, big_dir)
    check_paging(store, big.tree, sorted(p.split("/")[-1] for p in files if p.startswith(big_dir)))


@st.composite
def paged_updates(draw: st.DrawFn) -> tuple[list[str], list[dict[str, bool]]]:
    """An initial name set and batches of name -> present?/absent updates."""
    rng = random.Random(draw(st.integers(0, 2**32)))
    initial = big_names(rng, draw(st.integers(257, 1500)))
    boundaries = [n for n in initial if is_boundary(n)]
    fresh = [f"new{i}" for i in range(3000)]
    fresh_boundaries = [n for n in fresh if is_boundary(n)]
    batches = []
    for _ in range(draw(st.integers(1, 4))):
        batch: dict[str, bool] = {}
        for _ in range(draw(st.integers(1, 30))):
            kind = draw(st.sampled_from(["del", "del_boundary", "add", "add_boundary", "edge"]))
            if kind == "del":
                batch[rng.choice(initial)] = False
            elif kind == "del_boundary" and boundaries:
                batch[rng.choice(boundaries)] = False
            elif kind == "add":
                batch[rng.choice(fresh)] = True
            elif kind == "add_boundary":
                batch[rng.choice(fresh_boundaries)] = True
            else:  # before the first name, after the last, and the first and last themselves
                batch[rng.choice(["!", "\U0010ffff", initial[0], initial[-1]])] = rng.random() < 0.5
        batches.append(batch)
    return initial, batches


@SLOW
@given(paged_updates())
def test_incremental_updates_of_a_paged_dir_match_a_fresh_build(case: Any) -> None:
    initial, batches = case
    store = new_store()
    model = {f"d/{n}": file_entry(n) for n in initial}
    root = apply_changes(store, None, model)
    for batch in batches:
        changes: dict[str, Change] = {}
        for name, present in batch.items():
            path = f"d/{name}"
            if present:
                changes[path] = model[path] = file_entry(name, version=1)
            elif path in model:
                changes[path] = None
                del model[path]
        root = apply_changes(store, root, changes)
        assert root == build_from_scratch(new_store(), model)
        check_paging(store, resolve(store, root, "d").tree, sorted(p[2:] for p in model))


def test_paged_dir_shrinks_inline_and_grows_back() -> None:
    store = new_store()
    names = [f"n{i:04d}" for i in range(PAGE_THRESHOLD + 40)]
    root = apply_changes(store, None, {f"d/{n}": file_entry(n) for n in names})
    assert store.get(resolve(store, root, "d").tree, Tree).paged
    doomed = names[:41]
    root = apply_changes(store, root, {f"d/{n}": None for n in doomed})
    left = names[41:]
    assert len(left) == PAGE_THRESHOLD - 1
    check_paging(store, resolve(store, root, "d").tree, left)
    assert root == build_from_scratch(new_store(), {f"d/{n}": file_entry(n) for n in left})
    root = apply_changes(store, root, {f"d/{n}": file_entry(n) for n in doomed[:2]})
    check_paging(store, resolve(store, root, "d").tree, sorted(left + doomed[:2]))
    # Delete everything: an empty directory stays, inline.
    root = apply_changes(store, root, {"d": None})
    with pytest.raises(NotFound):
        resolve(store, root, "d")
    assert list(dir_entries(store, root)) == []


@SLOW
@given(file_sets())
def test_resolve_walk_lookup_agree_with_a_model(case: Any) -> None:
    files, big_dir, rng = case
    root, _ = build_in_batches(new_store(), files, rng)
    # Read from a fresh backend rebuilt from scratch, so every read decodes stored bytes.
    backend = MemoryBackend()
    assert build_from_scratch(ObjectStore(backend, "repo"), files) == root
    store = ObjectStore(backend, "repo")
    dirs = {"/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)}

    walked = list(walk(store, root))
    assert [p for p, _ in walked] == depth_first(set(files) | dirs)
    for path, entry in walked:
        if path in files:
            assert entry == files[path]
        else:
            assert path in dirs and entry.kind == "dir" and entry.mode == DEFAULT_DIR_MODE
    for path, entry in rng.sample(sorted(files.items()), k=min(200, len(files))):
        assert resolve(store, root, path) == entry
        assert resolve(store, root, "/" + path + "/") == entry
        with pytest.raises(NotADirectory):
            resolve(store, root, path + "/x")
    for path in dirs:
        assert resolve(store, root, path).kind == "dir"
    with pytest.raises(NotFound):
        resolve(store, root, "no-such-file")
    with pytest.raises(NotFound):
        resolve(store, root, f"{big_dir}/no/such")

    big_tree = resolve(store, root, big_dir).tree
    members = sorted(p[len(big_dir) + 1 :] for p in files if p.startswith(big_dir + "/"))
    for name in rng.sample(members, k=100) + [members[0], members[-1]]:
        assert lookup(store, big_tree, name) == files[f"{big_dir}/{name}"]
    for name in ["!", "\U0010ffff", members[0] + "x", members[-1] + "~", "f", "x."]:
        if name not in members:
            assert lookup(store, big_tree, name) is None
    assert [e.name for e in dir_entries(store, big_tree)] == members


def depth_first(paths: set[str]) -> list[str]:
    def key(path: str) -> list[bytes]:
        return [part.encode("utf-8") for part in path.split("/")]

    return sorted(paths, key=key)


# -- cost of a small change -------------------------------------------------------------------


def _five_thousand(prefix: str) -> dict[str, TreeEntry]:
    return {f"{prefix}file-{i:05d}.dat": file_entry(f"file-{i:05d}.dat") for i in range(5000)}


@pytest.mark.parametrize("prefix", ["", "a/b/c/"])
@pytest.mark.parametrize("change", ["modify", "add", "delete", "delete_boundary", "add_first"])
def test_one_change_in_a_5000_entry_directory_writes_little(prefix: str, change: str) -> None:
    files = _five_thousand(prefix)
    backend = MemoryBackend()
    root = apply_changes(ObjectStore(backend, "repo"), None, files)
    names = sorted(p.rsplit("/", 1)[-1] for p in files)
    boundary = next(n for n in names[100:] if is_boundary(n))
    changes: dict[str, Change] = {
        "modify": {f"{prefix}file-02500.dat": file_entry("file-02500.dat", 1)},
        "add": {f"{prefix}file-02500.new": file_entry("file-02500.new")},
        "delete": {f"{prefix}file-02500.dat": None},
        "delete_boundary": {f"{prefix}{boundary}": None},
        "add_first": {f"{prefix}!first": file_entry("!first")},
    }[change]
    store = ObjectStore(backend, "repo")  # a fresh process: nothing cached
    new_root = apply_changes(store, root, changes)
    assert new_root != root
    assert store.writes <= 10, store.writes
    assert store.bytes_written <= 256 * 1024, store.bytes_written
    final = dict(files)
    for path, entry in changes.items():
        if entry is None:
            del final[path]
        else:
            final[path] = entry
    assert new_root == build_from_scratch(new_store(), final)


def test_rewriting_the_same_content_writes_nothing() -> None:
    files = _five_thousand("d/")
    backend = MemoryBackend()
    root = apply_changes(ObjectStore(backend, "repo"), None, files)
    store = ObjectStore(backend, "repo")
    assert apply_changes(store, root, {"d/file-00001.dat": files["d/file-00001.dat"]}) == root
    assert apply_changes(store, root, {}) == root
    assert store.writes == 0


# -- change semantics --------------------------------------------------------------------------


def test_change_errors() -> None:
    store = new_store()
    root = apply_changes(store, None, {"a/f": file_entry("a/f")})
    with pytest.raises(NotFound):
        apply_changes(store, root, {"a/missing": None})
    with pytest.raises(NotFound):
        apply_changes(store, root, {"nodir/missing": None})
    with pytest.raises(NotADirectory):
        apply_changes(store, root, {"a/f/g": file_entry("a/f/g")})
    with pytest.raises(InvalidName):
        apply_changes(store, root, {"": None})
    with pytest.raises(InvalidName):
        apply_changes(store, root, {"a/../f": file_entry("f")})


def test_ensure_dir_keeps_contents_and_replacing_a_dir_drops_them() -> None:
    store = new_store()
    root = apply_changes(store, None, {"a/f": file_entry("a/f"), "b": file_entry("b")})
    ensure = TreeEntry("a", "dir", 0o700, 5)
    kept = apply_changes(store, root, {"a": ensure})
    entry = resolve(store, kept, "a")
    assert entry.mode == 0o700 and entry.mtime_ns == 5
    assert resolve(store, kept, "a/f") == file_entry("a/f")
    made = apply_changes(store, root, {"new/dir": TreeEntry("dir", "dir", 0o755, 0)})
    assert list(dir_entries(store, resolve(store, made, "new/dir").tree)) == []
    replaced = apply_changes(store, root, {"a": file_entry("a")})
    assert resolve(store, replaced, "a") == file_entry("a")
    # A file replaced by a directory, and an entry's name always follows its path.
    as_dir = apply_changes(store, root, {"b": None, "b/x": file_entry("b/x")})
    assert resolve(store, as_dir, "b/x") == file_entry("b/x")
    renamed = apply_changes(store, root, {"c": file_entry("other-name")})
    assert resolve(store, renamed, "c").name == "c"


@pytest.mark.parametrize("count", [10, 3000])
def test_entries_after_matches_a_sorted_scan(count: int) -> None:
    from s3fsv.store.tree import entries_after

    store = new_store()
    names = sorted(f"f{i:05d}" for i in range(count))
    tree = write_dir(store, [file_entry(n) for n in names])
    for probe in ["", names[0], names[count // 2], names[-1], names[count // 3][:-1], "zzz"]:
        for limit in (1, 7, 40):
            got = [e.name for e in entries_after(store, tree, probe, limit)]
            assert got == [n for n in names if n > probe][:limit]


def test_walk_after_continues_into_the_next_directory() -> None:
    from s3fsv.store.tree import walk_after

    store = new_store()
    changes: dict[str, Change] = {f"{d}/f{i}": file_entry(f"f{i}") for d in "ab" for i in range(5)}
    changes["a2"] = file_entry("a2")  # a file between the two directories is skipped over
    root = apply_changes(store, None, changes)
    a = resolve(store, root, "a").tree
    got, last = walk_after(store, [root, a], ["a", "f2"], 4)
    assert [e.name for e in got] == ["f3", "f4", "f0", "f1"] and not last
    got, last = walk_after(store, [root, a], ["a", "f2"], 20)
    assert [e.name for e in got] == ["f3", "f4", "f0", "f1", "f2", "f3", "f4"] and last
    got, last = walk_after(store, [a], ["f2"], 20)  # no grandparent: stays in the directory
    assert [e.name for e in got] == ["f3", "f4"] and last
