"""``s3fsv.open_store``: where the store comes from, and one-line project errors (never a
boto3 or botocore exception) for every way it cannot be opened."""

from __future__ import annotations

import socket
import stat
from pathlib import Path

import pytest
from api_support import init_store, new_store
from s3server import SeaweedServer

import s3fsv
from s3fsv.errors import BucketMissing, NotFound, S3fsvError, StoreUnavailable, UsageError


@pytest.fixture
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty config directory, and no S3FSV_STORE."""
    monkeypatch.delenv("S3FSV_STORE", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    (tmp_path / "config" / "s3fsv").mkdir(parents=True)
    return tmp_path / "config" / "s3fsv"


def one_line_error(err: BaseException) -> None:
    assert isinstance(err, S3fsvError)
    assert type(err).__module__ == "s3fsv.errors"
    message = str(err)
    assert message and "\n" not in message and "Traceback" not in message


def test_without_a_url_the_environment_then_the_config_file(
    tmp_path: Path, config_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    new_store(tmp_path / "a").close()
    new_store(tmp_path / "b").close()
    url_a, url_b = (tmp_path / "a" / "store").as_uri(), (tmp_path / "b" / "store").as_uri()
    cache = tmp_path / "cache"
    with pytest.raises(UsageError) as caught:
        s3fsv.open_store(cache_dir=cache)
    one_line_error(caught.value)
    assert "S3FSV_STORE" in str(caught.value)

    (config_home / "config.toml").write_text(f'store = "{url_a}"\n')
    with s3fsv.open_store(cache_dir=cache) as store:
        assert store.url == url_a
        assert store.repos() == ["r"]
    monkeypatch.setenv("S3FSV_STORE", url_b)  # the environment comes first
    with s3fsv.open_store(cache_dir=cache) as store:
        assert store.url == url_b
    with s3fsv.open_store(url_a, cache_dir=cache) as store:  # and a URL given before both
        assert store.url == url_a


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("", UsageError),
        ("   ", UsageError),
        ("memory://x", UsageError),
        ("ftp://host/x", UsageError),
        ("s3://", UsageError),
        ("file://relative/path", UsageError),
    ],
)
def test_bad_urls_are_usage_errors(url: str, error: type, tmp_path: Path) -> None:
    with pytest.raises(error) as caught:
        s3fsv.open_store(url, cache_dir=tmp_path / "cache")
    one_line_error(caught.value)


def test_a_missing_or_uninitialised_file_store_is_not_found(tmp_path: Path) -> None:
    for where in (tmp_path / "missing", tmp_path):  # nothing there; a directory, no marker
        with pytest.raises(NotFound) as caught:
            s3fsv.open_store(where.as_uri(), cache_dir=tmp_path / "cache")
        one_line_error(caught.value)
        assert "not an s3fsv store" in str(caught.value)


def test_bad_cache_settings_are_usage_errors(tmp_path: Path) -> None:
    new_store(tmp_path).close()
    url = (tmp_path / "store").as_uri()
    (tmp_path / "a-file").write_bytes(b"")
    for kwargs in (
        {"cache_dir": tmp_path / "a-file"},
        {"cache_dir": tmp_path / "a-file" / "below"},
        {"cache_dir": tmp_path / "c", "cache_size": "lots"},
        {"cache_dir": tmp_path / "c", "cache_size": 0},
    ):
        with pytest.raises(UsageError) as caught:
            s3fsv.open_store(url, **kwargs)  # type: ignore[arg-type]
        one_line_error(caught.value)


def test_the_cache_directory_is_private(
    tmp_path: Path, store: s3fsv.Store, repo: s3fsv.Repo
) -> None:
    with repo.transaction("main", message="data") as tx:
        tx.write("small", b"s" * 100)
        tx.write("large", bytes(range(256)) * 64)  # several chunks
    assert repo.read_bytes("main", "small") == b"s" * 100
    assert len(repo.read_bytes("main", "large")) == 256 * 64
    store.close()  # waits for the cache writes that follow each fetch
    cache = tmp_path / "cache"
    found = list(cache.rglob("*"))
    assert any(p.is_file() for p in found)
    for path in [cache, *found]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), path


# -- S3: a real server ------------------------------------------------------------------------


def test_s3_store_missing_bucket_and_uninitialised_prefix(
    s3_bucket_url: str, seaweed: SeaweedServer, tmp_path: Path
) -> None:
    bucket = s3_bucket_url.split("/")[2]
    cache = tmp_path / "cache"
    with pytest.raises(NotFound) as caught:  # the bucket is there, the prefix is not a store
        s3fsv.open_store(s3_bucket_url, cache_dir=cache)
    one_line_error(caught.value)
    assert not isinstance(caught.value, BucketMissing)
    with pytest.raises(BucketMissing) as missing:
        s3fsv.open_store(f"s3://{bucket}-absent/store", cache_dir=cache)
    one_line_error(missing.value)
    assert f"{bucket}-absent" in str(missing.value)

    init_store(s3_bucket_url)
    with s3fsv.open_store(s3_bucket_url, cache_dir=cache) as store:
        assert store.repos() == ["r"]
        with pytest.raises(NotFound) as no_repo:
            store.repo("nope")
        one_line_error(no_repo.value)


def test_s3_endpoint_from_the_config_file(
    s3_bucket_url: str, seaweed: SeaweedServer, config_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    init_store(s3_bucket_url)
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    (config_home / "config.toml").write_text(
        f'store = "{s3_bucket_url}"\nendpoint_url = "{seaweed.endpoint_url}"\n'
    )
    with s3fsv.open_store(cache_dir=config_home / "cache") as store:
        assert store.repos() == ["r"]


def test_unreachable_endpoint_is_store_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "k",
        "AWS_SECRET_ACCESS_KEY": "s",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    with socket.socket() as sock:  # a port nobody listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(StoreUnavailable) as caught:
        s3fsv.open_store(
            "s3://bucket/store",
            endpoint_url=f"http://127.0.0.1:{port}",
            cache_dir=tmp_path / "cache",
        )
    one_line_error(caught.value)
    assert f"127.0.0.1:{port}" in str(caught.value)
