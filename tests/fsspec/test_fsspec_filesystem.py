"""``s3fsv://`` behaviour beyond fsspec's abstract suite: refs, snapshots, commits made by
writes and transactions, read-only refs, errors, and pack reads for ``cat``. Runs on a
``file://`` store in a temporary directory."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import pytest

import s3fsv
from s3fsv.fsspec import S3fsvFileSystem
from s3fsv.store.store import Store


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    url = (tmp_path / "store").as_uri()
    Store.init(url).create_repo("cams")
    return url


@pytest.fixture
def fs(store_url: str, tmp_path: Path) -> Iterator[S3fsvFileSystem]:
    fs = S3fsvFileSystem(store_url, cache_dir=tmp_path / "cache", skip_instance_cache=True)
    try:
        yield fs
    finally:
        fs.store.close()


def messages(fs: S3fsvFileSystem, repo: str = "cams") -> list[str]:
    return [c.message for c in fs.store.repo(repo).log("main")]


def test_registered_by_entry_point_and_reads_pinned_refs(fs: S3fsvFileSystem) -> None:
    assert fsspec.get_filesystem_class("s3fsv") is S3fsvFileSystem
    fs.pipe("cams/a.txt", b"one")
    first = fs.store.repo("cams").resolve("main")
    fs.store.repo("cams").create_tag("v1", "main")
    fs.pipe("cams/a.txt", b"two")
    opts = {"store": fs.store.url, "cache_dir": fs.store._cache.root}
    with fsspec.open("s3fsv://cams/a.txt", "rb", **opts) as f:
        assert f.read() == b"two"
    for ref in ("v1", "main~1", first, first[:10]):
        assert fs.cat(f"s3fsv://cams@{ref}/a.txt") == b"one"
    assert fs.cat("cams@main/a.txt") == b"two"
    info = fs.info(f"cams@{first[:10]}/a.txt")
    assert info["commit"] == first and info["type"] == "file" and info["size"] == 3
    assert info["name"] == f"cams@{first[:10]}/a.txt"  # the caller's spelling is kept
    assert fs.checksum("cams/a.txt") == int(fs.info("cams/a.txt")["sha256"], 16)
    assert fs.ukey("cams@v1/a.txt") != fs.ukey("cams/a.txt")


def test_listing_types_sizes_and_store_root(fs: S3fsvFileSystem, tmp_path: Path) -> None:
    fs.pipe({"cams/d/x.bin": b"12345", "cams/d/sub/y.bin": b"", "cams/top": b"t"})
    fs.mkdir("cams/empty")
    assert fs.ls("", detail=False) == ["cams"]
    listed = {i["name"]: (i["type"], i["size"]) for i in fs.ls("cams")}
    assert listed == {
        "cams/d": ("directory", 0),
        "cams/empty": ("directory", 0),
        "cams/top": ("file", 1),
    }
    assert fs.find("cams/d") == ["cams/d/sub/y.bin", "cams/d/x.bin"]
    assert fs.find("cams", withdirs=True, maxdepth=1) == [
        "cams",
        "cams/d",
        "cams/empty",
        "cams/top",
    ]
    walked = [(root, sorted(dirs), sorted(files)) for root, dirs, files in fs.walk("cams")]
    assert walked[0] == ("cams", ["d", "empty"], ["top"])
    assert fs.isdir("cams/empty") and fs.ls("cams/empty") == []
    assert fs.du("cams/d") == 5
    assert fs.glob("cams/d/*.bin") == ["cams/d/x.bin"]
    assert not fs.exists("cams/nope") and not fs.exists("nope/x")


def test_each_call_is_one_commit_and_a_transaction_is_one(fs: S3fsvFileSystem) -> None:
    fs.pipe({"cams/a": b"1", "cams/b": b"2"})
    with fs.open("cams/c", "wb") as f:
        f.write(b"3")
    fs.rm(["cams/a", "cams/b"])
    assert messages(fs)[:3] == ["fsspec rm 2 paths", "fsspec write cams/c", "fsspec write 2 paths"]
    before = len(messages(fs))
    with fs.transaction as tx:
        tx.message = "labels"
        fs.pipe("cams/labels/1.json", b"{}")
        with fs.open("cams/labels/2.json", "w") as text:
            text.write("[]")
        fs.mv("cams/c", "cams/labels/c")
        fs.mkdir("cams/labels/empty")
        assert not fs.exists("cams/labels/1.json")  # reads see the branch as committed
    assert len(messages(fs)) == before + 1 and messages(fs)[0] == "labels"
    head = fs.store.repo("cams").commit("main")
    assert tx.commits == {"cams@main": head.id}
    assert "commands" in head.provenance and head.provenance["user"]
    assert fs.find("cams", withdirs=True) == [
        "cams",
        "cams/labels",
        "cams/labels/1.json",
        "cams/labels/2.json",
        "cams/labels/c",
        "cams/labels/empty",
    ]


def test_a_transaction_that_raises_commits_nothing(fs: S3fsvFileSystem) -> None:
    before = messages(fs)
    with pytest.raises(RuntimeError), fs.transaction:
        fs.pipe("cams/x", b"1")
        raise RuntimeError("stop")
    with pytest.raises(ValueError), fs.open("cams/y", "wb") as f:
        f.write(b"half")
        raise ValueError("a half-written file is not committed")
    assert messages(fs) == before and fs.ls("cams") == []


def test_inputs_read_are_recorded_as_provenance(fs: S3fsvFileSystem) -> None:
    fs.pipe("cams/in.csv", b"a,b\n")
    read = fs.store.repo("cams").resolve("main")
    with fs.transaction:
        data = fs.cat("cams/in.csv")
        fs.pipe("cams/out.csv", data + b"1,2\n")
    inputs = fs.store.repo("cams").commit("main").provenance["inputs"]
    assert {"repo": "cams", "commit": read, "via": "api"} in inputs


def test_tags_commits_and_ancestors_are_read_only(fs: S3fsvFileSystem) -> None:
    fs.pipe("cams/a", b"1")
    fs.store.repo("cams").create_tag("v1", "main")
    cid = fs.store.repo("cams").resolve("main")
    for root in ("cams@v1", f"cams@{cid}", "cams@main~1"):
        with pytest.raises(PermissionError, match="read-only"):
            fs.pipe(f"{root}/b", b"x")
        with pytest.raises(s3fsv.errors.ReadOnly):
            fs.open(f"{root}/b", "wb")
        with pytest.raises(PermissionError):
            fs.rm(f"{root}/a")
    assert fs.cat("cams@v1/a") == b"1"
    with pytest.raises(FileNotFoundError, match="nobranch"):
        fs.pipe("cams@nobranch/b", b"x")


def test_errors_are_the_builtin_classes(fs: S3fsvFileSystem) -> None:
    fs.pipe("cams/d/f", b"1")
    with pytest.raises(FileNotFoundError, match="cams/nope"):
        fs.open("cams/nope")
    with pytest.raises(FileNotFoundError, match="nope"):
        fs.ls("nope")
    with pytest.raises(IsADirectoryError):
        fs.open("cams/d")
    with pytest.raises(IsADirectoryError):
        fs.pipe("cams/d", b"")
    with pytest.raises(IsADirectoryError):
        fs.pipe("cams", b"")
    with pytest.raises(FileExistsError):
        fs.open("cams/d/f", "xb")
    with pytest.raises(FileExistsError):
        fs.mkdir("cams/d")
    with pytest.raises(FileExistsError):
        fs.makedirs("cams/d/f", exist_ok=True)  # a file is there
    with pytest.raises(FileNotFoundError):
        fs.mkdir("cams/x/y", create_parents=False)
    with pytest.raises(IsADirectoryError):
        fs.rm("cams/d")
    with pytest.raises(OSError, match="not empty"):
        fs.rmdir("cams/d")
    with pytest.raises(PermissionError):
        fs.rm("cams", recursive=True)
    with pytest.raises(s3fsv.errors.InvalidName):
        fs.cat("cams/../etc")
    assert fs.cat("cams/d/f") == b"1"  # nothing above changed anything


def test_mkdir_makes_repos_and_real_empty_directories(fs: S3fsvFileSystem) -> None:
    fs.mkdir("newrepo")
    assert "newrepo" in fs.ls("", detail=False) and fs.ls("newrepo") == []
    fs.makedirs("newrepo/a/b")
    fs.makedirs("newrepo/a/b", exist_ok=True)
    assert fs.isdir("newrepo/a/b")
    assert [e.path for e in fs.store.repo("newrepo").walk("main")] == ["a", "a/b"]
    fs.rmdir("newrepo/a/b")
    assert fs.ls("newrepo/a") == []


def test_append_and_large_writes(fs: S3fsvFileSystem) -> None:
    fs.pipe("cams/log", b"one\n")
    with fs.open("cams/log", "ab") as f:
        f.write(b"two\n")
    assert fs.cat("cams/log") == b"one\ntwo\n"
    big = bytes(range(256)) * (40 * 1024 + 3)  # over the in-memory spool: a temp file
    with fs.open("cams/big", "wb") as f:
        for i in range(0, len(big), 1 << 20):
            f.write(big[i : i + (1 << 20)])
    assert fs.cat("cams/big") == big and fs.info("cams/big")["mode"] == 0o644
    assert fs.cat_file("cams/big", start=5, end=300) == big[5:300]
    assert fs.cat_file("cams/big", start=-7) == big[-7:]


@pytest.mark.parametrize("size", [1000, 9 * 1024 * 1024])  # in memory; spooled to disk
def test_files_being_written_are_random_access(fs: S3fsvFileSystem, size: int) -> None:
    with fs.open("cams/r.bin", "wb") as f:
        f.write(b"x" * size)
        f.seek(2)
        f.write(b"AB")
        f.seek(0)
        assert f.read(5) == b"xxABx"
        assert f.seek(0, 2) == size
        f.truncate(size - 1)
        assert f.tell() == size
        f.seek(0, 2)
        f.write(b"!")
    assert fs.cat("cams/r.bin") == b"xxAB" + b"x" * (size - 5) + b"!"


def test_copy_and_move_share_content_and_cross_repos(fs: S3fsvFileSystem) -> None:
    fs.pipe("cams/src/a", b"A" * 10)
    fs.mkdir("other")
    fs.cp("cams/src", "cams/dst", recursive=True)
    fs.cp("cams/src/a", "other/a")
    assert fs.info("cams/dst/a")["sha256"] == fs.info("other/a")["sha256"]
    fs.mv("cams/dst", "cams/moved")
    assert fs.find("cams") == ["cams/moved/a", "cams/src/a"]
    assert messages(fs)[0] == "fsspec mv cams/dst to cams/moved"
    fs.pipe("cams/src/a", b"new")
    fs.cp("cams@main~1/src/a", "cams/restored")  # from an older commit: no bytes moved
    assert fs.cat("cams/restored") == b"A" * 10


def test_cat_of_many_small_files_reads_packs(fs: S3fsvFileSystem, tmp_path: Path) -> None:
    local = tmp_path / "local"
    for d in range(4):
        (local / f"d{d}").mkdir(parents=True)
        for i in range(50):
            (local / f"d{d}" / f"{i:03d}.bin").write_bytes(bytes([d, i]) * 5000)
    fs.put(str(local) + "/", "cams/small", recursive=True)
    assert messages(fs)[0].startswith("fsspec put")
    cold = S3fsvFileSystem(fs.store.url, cache_dir=tmp_path / "cold", skip_instance_cache=True)
    try:
        gets = count_gets(cold)
        got = cold.cat("cams/small", recursive=True)
        assert len(got) == 200
        assert got["cams/small/d3/049.bin"] == bytes([3, 49]) * 5000
        objects = [k for k in gets if "/objects/" in k]
        assert len(objects) <= 10, f"{len(objects)} object reads for 200 files"
    finally:
        cold.store.close()


def count_gets(fs: S3fsvFileSystem) -> list[str]:
    """Record the key of every read the store's backend makes from now on."""
    backend = fs.store._inner.backend
    keys: list[str] = []
    inner = backend.get

    def get(key: str, *args: Any, **kwargs: Any) -> Any:
        keys.append(key)
        return inner(key, *args, **kwargs)

    backend.get = get
    return keys


