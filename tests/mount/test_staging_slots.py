"""Staging slots: concurrent mounts of one branch stage in separate slots, and writes an earlier
mount left in any slot are shown (and committed) by the next mount of the branch."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from s3fsv.mount.staging import SlotLock, Staged, Staging, leftover_staging
from s3fsv.store.provenance import command_of
from s3fsv.store.store import Store
from tests.mounting import mounted, run_cli

URL = "file:///nowhere/store"


def _stage(slot: SlotLock, *paths: str) -> None:
    staging = Staging(slot.path)
    for path in paths:
        staging.put(Staged(path, "dir"))
    staging.close()


def test_a_mount_takes_the_free_slot_that_holds_staged_writes(tmp_path: Path) -> None:
    first = SlotLock(tmp_path, URL, "cams", "main")
    second = SlotLock(tmp_path, URL, "cams", "main")
    assert (first.path.name, second.path.name) == ("slot-0", "slot-1")
    _stage(second, "a", "b")
    second.release()
    assert leftover_staging(tmp_path, URL) == [("cams", "main", [(2, 0)])]
    first.release()  # slot-0 is free again, and empty
    again = SlotLock(tmp_path, URL, "cams", "main")
    assert again.path == second.path
    assert leftover_staging(tmp_path, URL) == []  # held: nothing is left over
    # With no staged writes anywhere, the first free slot.
    other = SlotLock(tmp_path, URL, "cams", "dev")
    assert other.path.name == "slot-0"
    again.release()
    other.release()


def test_leftovers_are_counted_per_slot_in_the_order_mounts_take_them(tmp_path: Path) -> None:
    held = [SlotLock(tmp_path, URL, "cams", "main") for _ in range(4)]
    _stage(held[3], "x")
    _stage(held[1], "y", "z")
    for slot in held:
        slot.release()
    area = held[0].path.parent
    shutil.rmtree(area / "slot-2")  # a gap: later slots still count
    (area / "slot-x").mkdir()  # not a slot: ignored
    (area / "slot-4").write_text("")  # damaged: skipped, never fatal
    assert leftover_staging(tmp_path, URL) == [("cams", "main", [(2, 0), (1, 0)])]
    assert leftover_staging(tmp_path, URL, "other") == []
    taken = [SlotLock(tmp_path, URL, "cams", "main") for _ in range(4)]
    assert [t.path.name for t in taken] == ["slot-1", "slot-3", "slot-0", "slot-2"]
    assert leftover_staging(tmp_path, URL) == []
    for slot in taken:
        slot.release()


def test_writes_of_a_second_concurrent_mount_are_committed_by_the_next_mount(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """The second of two concurrent mounts stages in slot 1. After both unmount, a new mount
    (whose first free slot is the empty slot 0) shows those writes and commits them."""
    url = f"file://{tmp_path}/store"
    Store.init(url).create_repo("cams")
    with mounted(url, tmp_path / "a", env) as first:
        assert (first / "cams/branch/main").is_dir()  # takes a staging slot
        with mounted(url, tmp_path / "b", env) as second:
            (second / "cams/branch/main/keep.txt").write_text("keep")
    said: list[str] = []
    with mounted(url, tmp_path / "c", env, "--commit-on", "unmount", said=said) as third:
        assert "cams@main has 1 path(s) staged by an earlier mount" in "".join(said)
        assert (third / "cams/branch/main/keep.txt").read_text() == "keep"
        status = run_cli("status", str(third / "cams/branch/main"), env=env).stdout
        assert "keep.txt" in status
    repo = Store.open(url).repo("cams")
    entry = repo.stat(repo.resolve("main"), "keep.txt")
    assert b"".join(repo.read_file(entry)) == b"keep"


def test_what_a_mount_that_staged_nothing_read_and_ran_is_not_provenance_of_a_later_commit(
    tmp_path: Path, env: dict[str, str]
) -> None:
    url = f"file://{tmp_path}/store"
    repo = Store.init(url).create_repo("cams")
    (tmp_path / "in.txt").write_text("in")
    run_cli(
        "--store",
        url,
        "put",
        "-q",
        str(tmp_path / "in.txt"),
        "cams@main:in.txt",
        "-m",
        "in",
        env=env,
    )
    seed = repo.resolve("main")
    with mounted(url, tmp_path / "a", env) as mp:
        assert (mp / "cams/branch/main").is_dir()  # the branch's staging slot records reads
        assert (mp / "cams/commit" / seed / "in.txt").read_text() == "in"
        subprocess.run(["touch", str(mp / "cams/branch/main/gone")], check=True)  # commands
        subprocess.run(["rm", str(mp / "cams/branch/main/gone")], check=True)
    with mounted(url, tmp_path / "b", env, "--commit-on", "unmount") as mp:
        (mp / "cams/branch/main/out.txt").write_text("out")
    cid = repo.resolve("main")
    assert cid != seed
    provenance = repo.commit_object(cid).provenance
    assert provenance["inputs"] == []
    assert provenance.get("commands", []) == [command_of(os.getpid())]  # only this writer
