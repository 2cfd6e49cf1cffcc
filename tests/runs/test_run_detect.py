"""``s3fsv run`` with the real detector (examples/detect.py) on a pinned commit of a store on
SeaweedFS, through a FUSE mount; then ``reproduce`` (identical, and after the script changed),
``--no-fuse``, and lineage both ways. One run of the detector is shared by the module."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import s3fsv
from s3fsv.runs.record import comparable
from tests.runs.helpers import cli, module_bucket, xdg

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples"))

from sample_data import SAMPLES, copy_samples  # noqa: E402

DETECT_ARGV = [sys.executable, "detect.py", "{in}/images", "{out}"]


@dataclass
class World:
    env: dict[str, str]
    work: Path  # the directory the runs ran in, holding the copy of detect.py
    ingest: str  # cams commit holding images/
    run: str  # det commit made by the shared detector run
    store: s3fsv.Store

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return cli(self.work, *args, env=self.env, check=check)

    def show(self, repo: str, commit: str) -> dict:
        return json.loads(self.cli("show", f"{repo}@{commit}", "--json").stdout)


@pytest.fixture(scope="module")
def world(seaweed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("runs")
    with module_bucket(seaweed, tmp) as url:
        env = xdg(tmp, S3FSV_STORE=url)
        work = tmp / "work"
        work.mkdir()
        shutil.copyfile(ROOT / "examples" / "detect.py", work / "detect.py")
        copy_samples(tmp / "local")
        cli(work, "init", env=env)
        for repo in ("cams", "det", "derived", "final", "other"):
            cli(work, "repo", "create", repo, env=env)
        put = cli(work, "put", "-q", str(tmp / "local/images"), "cams@main:images", "-m",
                  "ingest", env=env)  # fmt: skip
        ingest = put.stdout.strip()
        done = cli(
            work, "run", "--in", f"cams@{ingest}:images", "--out", "det@main:runs/a",
            "--", *DETECT_ARGV, env=env,
        )  # fmt: skip
        with s3fsv.open_store(url, cache_dir=tmp / "test-cache") as store:
            yield World(env, work, ingest, done.stdout.strip().splitlines()[-1], store)


def outputs(store: s3fsv.Store, repo: str, commit: str, path: str) -> dict[str, str]:
    """path below ``path`` -> sha256, for the files of a commit."""
    return {
        e.path[len(path) + 1 :]: e.sha256
        for e in store.repo(repo).walk(commit, path)
        if e.kind == "file"
    }


def test_record_names_input_argv_script_and_packages(world: World) -> None:
    shown = world.show("det", world.run)
    record = shown["provenance"]["run"]
    assert record["inputs"] == [
        {"name": "cams", "repo": "cams", "ref": world.ingest, "commit": world.ingest,
         "path": "images"}
    ]  # fmt: skip
    assert record["output"] == {"repo": "det", "branch": "main", "path": "runs/a"}
    assert record["argv"] == DETECT_ARGV
    assert record["cwd"] == str(world.work)
    assert record["exit_code"] == 0 and record["mode"] == "fuse"
    script = next(f for f in record["code"]["files"] if f["named_by"] == "argv[1]")
    assert script["path"] == str(world.work / "detect.py")
    assert script["sha256"] == hashlib.sha256((world.work / "detect.py").read_bytes()).hexdigest()
    dists = record["code"]["python"]["distributions"]
    for name in ("numpy", "onnxruntime", "opencv-python-headless"):
        assert dists[name] == importlib.metadata.version(name)
    assert shown["provenance"]["inputs"] == [
        {"repo": "cams", "commit": world.ingest, "path": "images", "via": "run"}
    ]
    got = outputs(world.store, "det", world.run, "runs/a")
    assert sorted(got) == sorted([f"{name}.json" for name in SAMPLES] + ["summary.json"])
    summary = json.loads(world.store.repo("det").read_bytes(world.run, "runs/a/summary.json"))
    assert summary["faces"] >= 2
    # The run's directory is gone, and so is its mount.
    assert not list((Path(world.env["XDG_STATE_HOME"]) / "s3fsv" / "runs").iterdir())
    log = world.cli("log", "det", "-n", "1").stdout
    assert f"run {record['id']} (fuse mode, exit 0)" in log
    assert f"input:    cams = cams@{world.ingest}:images" in log
    assert f"code:     argv[1] {world.work / 'detect.py'} sha256 {script['sha256'][:16]}" in log


def test_reproduce_reports_every_file_identical(world: World) -> None:
    head = world.store.repo("det").resolve("main")
    done = world.cli("reproduce", f"det@{world.run}")
    assert done.returncode == 0, done.stderr
    n = len(outputs(world.store, "det", world.run, "runs/a"))
    assert done.stdout == f"reproduced: {n}/{n} files identical\n"  # the command's went to stderr
    assert "[1/7] astronaut.png" in done.stderr
    assert "warning" not in done.stderr
    assert "scratch branch det@reproduce-" in done.stderr and "deleted" in done.stderr
    assert world.store.repo("det").branches() == {"main": head}  # never moved, scratch gone
    # The scratch commit is downstream of nothing once its branch is deleted.
    assert ("det", world.run) in world.store.derived_from("cams", world.ingest)
    for repo, commit in world.store.derived_from("cams", world.ingest):
        assert "reproduces" not in world.store.repo(repo).commit(commit).provenance["run"]


def test_reproduce_after_the_script_changed(world: World) -> None:
    script = world.work / "detect.py"
    original = script.read_bytes()
    edited = original.replace(
        b'"faces": sum(per_image.values()),', b'"faces": sum(per_image.values()), "edited": 1,'
    )
    assert edited != original
    script.write_bytes(edited)
    try:
        done = world.cli("reproduce", f"det@{world.run}", "--keep", check=False)
    finally:
        script.write_bytes(original)
    assert done.returncode == 1, done.stderr
    assert "warning: the code differs from the recorded run" in done.stderr
    assert f"{script}: content changed" in done.stderr
    lines = done.stdout.strip().splitlines()
    n = len(outputs(world.store, "det", world.run, "runs/a"))
    assert lines[-1] == f"reproduced: {n - 1}/{n} files identical"
    assert lines[:-1] == ["different: summary.json"]
    kept = [b for b in world.store.repo("det").branches() if b.startswith("reproduce-")]
    assert len(kept) == 1 and f"scratch branch kept: det@{kept[0]}" in done.stderr
    scratch = world.store.repo("det").commit(kept[0])
    assert scratch.provenance["run"]["reproduces"] == world.run
    world.store.repo("det").delete_branch(kept[0])


def test_no_fuse_gives_the_same_tree_and_record(world: World) -> None:
    done = world.cli(
        "run", "--no-fuse", "--in", f"cams@{world.ingest}:images", "--out", "det@main:runs/a",
        "--", *DETECT_ARGV,
    )  # fmt: skip
    assert "downloaded 7 file(s)" in done.stderr
    local = done.stdout.strip().splitlines()[-1]
    assert outputs(world.store, "det", local, "runs/a") == outputs(
        world.store, "det", world.run, "runs/a"
    )
    fuse_record = world.show("det", world.run)["provenance"]["run"]
    local_record = world.show("det", local)["provenance"]["run"]
    assert local_record["mode"] == "local" and fuse_record["mode"] == "fuse"
    assert comparable(local_record) == comparable(fuse_record)


def test_downstream_two_runs_away_and_nothing_unrelated(world: World) -> None:
    copy = world.cli(
        "run", "--in", f"det@{world.run}:runs/a", "--out", "derived@main",
        "--", "sh", "-c", 'cp "$S3FSV_IN/runs/a/summary.json" {out}/s.json',
    ).stdout.strip()  # fmt: skip
    again = world.cli(
        "run", "--in", "derived", "--out", "final@main:f", "--",
        "sh", "-c", "wc -c < {in}/s.json > {out}/size",
    ).stdout.strip()  # fmt: skip
    # Unrelated: another ingest of cams, and a run on it.
    (world.work / "new.txt").write_text("another batch\n")
    other_ingest = world.cli("put", "new.txt", "cams@main:new.txt", "-m", "batch 2").stdout.strip()
    unrelated = world.cli(
        "run", "--in", "cams@main:new.txt", "--out", "other@main", "--",
        "cp", "{in}/new.txt", "{out}/copy.txt",
    ).stdout.strip()  # fmt: skip
    rows = json.loads(world.cli("lineage", "--downstream", f"cams@{world.ingest}", "--json").stdout)
    found = {(r["repo"], r["commit"]): r for r in rows}
    assert found[("det", world.run)]["depth"] == 1
    assert found[("derived", copy)]["depth"] == 2  # two runs away
    assert found[("derived", copy)]["from"] == [{"repo": "det", "commit": world.run}]
    assert found[("final", again)]["depth"] == 3
    assert ("other", unrelated) not in found
    assert all(repo in ("det", "derived", "final") for repo, _ in found)
    later = json.loads(
        world.cli("lineage", "--downstream", f"cams@{other_ingest}", "--json").stdout
    )
    assert [(r["repo"], r["commit"]) for r in later] == [("other", unrelated)]

    # Upstream: from the last output back to the ingest, as a tree and as JSON.
    text = world.cli("lineage", "final").stdout
    assert f"cams@{world.ingest[:12]}:images" in text and "no recorded inputs: ingest" in text
    tree = json.loads(world.cli("lineage", "final", "--json").stdout)
    det_node = tree["inputs"][0]["inputs"][0]
    assert (det_node["repo"], det_node["commit"]) == ("det", world.run)
    assert det_node["inputs"][0]["commit"] == world.ingest
    assert det_node["inputs"][0]["inputs"] == []

    # File-level: who last wrote final:f/size, and from what.
    blame = json.loads(world.cli("lineage", "final@main:f/size", "--json").stdout)
    assert blame["commit"] == again and blame["record"]["argv"][0] == "sh"
    assert blame["inputs"] == [{"repo": "derived", "commit": copy, "path": "", "via": "run"}]
    said = world.cli("lineage", "final@main:f/size").stdout
    assert said.startswith(f"f/size: last written by final@{again[:12]}")
