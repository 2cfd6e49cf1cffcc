"""The ``s3fsv`` command as a user runs it: outputs, JSON, exit codes and one-line errors."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from s3fsv.cli.app import _provenance_lines
from s3fsv.store.objects import TreeEntry
from s3fsv.store.store import Store
from s3fsv.store.tree import EMPTY_TREE
from tests.mounting import (
    alive,
    daemon_pids,
    force_unmount,
    in_mount_table,
    mounted,
    run_cli,
)


@pytest.fixture
def env(xdg_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    return {**xdg_env, "S3FSV_STORE": f"file://{tmp_path}/store"}


def cli(env: dict[str, str], *args: str, code: int = 0, error: bool = True) -> str:
    """Run s3fsv; check the exit code; for failures, return the single error line."""
    result = run_cli(*args, env=env, check=False)
    assert result.returncode == code, (args, result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    if code and error:
        lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("s3fsv: error: "), result.stderr
        return lines[0]
    return result.stdout


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "images/a").mkdir(parents=True)
    (src / "images/a/1.jpg").write_bytes(b"one")
    (src / "images/a/2.jpg").write_bytes(os.urandom(300_000))
    (src / "notes.txt").write_text("hello\n")
    os.symlink("notes.txt", src / "link")
    return src


def test_end_to_end(env: dict[str, str], tree: Path, tmp_path: Path) -> None:
    cli(env, "init")
    cli(env, "init")  # idempotent
    cli(env, "repo", "create", "cams")
    assert json.loads(cli(env, "repo", "list", "--json")) == ["cams"]
    first = cli(env, "put", "-q", str(tree), "cams@main:data", "-m", "ingest").strip()
    assert len(first) == 64
    shown = json.loads(cli(env, "show", "--json", f"cams@{first}"))
    assert shown["provenance"]["uploaded"] == str(tree)  # what was uploaded, and by whom
    assert {"user", "host", "tool"} <= set(shown["provenance"])
    listing = cli(env, "ls", "-R", "cams@main")
    assert "data/images/a/2.jpg" in listing and "data/link -> notes.txt" in listing
    entries = json.loads(cli(env, "ls", "--json", "cams:data/images/a"))
    assert [e["path"] for e in entries] == ["data/images/a/1.jpg", "data/images/a/2.jpg"]
    assert cli(env, "cat", "cams:data/notes.txt") == "hello\n"
    cli(env, "put", "-q", str(tree / "notes.txt"), "cams@main:single/n.txt", "-m", "one file")
    assert cli(env, "cat", "cams:single/n.txt") == "hello\n"
    head = cli(env, "log", "cams", "--oneline").splitlines()
    again = run_cli("put", "-q", str(tree), "cams@main:data", "-m", "same again", env=env)
    assert "nothing changed" in again.stderr  # no empty commit
    assert cli(env, "log", "cams", "--oneline").splitlines() == head
    msg = cli(env, "put", "-q", str(tree / "notes.txt"), "cams@main:data", "-m", "x", code=2)
    assert "is a directory" in msg and "data/notes.txt" in msg
    msg = cli(env, "put", "-q", str(tree), "cams@main:single/n.txt", "-m", "x", code=2)
    assert "is a file" in msg
    assert cli(env, "log", "cams", "--oneline").splitlines() == head  # nothing was committed
    cli(env, "branch", "create", "cams", "dev", "--from", first[:10])
    cli(env, "tag", "create", "cams", "v1", "--from", "main")
    assert set(json.loads(cli(env, "branch", "list", "cams", "--json"))) == {"main", "dev"}
    assert json.loads(cli(env, "tag", "list", "cams", "--json"))["v1"] != first
    log = json.loads(cli(env, "log", "cams", "--json"))
    assert [c["message"] for c in log] == ["one file", "ingest", "Create repository"]
    for commit in log:
        assert {"id", "parents", "author", "time", "message", "provenance"} <= set(commit)
    assert log[1]["id"] == first and log[0]["parents"] == [first]
    path_log = json.loads(cli(env, "log", "cams:single/n.txt", "--json"))
    assert [c["message"] for c in path_log] == ["one file"]
    shown = json.loads(cli(env, "show", f"cams@{first[:8]}", "--json"))
    assert shown["id"] == first and "data/notes.txt" in shown["changes"]["added"]
    only = json.loads(cli(env, "show", f"cams@{first[:8]}:data/images", "--json"))["changes"]
    assert only["added"] == ["data/images/a/1.jpg", "data/images/a/2.jpg"]
    shown_text = cli(env, "show", "cams@main")
    assert "Author:" in shown_text and "A\tsingle/n.txt" in shown_text
    assert cli(env, "diff", "cams@dev", "main") == cli(env, "diff", "cams", "dev", "main")
    assert cli(env, "diff", "cams@dev", "cams@main") == cli(env, "diff", "cams", "dev", "main")
    assert "needs two refs" in cli(env, "diff", "cams", "dev", code=2)
    diff = json.loads(cli(env, "diff", "cams", "dev", "main", "--json"))
    assert diff == {"added": ["single/n.txt"], "modified": [], "deleted": []}
    assert cli(env, "diff", "cams", "dev", "main", "--exit-code", code=1, error=False) == (
        "A\tsingle/n.txt\n"
    )
    out = tmp_path / "out"
    cli(env, "get", "-q", "cams@v1:data", str(out))
    for path in tree.rglob("*"):
        rel = path.relative_to(tree)
        if path.is_symlink():
            assert os.readlink(out / rel) == os.readlink(path)
        elif path.is_file():
            assert (out / rel).read_bytes() == path.read_bytes()
            assert (out / rel).stat().st_mtime_ns == path.stat().st_mtime_ns
    dev = json.loads(cli(env, "branch", "list", "cams", "--json"))["dev"]
    deleted = run_cli("branch", "delete", "cams", "dev", env=env)
    assert f"(was {dev[:12]})" in deleted.stdout
    undo = deleted.stderr.strip().removeprefix("to undo: s3fsv ").split()
    assert set(json.loads(cli(env, "branch", "list", "cams", "--json"))) == {"main"}
    cli(env, *undo)  # the printed command brings the branch back where it was
    assert json.loads(cli(env, "branch", "list", "cams", "--json"))["dev"] == dev
    cli(env, "branch", "delete", "cams", "dev")
    # A trailing / means "into that directory", for put and get alike, as cp does.
    cli(env, "put", "-q", str(tree / "notes.txt"), "cams@main:docs/", "-m", "into docs")
    assert cli(env, "cat", "cams:docs/notes.txt") == "hello\n"
    cli(env, "get", "-q", "cams:docs/notes.txt", str(tmp_path / "fetched") + "/")
    assert (tmp_path / "fetched" / "notes.txt").read_text() == "hello\n"
    cli(env, "get", "-q", "cams:single/n.txt", str(tmp_path / "fetched"))  # an existing dir
    assert (tmp_path / "fetched" / "n.txt").read_text() == "hello\n"


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_cat_follows_links_inside_the_snapshot(env: dict[str, str], tmp_path: Path) -> None:
    src = tmp_path / "links"
    (src / "sub").mkdir(parents=True)
    (src / "x").write_text("x\n")
    os.symlink("../x", src / "sub/up")
    os.symlink("up", src / "sub/chain")
    os.symlink("../../../etc/passwd", src / "sub/escape")
    os.symlink("/etc/passwd", src / "abs")
    os.symlink("loop2", src / "loop1")
    os.symlink("loop1", src / "loop2")
    os.symlink("sub", src / "subdir")  # a link in the middle of a path
    (src / "sub/y").write_text("y\n")
    os.symlink("..", src / "sub/top")
    cli(env, "init")
    cli(env, "repo", "create", "r")
    cli(env, "put", "-q", str(src), "r@main", "-m", "links")
    assert cli(env, "cat", "r:sub/up") == "x\n"
    assert cli(env, "cat", "r:sub/chain") == "x\n"
    assert cli(env, "cat", "r:subdir/y") == "y\n"
    assert cli(env, "cat", "r:subdir/top/subdir/up") == "x\n"
    assert "outside the snapshot" in cli(env, "cat", "r:sub/escape", code=2)
    assert "outside the snapshot" in cli(env, "cat", "r:abs", code=2)
    assert "too many levels of symbolic links" in cli(env, "cat", "r:loop1", code=2)
    (entry,) = json.loads(cli(env, "ls", "--json", "r:x"))
    assert entry["mtime"].endswith("Z") and "T" in entry["mtime"]  # unambiguous: UTC, ISO 8601


def test_put_follows_a_symlinked_source_only(env: dict[str, str], tmp_path: Path) -> None:
    real = tmp_path / "bigdisk" / "dataset"
    real.mkdir(parents=True)
    (real / "f.txt").write_text("data\n")
    os.symlink("f.txt", real / "inner-link")
    os.symlink(real, tmp_path / "dataset")
    os.symlink(real / "f.txt", tmp_path / "file-link")
    os.symlink("nowhere", tmp_path / "broken")
    cli(env, "init")
    cli(env, "repo", "create", "r")
    cli(env, "put", "-q", str(tmp_path / "dataset"), "r@main:ds", "-m", "via a link")
    assert cli(env, "ls", "-R", "r:ds").split("\n")[:2] == ["ds/f.txt", "ds/inner-link -> f.txt"]
    mixed = run_cli("put", "-q", str(real), "r@main:again", "-m", "links", env=env)
    assert "committed 1 file and 1 link " in mixed.stderr
    cli(env, "put", "-q", str(tmp_path / "file-link"), "r@main:one.txt", "-m", "file link")
    assert cli(env, "cat", "r:one.txt") == "data\n"
    assert "not a regular file" in cli(env, "put", "/dev/null", "r:x", "-m", "x", code=2)
    assert "broken symbolic link" in cli(
        env, "put", str(tmp_path / "broken"), "r:b", "-m", "x", code=2
    )
    msg = cli(env, "put", str(tmp_path / "dataset"), "r@main:one.txt", "-m", "x", code=2)
    assert msg.endswith("r@main:one.txt is a file; a directory cannot replace it")


def test_get_never_writes_through_or_over_other_kinds(
    env: dict[str, str], tree: Path, tmp_path: Path
) -> None:
    cli(env, "init")
    cli(env, "repo", "create", "cams")
    cli(env, "put", "-q", str(tree), "cams@main", "-m", "x")
    outside = tmp_path / "outside"
    outside.mkdir()
    for name, make in (
        ("linked", lambda d: (d / "images").symlink_to(outside)),
        ("file-for-dir", lambda d: (d / "images").write_text("mine")),
        ("dir-for-file", lambda d: (d / "notes.txt").mkdir()),
    ):
        dest = tmp_path / name
        dest.mkdir()
        make(dest)
        before = sorted(os.listdir(dest))
        msg = cli(env, "get", "cams", str(dest), code=2)
        assert "remove it or download somewhere else" in msg, msg
        assert sorted(os.listdir(dest)) == before  # refused before writing anything
        assert not os.listdir(outside)
    target = tmp_path / "via-link"  # the target the user names may itself be a link
    (tmp_path / "real").mkdir()
    target.symlink_to(tmp_path / "real")
    cli(env, "get", "-q", "cams", str(target))
    assert (tmp_path / "real/notes.txt").read_text() == "hello\n"
    assert "s3fsv cat" in cli(env, "get", "cams:notes.txt", "-", code=2)


def test_line_output_quotes_names_with_control_characters(
    env: dict[str, str], tmp_path: Path
) -> None:
    src = tmp_path / "odd"
    src.mkdir()
    (src / "two\nlines.txt").write_text("x")
    (src / "plain.txt").write_text("y")
    cli(env, "init")
    cli(env, "repo", "create", "r")
    cli(env, "put", "-q", str(src), "r@main", "-m", "odd")
    assert cli(env, "ls", "r").splitlines() == ["plain.txt", '"two\\nlines.txt"']
    assert cli(env, "show", "r").splitlines()[-1] == 'A\t"two\\nlines.txt"'
    assert json.loads(cli(env, "ls", "--json", "r"))[1]["path"] == "two\nlines.txt"


def test_ancestors_by_tilde(env: dict[str, str], tmp_path: Path) -> None:
    """REF~N names the N-th first parent, in every command and in mounts' REPO@REF."""
    cli(env, "init")
    cli(env, "repo", "create", "cams")
    src = tmp_path / "v"
    ids = []
    for n in range(3):
        src.write_text(f"version {n}\n")
        ids.append(cli(env, "put", "-q", str(src), "cams@main:v.txt", "-m", f"v{n}").strip())
    assert cli(env, "cat", "cams@main~1:v.txt") == "version 1\n"
    assert cli(env, "cat", "cams@main~:v.txt") == "version 1\n"
    assert cli(env, "cat", "cams@main~1~1:v.txt") == "version 0\n"
    assert cli(env, "cat", f"cams@{ids[2][:8]}~2:v.txt") == "version 0\n"
    assert cli(env, "log", "cams@main~2", "--oneline").splitlines()[0].startswith(ids[0][:12])
    assert "M\tv.txt" in cli(env, "diff", "cams", "main~1", "main")
    assert "past the first commit" in cli(env, "cat", "cams@main~9:v.txt", code=3)
    assert "invalid ref name 'main~x'" in cli(env, "cat", "cams@main~x:v.txt", code=2)
    assert "invalid ref name" in cli(env, "cat", "cams@main~" + "9" * 5000 + ":v.txt", code=2)
    assert "invalid ref name 'main~01'" in cli(env, "cat", "cams@main~01:v.txt", code=2)
    assert "no commit of cams@main touches nosuch" in run_cli("log", "cams:nosuch", env=env).stderr
    assert cli(env, "cat", "cams@main~0:v.txt") == "version 2\n"
    assert "invalid ref name 'main~x'" in cli(env, "diff", "cams", "main~x", "main", code=2)