def test_one_call_reads_one_snapshot(fs: S3fsvFileSystem, monkeypatch: pytest.MonkeyPatch) -> None:
    fs.pipe({f"cams/d/{i}": b"old" for i in range(3)})
    repo = fs._repo("cams")
    resolve = repo.resolve
    resolved: list[str] = []

    def resolve_and_move(ref: str = "main") -> str:
        resolved.append(ref)
        cid = resolve(ref)
        if len(resolved) == 1:  # the branch moves right after the call's first look
            with repo.transaction("main", message="meanwhile") as tx:
                tx.write("d/new", b"new")
        return cid

    monkeypatch.setattr(repo, "resolve", resolve_and_move)
    assert sorted(fs.cat("cams/d", recursive=True).values()) == [b"old"] * 3
    names = [r for r in resolved if len(r) != 64]  # the API re-resolves the pinned id itself
    assert names == ["main"]  # one resolution of the branch for the whole call
    assert fs.find("cams/d") == ["cams/d/0", "cams/d/1", "cams/d/2", "cams/d/new"]


def test_pickles_and_uses_the_cli_store_by_default(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("S3FSV_STORE", store_url)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    fs = S3fsvFileSystem(skip_instance_cache=True)
    fs.pipe("cams/p", b"pickled")
    again = pickle.loads(pickle.dumps(fs))
    assert again.cat("cams/p") == b"pickled"
    assert (tmp_path / "xdg-cache" / "s3fsv").is_dir()  # the machine's shared cache
