"""core.storage on a local folder and on a real S3-compatible server (moto, loopback)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from anigenre.core.errors import ConfigError, StorageError
from anigenre.core.storage import S3Options, is_remote, open_store


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return open_store(tmp_path / "root")
    return request.getfixturevalue("s3").new_bucket("some/prefix")


def test_bytes_json_and_tables_round_trip(store):
    store.write_bytes("a/b.bin", b"\x00\x01")
    store.write_json("a/c.json", {"x": [1, 2]})
    table = pa.table({"id": [1, 2, 3], "name": ["a", "b", "c"]})
    store.write_table("t/part-0.parquet", table)

    assert store.read_bytes("a/b.bin") == b"\x00\x01"
    assert store.read_json("a", "c.json") == {"x": [1, 2]}
    assert store.read_table("t/part-0.parquet").equals(table)
    # What users do: pyarrow's own reader on the store's filesystem and path.
    assert ds.dataset(store.path("t"), filesystem=store.fs).to_table().equals(table)


def test_listing_is_relative_sorted_and_empty_for_a_missing_folder(store):
    for name in ("x/2.txt", "x/1.txt", "x/deep/3.txt", "y.txt"):
        store.write_bytes(name, name.encode())
    assert [f.path for f in store.list_files("x")] == ["x/1.txt", "x/2.txt", "x/deep/3.txt"]
    assert [f.path for f in store.list_files("x", recursive=False)] == ["x/1.txt", "x/2.txt"]
    assert store.list_files("y.txt") == []  # a file is not a folder
    assert store.list_files("nothing-here") == []
    assert store.child("x").list_files()[0].path == "1.txt"


def test_overwrite_replaces_whole_and_delete_is_idempotent(store):
    store.write_bytes("k", b"old" * 1000)
    store.write_bytes("k", b"new")
    assert store.read_bytes("k") == b"new"
    assert store.exists("k") and store.is_file("k")
    store.delete("k")
    store.delete("k")
    assert not store.exists("k")
    with pytest.raises(FileNotFoundError):
        store.read_bytes("k")


def test_paths_that_climb_out_of_the_root_are_refused(store):
    with pytest.raises(StorageError, match="leaves its folder"):
        store.write_bytes("../escape", b"x")


def test_local_writes_leave_no_temp_files(tmp_path):
    store = open_store(tmp_path)
    store.write_bytes("a/b", b"1")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["b"]
    assert store.local_path("a", "b") == tmp_path / "a" / "b"


def test_uris_are_never_turned_into_local_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = open_store("s3://bucket/preds/", S3Options(endpoint_url="http://127.0.0.1:9"))
    assert (store.uri, store.root, store.is_local) == ("s3://bucket/preds", "bucket/preds", False)
    assert not (tmp_path / "s3:").exists()
    with pytest.raises(ConfigError, match="needs a local folder"):
        store.local_path()
    assert is_remote("s3://b/p") and not is_remote(tmp_path) and not is_remote("file:///x")


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("gs://bucket/x", "unsupported storage scheme 'gs://'; use a local path or s3://"),
        ("s3:///x", "names no bucket"),
    ],
)
def test_bad_locations_are_one_line(location, message):
    with pytest.raises(ConfigError, match=message) as info:
        open_store(location)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("url", ["localhost:9000", "http://[bad", "http://127.0.0.1:notaport"])
def test_a_bad_endpoint_is_one_line(url):
    with pytest.raises(ConfigError, match=r"AWS_ENDPOINT_URL '.*' is not an http\(s\) URL"):
        open_store("s3://b", S3Options(endpoint_url=url))


def test_options_come_from_the_standard_aws_variables_and_hide_secrets():
    options = S3Options.from_env(
        {
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
            "AWS_REGION": "eu-west-1",
            "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
            "AWS_SECRET_ACCESS_KEY": "very-secret",
            "AWS_SESSION_TOKEN": "token-secret",
        }
    )
    assert options.endpoint_url == "http://127.0.0.1:9000" and options.region == "eu-west-1"
    assert "secret" not in repr(options)


def test_wrong_credentials_fail_with_a_storage_error(s3):
    bucket = s3.new_bucket()
    wrong = S3Options(endpoint_url="http://127.0.0.1:1", region="us-east-1")
    other = open_store(bucket.uri, wrong)
    with pytest.raises(StorageError, match=bucket.uri):
        other.write_bytes("x", b"1")