def test_diff_and_show_list_empty_directories_made_or_removed(
    env: dict[str, str], tmp_path: Path
) -> None:
    """No file path shows an empty directory, so diff and show list it themselves (a directory
    that only lost or gained files is shown by those files)."""
    cli(env, "init")
    cli(env, "repo", "create", "cams")
    src = tmp_path / "src"
    (src / "empty").mkdir(parents=True)
    (src / "full").mkdir()
    (src / "full/f.txt").write_text("f")
    cli(env, "put", "-q", str(src), "cams@main", "-m", "dirs")
    assert cli(env, "show", "cams@main").splitlines()[-2:] == ["A\tempty", "A\tfull/f.txt"]
    repo = Store.open(env["S3FSV_STORE"]).repo("cams")
    new = TreeEntry("new", "dir", 0o755, 0, tree=repo.objects.put(EMPTY_TREE))
    repo.commit("main", {"empty": None, "full/f.txt": None, "new": new}, "rm")
    diff = json.loads(cli(env, "diff", "cams", "main~1", "main", "--json"))
    assert diff == {"added": ["new"], "modified": [], "deleted": ["empty", "full/f.txt"]}
    assert "D\tempty" in cli(env, "show", "cams@main").splitlines()


def test_user_mistakes_get_one_line(env: dict[str, str], tmp_path: Path) -> None:
    cli(env, "init")
    cli(env, "repo", "create", "cams")
    assert "no such repo 'nope'" in cli(env, "ls", "nope", code=3)
    assert "no branch, tag or commit 'zzz'" in cli(env, "ls", "cams@zzz", code=3)
    assert "already exists" in cli(env, "repo", "create", "cams", code=4)
    assert "invalid repo name" in cli(env, "repo", "create", "../x", code=2)
    assert "bad address" in cli(env, "ls", "cams:../etc", code=2)
    assert "unsupported store URL" in cli(env, "--store", "ftp://x/y", "ls", "cams", code=2)
    assert "gone when it exits" in cli(env, "--store", "memory://", "init", code=2)
    bad_endpoint = ("--endpoint-url", "notaurl", "--store", "s3://b/p", "repo", "list")
    assert "must start with http://" in cli(env, *bad_endpoint, code=2)
    cli(env, "tag", "create", "cams", "v0")
    assert "v0 is a tag, not a branch" in cli(
        env, "put", str(tmp_path), "cams@v0", "-m", "x", code=2
    )
    assert "branch create cams nob" in cli(env, "put", str(tmp_path), "cams@nob", "-m", "x", code=3)
    group = run_cli("branch", env=env, check=False)  # a group without its action: its own help
    assert group.returncode == 2 and group.stderr.startswith("usage: s3fsv branch")
    assert "delete" in group.stderr and "COMMAND" not in group.stderr
    for ttl in ("nan", "inf", "0", "-1"):
        ttl_error = run_cli("mount", "cams", str(tmp_path), "--ref-ttl", ttl, env=env, check=False)
        assert ttl_error.returncode == 2 and "positive number of seconds" in ttl_error.stderr
        assert ttl_error.stderr.count("\n") == 1  # one line, as every error; no usage block
    extra = run_cli("tag", "create", "cams", "v1", "main~1", env=env, check=False)
    assert extra.stderr == (
        "s3fsv tag create: error: unrecognized arguments: main~1 (see: s3fsv tag create --help)\n"
    )
    assert "s3fsv init" in cli(env, "--store", f"file://{tmp_path}/empty", "ls", "cams", code=3)
    no_creds = {k: v for k, v in env.items() if not k.startswith("AWS_")}
    no_creds.update(
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    assert "credentials" in cli(no_creds, "--store", "s3://bucket/p", "ls", "cams", code=9)
    unreachable = {
        **no_creds,
        "AWS_ACCESS_KEY_ID": "k",
        "AWS_SECRET_ACCESS_KEY": "secret-never-shown",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    url = f"http://127.0.0.1:{unused_port()}"
    msg = cli(unreachable, "--store", "s3://b/p", "--endpoint-url", url, "ls", "cams", code=8)
    assert "127.0.0.1" in msg and "secret-never-shown" not in msg
    assert "no store given" in cli({**env, "S3FSV_STORE": ""}, "ls", "cams", code=2)
    assert "--store is empty" in cli(env, "--store", "", "ls", "cams", code=2)
    assert "invalid branch name 'a b'" in cli(env, "branch", "create", "cams", "a b", code=2)
    assert "'..' is not allowed" in cli(env, "branch", "create", "cams", "a..b", code=2)
    assert "may not end in '.lock'" in cli(env, "branch", "create", "cams", "x.lock", code=2)
    assert "at most 100 characters" in cli(env, "repo", "create", "r" * 101, code=2)
    assert "--force" in cli(env, "branch", "delete", "cams", "main", code=2)
    # A new ref may not take a name another kind already answers to.
    cli(env, "tag", "create", "cams", "v1")
    assert "has a tag named 'v1'" in cli(env, "branch", "create", "cams", "v1", code=4)
    assert "has a branch named 'main'" in cli(env, "tag", "create", "cams", "main", code=4)
    assert "looks like a commit id" in cli(env, "branch", "create", "cams", "beef", code=2)
    assert cli(env, "ls", "cams") == ""  # main is still there
    (tmp_path / "f").write_text("f")
    put = ("put", str(tmp_path / "f"))
    assert "goes back past the first commit" in cli(env, *put, "cams@main~9:f", "-m", "x", code=3)
    blank = run_cli(*put, "cams@main:f", "-m", " ", env=env, check=False)
    assert blank.returncode == 2 and "s3fsv put: error: " in blank.stderr
    assert "must say something" in blank.stderr and blank.stderr.count("\n") == 1
    cli(env, *put, "cams@main:f", "-m", "f")
    assert "main~1 is a commit, not a branch" in cli(env, *put, "cams@main~1:f", "-m", "x", code=2)
    # The temporary file beside the target is the tool's business: the error names the target.
    msg = cli(env, "get", "cams@main:f", "/proc/version", code=1)
    assert msg == "s3fsv: error: cannot write /proc/version: No such file or directory"
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"jpeg")
    other = f"file://{tmp_path}/photos"
    assert "already holds other data" in cli(env, "--store", other, "init", code=4)
    assert sorted(os.listdir(tmp_path / "photos")) == ["cat.jpg"]  # untouched
    inner = env["S3FSV_STORE"] + "/cams/nested"
    assert "is inside the s3fsv store" in cli(env, "--store", inner, "init", code=4)
    assert "a store needs a directory" in cli(
        env, "--store", f"file://{tmp_path}/photos/cat.jpg", "init", code=2
    )
    assert "cannot create store directory" in cli(env, "--store", "file:///proc/x", "init", code=2)
    for bad in (["get", "-j", "0", "cams", str(tmp_path / "out")], ["log", "cams", "-n", "-1"]):
        result = run_cli(*bad, env=env, check=False)
        assert result.returncode == 2 and "must be at least 1" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


def test_config_file_supplies_the_store(env: dict[str, str], tmp_path: Path) -> None:
    cli(env, "init")
    cli(env, "repo", "create", "cams")
    conf = Path(env["XDG_CONFIG_HOME"]) / "s3fsv"
    conf.mkdir(parents=True)
    (conf / "config.toml").write_text(f'store = "{env["S3FSV_STORE"]}"\n')
    assert cli({**env, "S3FSV_STORE": ""}, "repo", "list").split() == ["cams"]
    (conf / "config.toml").write_text(f'store = "{env["S3FSV_STORE"]}"\nendpoint-url = "x"\n')
    msg = cli({**env, "S3FSV_STORE": ""}, "repo", "list", code=2)
    assert "unknown setting 'endpoint-url'" in msg and "endpoint_url" in msg
    (conf / "config.toml").write_text("store = 3\n")
    assert "must be a string" in cli({**env, "S3FSV_STORE": ""}, "repo", "list", code=2)


def test_init_refuses_store_without_conditional_writes(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """In-process: a backend that ignores conditions is refused by init with one clear line."""
    from s3fsv.cli import app as cli_module
    from s3fsv.store.backend.memory import MemoryBackend
    from s3fsv.store.store import Store

    class Ignoring(MemoryBackend):
        def put(self, key: str, data: bytes, **_: object) -> str:  # type: ignore[override]
            return super().put(key, data)

    monkeypatch.setattr(
        "s3fsv.store.store.open_backend", lambda url, **kw: Ignoring("ignoring-" + str(tmp_path))
    )
    assert Store is not None
    assert cli_module.main(["--store", f"file://{tmp_path}/x", "init"]) == 10


def test_mount_errors_are_clear(env: dict[str, str], tmp_path: Path) -> None:
    cli(env, "init")
    cli(env, "repo", "create", "cams")
    store = env["S3FSV_STORE"]
    assert "does not exist" in cli(env, "mount", store, str(tmp_path / "missing"), code=12)
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("x")
    assert "not empty" in cli(env, "mount", store, str(full), code=12)
    empty = tmp_path / "mp"
    empty.mkdir()
    assert "no such repo" in cli(env, "mount", f"{store}/nope", str(empty), code=3)
    assert "s3fsv init" in cli(env, "mount", f"file://{tmp_path}/nostore", str(empty), code=3)
    assert "bad size" in cli(env, "mount", store, str(empty), "--cache-size", "lots", code=2)
    assert "bad size" in cli(env, "mount", store, str(empty), "--cache-size", "0", code=2)
    for bad_cache in ("/proc/nope", str(full / "x")):  # checked before a daemon starts
        msg = cli(env, "mount", store, str(empty), "--cache-dir", bad_cache, code=12)
        assert msg.startswith(f"s3fsv: error: cannot use {bad_cache} as the cache directory")
    assert "contradict" in cli(env, "mount", store, str(empty), "--read-only", "--rw", code=2)
    assert "not a branch" in cli(env, "mount", f"{store}/cams", str(empty), "--rw", code=2)
    assert "the order is" in cli(env, "mount", str(empty), store, code=2)  # swapped
    pinned = f"{store}/cams@main"
    assert "nothing to commit" in cli(
        env, "mount", pinned, str(empty), "--commit-on", "unmount", code=2
    )
    assert "no such file" in cli(env, "status", str(tmp_path / "nowhere"), code=2)
    missing_ref = cli(env, "mount", f"{store}/cams@nope", str(empty), code=3)
    assert "no branch, tag or commit 'nope'" in missing_ref  # found before any daemon starts
    assert not os.path.ismount(empty)
    with mounted(store, empty, env) as mp:
        inner = mp / "cams" / "branch" / "main" / "inner"
        inner.mkdir()
        assert "inside the s3fsv mount" in cli(env, "mount", store, str(inner), code=12)
        assert not os.path.ismount(inner)
        # Errors about a path name it as the user did, not as the daemon sees it.
        tags = str(mp / "cams" / "tag")
        assert cli(env, "status", tags, code=2).startswith(f"s3fsv: error: {tags} is not inside")
        nosuch = str(mp / "cams" / "branch" / "nosuch")
        assert cli(env, "commit", nosuch, "-m", "x", code=3).endswith(
            f"{nosuch} does not exist (no such branch or directory)"
        )
    assert "neither a store URL" in cli(env, "mount", "./cams", str(empty), code=2)
    # A bare REPO@REF names a repo of the configured store, as addresses do everywhere else.
    with mounted("cams@main", empty, env) as mp:
        assert os.listdir(mp) == []  # main is empty
        (pid,) = daemon_pids(Path(env["XDG_STATE_HOME"]), mp)
        os.kill(pid, signal.SIGKILL)
        while alive(pid):
            time.sleep(0.05)
        assert "has died" in cli(env, "status", str(mp), code=12)
        # Its pid file is stale (the pid may belong to another process by now): not waited on.
        pid_json = next(Path(env["XDG_STATE_HOME"], "s3fsv", "mounts").glob("*.json"))
        pid_json.write_text(json.dumps({**json.loads(pid_json.read_text()), "pid": os.getpid()}))
        cli(env, "unmount", str(mp))  # clears a dead mount
        assert not pid_json.exists()
        assert not in_mount_table(mp)
        cli(env, "mount", "cams@main", str(mp))
        (pid,) = daemon_pids(Path(env["XDG_STATE_HOME"]), mp)
        os.kill(pid, signal.SIGKILL)
        while alive(pid):
            time.sleep(0.05)
        # A mount that fails its checks leaves the dead mount alone; a good one replaces it,
        # as a restarted service needs.
        assert "no such repo" in cli(env, "mount", "nope@main", str(mp), code=3)
        assert in_mount_table(mp)
        again = run_cli("mount", "cams@main", str(mp), env=env)
        assert "replaced the dead mount" in again.stderr
        assert os.listdir(mp) == []
    assert "no such file or directory" in cli(env, "unmount", str(tmp_path / "nodir"), code=12)
    # A mountpoint named through a symlink: the kernel mounts on the real directory.
    (tmp_path / "real-mp").mkdir()
    (tmp_path / "mp-link").symlink_to(tmp_path / "real-mp")
    try:
        cli(env, "mount", "cams@main", str(tmp_path / "mp-link"))
        assert in_mount_table(tmp_path / "real-mp")
        assert "is busy" in cli(env, "mount", "cams", str(tmp_path / "mp-link"), code=12)
        cli(env, "unmount", str(tmp_path / "mp-link"))
        assert not in_mount_table(tmp_path / "real-mp")
    finally:
        force_unmount(tmp_path / "real-mp", Path(env["XDG_STATE_HOME"]))
    # unmount leaves other filesystems alone, even for root.
    other = tmp_path / "tmpfs"
    other.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "none", str(other)], check=True)
    try:
        assert "not an s3fsv mount" in cli(env, "unmount", str(other), code=12)
        assert in_mount_table(other)
    finally:
        subprocess.run(["umount", str(other)], check=True)


