"""``s3fsv import`` on SeaweedFS: zero-copy commits read back verified, an original changed or
deleted afterwards is an error everywhere (never other bytes), ``--copy`` keeps its own
bytes, metadata become attributes (and xattrs on a mount), and repeated imports add only
what is new."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import fsspec
import pytest

from s3fsv.errors import SourceChanged
from tests.ingest.conftest import Bucket
from tests.mounting import mounted, run_cli

pytestmark = pytest.mark.s3


def _image(i: int) -> bytes:
    return f"image {i} ".encode() * (200 + i)


def _store_objects(bucket: Bucket) -> dict[str, bytes]:
    return {k: v for k, v in bucket.objects().items() if k.startswith("store/")}


def test_zero_copy_import_reads_back_verified_then_a_changed_original_is_an_error(
    bucket: Bucket,
) -> None:
    for i in range(6):
        bucket.put(f"h{i % 2}/cam{i}/{i:04d}.jpg", _image(i), house=f"h{i % 2}", junk="x")
    out = bucket.cli("import", f"s3://{bucket.name}/incoming/", "cams@main:images", "--quiet")
    assert "imported 6 object(s)" in out.stdout

    # Read back through the CLI, the API and fsspec: the originals' bytes, verified.
    for i in range(6):
        path = f"images/h{i % 2}/cam{i}/{i:04d}.jpg"
        assert bucket.cli("cat", f"cams@main:{path}").stdout.encode() == _image(i)
    with bucket.open() as store:
        repo = store.repo("cams")
        info = repo.stat("main", "images/h1/cam1/0001.jpg")
        assert info.attrs == {"house": "h1"}  # not junk: only names of a device or customer
        assert info.source == f"s3://{bucket.name}/incoming/h1/cam1/0001.jpg"
        assert repo.read_bytes("main", "images/h0/cam2/0002.jpg") == _image(2)
    # Zero copy: no object of the store holds an image's bytes.
    assert not [k for k, v in _store_objects(bucket).items() if b"image 3 image 3" in v]

    bucket.put("h1/cam3/0003.jpg", b"someone else's bytes")
    bucket.client.delete_object(Bucket=bucket.name, Key="incoming/h1/cam5/0005.jpg")
    # A fresh cache, so that the reads go to the originals.
    cold = {**bucket.env, "XDG_CACHE_HOME": bucket.env["XDG_CACHE_HOME"] + "-cold"}
    changed = run_cli("cat", "cams@main:images/h1/cam3/0003.jpg", env=cold, check=False)
    assert changed.returncode == 7 and changed.stdout == ""
    assert changed.stderr.count("\n") == 1 and "changed after it was imported" in changed.stderr
    deleted = run_cli("cat", "cams@main:images/h1/cam5/0005.jpg", env=cold, check=False)
    assert deleted.returncode == 7 and "was deleted after it was imported" in deleted.stderr
    assert "Traceback" not in changed.stderr + deleted.stderr
    fs = fsspec.filesystem(
        "s3fsv",
        store=bucket.store_url,
        cache_dir=cold["XDG_CACHE_HOME"] + "-fsspec",
        skip_instance_cache=True,
    )
    with pytest.raises(SourceChanged, match="changed after it was imported"):
        fs.cat_file("cams@main/images/h1/cam3/0003.jpg")
    assert fs.cat_file("cams@main/images/h0/cam4/0004.jpg") == _image(4)


def test_copy_import_keeps_its_bytes_when_the_original_changes(bucket: Bucket) -> None:
    bucket.put("h7/a.jpg", _image(7), house="h7", device="cam-12")
    bucket.cli("import", f"s3://{bucket.name}/incoming/", "cams@main", "--copy", "--quiet")
    bucket.client.delete_object(Bucket=bucket.name, Key="incoming/h7/a.jpg")
    with bucket.open() as store:
        repo = store.repo("cams")
        assert repo.read_bytes("main", "h7/a.jpg") == _image(7)
        assert repo.stat("main", "h7/a.jpg").attrs == {"device": "cam-12", "house": "h7"}
        assert repo.stat("main", "h7/a.jpg").source == ""


def test_imports_add_only_new_and_changed_objects(bucket: Bucket) -> None:
    source = f"s3://{bucket.name}/incoming/"
    bucket.put("a.jpg", b"a1")
    bucket.put("b.jpg", b"b1")
    assert "imported 2 object(s)" in bucket.cli("import", source, "cams@main", "--quiet").stdout
    again = bucket.cli("import", source, "cams@main", "--quiet").stdout
    assert "imported 0 object(s)" in again and "no commit" in again
    bucket.put("a.jpg", b"a2")  # overwritten: a new object under the same key
    bucket.put("c.jpg", b"c1")
    third = bucket.cli("import", source, "cams@main", "--quiet", "--json").stdout
    assert '"imported": 2' in third
    with bucket.open() as store:
        repo = store.repo("cams")
        assert repo.read_bytes("main", "a.jpg") == b"a2"
        assert [c.provenance["import"]["objects"] for c in repo.log("main", limit=2)] == [2, 2]


def test_a_mount_shows_attributes_and_refuses_a_changed_original(
    bucket: Bucket, tmp_path: Path
) -> None:
    bucket.put("h1/x.jpg", _image(1), house="h1", device="cam-1")
    bucket.put("h1/y.jpg", _image(2), house="h1")
    bucket.cli("import", f"s3://{bucket.name}/incoming/", "cams@main", "--quiet")
    bucket.put("h1/y.jpg", b"replaced")
    with mounted(bucket.store_url, tmp_path / "mnt", bucket.env) as mp:
        path = mp / "cams" / "branch" / "main" / "h1"
        assert (path / "x.jpg").read_bytes() == _image(1)
        assert os.getxattr(path / "x.jpg", "user.s3fsv.attr.house") == b"h1"
        assert os.getxattr(path / "x.jpg", "user.s3fsv.attr.device") == b"cam-1"
        assert os.getxattr(path / "x.jpg", "user.s3fsv.source") == (
            f"s3://{bucket.name}/incoming/h1/x.jpg".encode()
        )
        with pytest.raises(OSError) as raised:
            (path / "y.jpg").read_bytes()
        assert raised.value.errno == errno.EIO
    logs = "".join(
        p.read_text() for p in Path(bucket.env["XDG_STATE_HOME"]).glob("s3fsv/logs/*.log")
    )
    assert "changed after it was imported" in logs
