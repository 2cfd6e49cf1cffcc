"""fstab entries of type ``fuse.s3fsv``: option translation, and for real, as root, through
``mount -T FILE`` and ``umount`` with the helper ``s3fsv setup mount-helper`` installs."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mounting import alive, daemon_pids, force_unmount, run_cli

from s3fsv.errors import UsageError
from s3fsv.ops.fstab import parse_helper_args, translate
from s3fsv.ops.helper import HELPER_PATH, ours
from s3fsv.store import transfer
from s3fsv.store.store import Store


def mount_argv(*helper_args: str) -> list[str]:
    return translate(parse_helper_args(helper_args))[0]


def test_options_translate_to_mount_options(tmp_path: Path) -> None:
    argv = mount_argv(
        "s3://b/p/cams@main",
        "/mnt/data",
        "-o",
        "rw,_netdev,ro,cache_dir=/var/cache/s3fsv,allow_other,nofail,commit_on=idle=60,"
        "cache_size=20G,ref_ttl=2,metrics_addr=127.0.0.1:9108,x-systemd.requires=a.service",
        "-t",
        "fuse.s3fsv",
    )
    assert argv == [
        "mount", "s3://b/p/cams@main", "/mnt/data", "--read-only", "--cache-dir",
        "/var/cache/s3fsv", "--allow-other", "--commit-on", "idle=60", "--cache-size", "20G",
        "--ref-ttl", "2", "--metrics-addr", "127.0.0.1:9108",
    ]  # fmt: skip
    # rw is mount(8)'s default, passed for every entry without ro: writable asks for --rw.
    assert mount_argv("cams@main", "/m", "-o", "rw") == ["mount", "cams@main", "/m"]
    assert mount_argv("cams@main", "/m", "-o", "writable,store=s3://b/p")[3:] == [
        "--rw", "--store", "s3://b/p",
    ]  # fmt: skip
    env_file = tmp_path / "creds.env"
    env_file.write_text("# credentials\nAWS_ACCESS_KEY_ID=k\nexport AWS_SECRET_ACCESS_KEY='s'\n")
    env_file.chmod(0o600)
    _, env, _ = translate(parse_helper_args(["s", "/m", f"-oenv_file={env_file}"]))
    assert env == {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}
    env_file.chmod(0o644)
    with pytest.raises(UsageError, match="chmod 600"):
        translate(parse_helper_args(["s", "/m", "-o", f"env_file={env_file}"]))


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ("ro,bogus_opt", "unknown option 'bogus_opt'"),
        ("noexec", "unknown option 'noexec'"),  # not applied, so not silently accepted
        ("cache_size=lots", "bad option cache_size=lots"),
        ("cache_dir", "option cache_dir needs a value"),
        ("commit_on=sometimes", "bad option commit_on=sometimes"),
        ("metrics_addr=9108", "bad option metrics_addr=9108"),
        ("allow_other=1", "option allow_other takes no value"),
        ("foreground", "option foreground is not for fstab"),
    ],
)
def test_bad_options_are_refused_by_name(options: str, named: str) -> None:
    with pytest.raises(UsageError, match=named):
        mount_argv("s3://b/p", "/m", "-o", options)


def test_sloppy_ignores_unknown_options() -> None:
    argv, _, ignored = translate(parse_helper_args(["s3://b/p", "/m", "-s", "-o", "ro,odd"]))
    assert argv == ["mount", "s3://b/p", "/m", "--read-only"] and ignored == ["odd"]


@pytest.fixture
def helper() -> Iterator[Path]:
    """The helper, installed in /sbin for the test (as mount(8) looks only there), and removed
    afterwards; a helper that was there before is put back."""
    if os.geteuid() != 0:
        pytest.skip("installing /sbin/mount.fuse.s3fsv needs root")
    saved = HELPER_PATH.read_bytes() if HELPER_PATH.exists() else None
    try:
        run_cli("setup", "mount-helper", "--force")
        assert ours(HELPER_PATH) and os.access(HELPER_PATH, os.X_OK)
        yield HELPER_PATH
    finally:
        if saved is None:
            HELPER_PATH.unlink(missing_ok=True)
        else:
            HELPER_PATH.write_bytes(saved)
            HELPER_PATH.chmod(0o755)


def _wait_gone(pids: list[int]) -> None:
    deadline = time.monotonic() + 30
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(p) for p in pids)


def test_fstab_entry_mounts_reads_and_unmounts(
    helper: Path, tmp_path: Path, env: dict[str, str]
) -> None:
    url = f"file://{tmp_path}/store"
    repo = Store.init(url).create_repo("cams")
    (tmp_path / "hello.txt").write_text("hello from the store")
    transfer.put(repo, "main", tmp_path / "hello.txt", "hello.txt", "one file")
    mp = tmp_path / "data"
    mp.mkdir()
    fstab = tmp_path / "fstab"
    options = f"_netdev,nofail,ro,cache_dir={tmp_path}/cache,cache_size=1G"
    fstab.write_text(f"# a temporary fstab\n{url}/cams@main {mp} fuse.s3fsv {options} 0 0\n")
    state = Path(env["XDG_STATE_HOME"])
    try:
        for command in (["mount", "-T", str(fstab), str(mp)], ["mount", "-a", "-T", str(fstab)]):
            result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
            assert result.returncode == 0, result.stderr
            assert os.path.ismount(mp)  # usable when mount(8) returns
            assert (mp / "hello.txt").read_text() == "hello from the store"
            with pytest.raises(OSError):
                (mp / "new.txt").write_text("refused: ro")
            pids = daemon_pids(state, mp)
            assert len(pids) == 1
            subprocess.run(["umount", str(mp)], check=True, timeout=60)
            assert not os.path.ismount(mp)
            _wait_gone(pids)
    finally:
        force_unmount(mp, state)


def test_fstab_entry_with_a_bad_option_fails_naming_it(
    helper: Path, tmp_path: Path, env: dict[str, str]
) -> None:
    url = f"file://{tmp_path}/store"
    Store.init(url).create_repo("cams")
    mp = tmp_path / "data"
    mp.mkdir()
    fstab = tmp_path / "fstab"
    fstab.write_text(f"{url}/cams@main {mp} fuse.s3fsv ro,cache_sise=1G 0 0\n")
    result = subprocess.run(
        ["mount", "-T", str(fstab), str(mp)], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "unknown option 'cache_sise'" in result.stderr
    assert not os.path.ismount(mp)