def test_help_explains_itself(env: dict[str, str]) -> None:
    out = cli(env, "--help")
    for word in ("init", "put", "mount", "exit codes", "REPO[@REF][:PATH]", "S3FSV_STORE"):
        assert word in out
    assert "--ref-ttl" in cli(env, "mount", "--help")


@pytest.mark.s3
def test_global_options_after_the_command_and_debug_logs_without_credentials(
    s3_bucket_url: str, xdg_env: dict[str, str]
) -> None:
    """--store and --log-level work after the command too; debug output never shows the
    access key (the S3 library's debug lines carry signed headers)."""
    env = {**xdg_env, **{k: v for k, v in os.environ.items() if k.startswith("AWS_")}}
    env.pop("S3FSV_STORE", None)
    cli(env, "init", "--store", s3_bucket_url)
    cli(env, "repo", "create", "cams", "--store", s3_bucket_url)
    for args in (
        ("--log-level", "debug", "--store", s3_bucket_url, "repo", "list"),
        ("repo", "list", "--store", s3_bucket_url, "--log-level", "debug"),
    ):
        result = run_cli(*args, env=env)
        assert result.stdout == "cams\n"
        assert "INFO" in result.stderr  # debug and info lines were on
        assert os.environ["AWS_ACCESS_KEY_ID"] not in result.stderr


def test_provenance_shows_one_command_per_line_quoting_control_characters() -> None:
    prov = {
        "commands": ["cd /w && python detect.py in out", "cd /w && printf 'a\nb'"],
        "inputs": [{"repo": "cams", "commit": "c" * 64, "via": "branch/main"}],
        "user": "ann",
    }
    assert _provenance_lines(prov) == [
        "commands (that wrote through the mount):",
        "  cd /w && python detect.py in out",
        "  \"cd /w && printf 'a\\nb'\"",
        "inputs (read through the mount):",
        f"  cams@{'c' * 64}  (via branch/main)",
        'user: "ann"',
    ]


@pytest.mark.parametrize(
    ("via", "how"),
    [
        ("api", "read through the Python API"),
        ("pipeline", "the input commit of the pipeline job"),
        ("branch/main", "read through the mount"),
    ],
)
def test_provenance_says_how_inputs_were_read(via: str, how: str) -> None:
    prov = {"inputs": [{"repo": "cams", "commit": "c" * 64, "via": via}]}
    assert _provenance_lines(prov)[0] == f"inputs ({how}):"
