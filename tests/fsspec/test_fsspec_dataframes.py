"""pandas, pyarrow and xarray read and write ``s3fsv://`` through fsspec. pandas and pyarrow
run against the real SeaweedFS server; xarray (netCDF through h5netcdf) on a local store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import xarray as xr

from s3fsv.fsspec import S3fsvFileSystem
from s3fsv.store.store import Store


@pytest.fixture
def fresh_instances() -> Iterator[None]:
    """fsspec keeps filesystems made from storage options; drop this test's afterwards."""
    yield
    S3fsvFileSystem.clear_instance_cache()


@pytest.mark.s3
def test_pandas_reads_a_tag_and_writes_a_commit(
    s3_bucket_url: str, tmp_path: Path, fresh_instances: None
) -> None:
    Store.init(s3_bucket_url).create_repo("tables")
    opts: dict[str, Any] = {"store": s3_bucket_url, "cache_dir": str(tmp_path / "cache")}
    frame = pd.DataFrame({"id": range(500), "label": [f"obj{i % 7}" for i in range(500)]})
    frame.to_csv("s3fsv://tables/in/objects.csv", index=False, storage_options=opts)
    fs = fsspec.filesystem("s3fsv", **opts)
    fs.store.repo("tables").create_tag("v1", "main")
    fs.rm("tables/in/objects.csv")  # main moves on; the tag still has the file

    back = pd.read_csv("s3fsv://tables@v1/in/objects.csv", storage_options=opts)
    pd.testing.assert_frame_equal(back, frame)
    counts = back.groupby("label").size().rename("n").reset_index()
    counts.to_csv("s3fsv://tables/out/counts.csv", index=False, storage_options=opts)

    assert not fs.exists("tables/in/objects.csv")
    again = pd.read_csv("s3fsv://tables/out/counts.csv", storage_options=opts)
    assert again["n"].sum() == 500
    head = fs.store.repo("tables").commit("main")
    assert head.message == "fsspec write tables/out/counts.csv"
    tag = fs.store.repo("tables").resolve("v1")
    assert {"repo": "tables", "commit": tag, "via": "api"} in head.provenance["inputs"]


@pytest.mark.s3
def test_pyarrow_dataset_over_a_pinned_commit(
    s3_bucket_url: str, tmp_path: Path, fresh_instances: None
) -> None:
    Store.init(s3_bucket_url).create_repo("lake")
    fs = S3fsvFileSystem(s3_bucket_url, cache_dir=tmp_path / "cache")
    table = pa.table({"day": [1, 1, 2, 2, 3], "value": [10.0, 11.0, 20.0, 21.0, 30.0]})
    with fs.transaction as tx:
        tx.message = "partitioned table"
        pq.write_to_dataset(table, "lake/events", partition_cols=["day"], filesystem=fs)
    commit = fs.store.repo("lake").resolve("main")
    assert fs.store.repo("lake").commit(commit).message == "partitioned table"
    assert len(fs.find("lake/events")) == 3

    fs.rm("lake/events", recursive=True)  # the pinned commit keeps them
    dataset = ds.dataset(
        f"lake@{commit[:12]}/events", filesystem=fs, format="parquet", partitioning="hive"
    )
    got = dataset.to_table().sort_by("value")
    assert got.column("value").to_pylist() == [10.0, 11.0, 20.0, 21.0, 30.0]
    assert got.column("day").to_pylist() == [1, 1, 2, 2, 3]
    assert dataset.to_table(filter=ds.field("day") == 2).num_rows == 2


def test_xarray_opens_netcdf_through_fsspec_open(tmp_path: Path, fresh_instances: None) -> None:
    url = (tmp_path / "store").as_uri()
    Store.init(url).create_repo("climate")
    opts: dict[str, Any] = {"store": url, "cache_dir": str(tmp_path / "cache")}
    data = xr.Dataset(
        {"t": (("time", "x"), np.arange(12.0).reshape(3, 4))},
        coords={"time": [0, 1, 2], "x": [10, 20, 30, 40]},
    )
    fs = fsspec.filesystem("s3fsv", **opts)
    with fs.open("climate/t.nc", "wb") as f:  # HDF5 seeks and reads back while writing
        data.to_netcdf(f, engine="h5netcdf")

    with fsspec.open("s3fsv://climate@main/t.nc", "rb", **opts) as f:
        opened = xr.open_dataset(f, engine="h5netcdf")
        assert float(opened["t"].sel(time=2, x=40)) == 11.0
        xr.testing.assert_identical(opened.load(), data)
    by_url = xr.open_dataset("s3fsv://climate/t.nc", engine="h5netcdf", storage_options=opts)
    xr.testing.assert_identical(by_url.load(), data)
