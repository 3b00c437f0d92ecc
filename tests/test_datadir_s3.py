"""An s3:// data dir on a real S3-compatible server (moto's, on loopback): the mirror's
pull and push, and the CLI on two "machines" that share nothing but the bucket."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from anigenre.config import load_settings
from anigenre.core.errors import ConfigError, DataError, StorageError
from anigenre.core.mirror import STATE_DIR, Mirror, pull, pull_paths, push
from anigenre.core.storage import open_store

from tests.conftest import ROOT
from tests.procs import own_redis, run_cli
from tests.synthetic import labelled_folder, poster_folder

# --- settings ------------------------------------------------------------------------------


def test_an_s3_data_dir_is_mirrored_under_the_cache_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = {"ANIGENRE_CACHE_DIR": str(tmp_path / "cache"), "AWS_ENDPOINT_URL": "http://h:1"}
    a = load_settings(overrides={"data_dir": "s3://bucket/data/"}, env=env)
    assert a.data_uri == "s3://bucket/data"
    assert a.data_dir.parent == tmp_path / "cache" / "data"
    assert a.data_location("models", "m1") == "s3://bucket/data/models/m1"
    # Same URI on another endpoint is another bucket, so another mirror.
    b = load_settings(
        overrides={"data_dir": "s3://bucket/data"}, env={**env, "AWS_ENDPOINT_URL": "http://h:2"}
    )
    assert b.data_dir != a.data_dir
    local = load_settings(overrides={"data_dir": "d"}, env=env)
    assert local.data_uri is None and local.data_location("models") == "d/models"
    assert not (tmp_path / "s3:").exists()


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("gs://bucket/data", "unsupported storage scheme 'gs://'"),
        ("s3:///data", "names no bucket"),
        (Path("s3://bucket/data"), "its '//' lost"),  # what Path() makes of a URI
    ],
)
def test_a_data_dir_that_is_no_usable_uri_is_one_line(value, fragment):
    with pytest.raises(ConfigError, match=fragment) as info:
        load_settings(overrides={"data_dir": value}, env={})
    assert "\n" not in str(info.value)


def test_data_uri_is_derived_never_set(tmp_path):
    with pytest.raises(ConfigError, match="unknown environment variable ANIGENRE_DATA_URI"):
        load_settings(env={"ANIGENRE_DATA_URI": "s3://b/p"})


# --- the mirror ----------------------------------------------------------------------------


@pytest.fixture
def pair(s3, tmp_path):
    """Two mirrors of one bucket prefix: two machines."""
    store = s3.new_bucket("data")
    return store, Mirror(store, tmp_path / "a"), Mirror(store, tmp_path / "b")


def test_push_uploads_what_changed_and_pull_fetches_only_what_changed(pair):
    store, a, b = pair
    (a.root / "processed").mkdir(parents=True)
    (a.root / "processed" / "x.json").write_text("1")
    (a.root / "processed" / "y.json").write_text("2")
    (a.root / "processed" / ".x.json.123.tmp").write_text("half")  # temp files stay here
    assert a.push("processed") == ["processed/x.json", "processed/y.json"]
    assert [f.path for f in store.list_files()] == ["processed/x.json", "processed/y.json"]
    assert a.push("processed") == []  # nothing changed since

    assert b.pull("processed") == ["processed/x.json", "processed/y.json"]
    assert (b.root / "processed" / "y.json").read_text() == "2"
    assert b.pull("processed") == []  # already current: nothing downloaded again

    (a.root / "processed" / "y.json").write_text("22")
    assert a.push("processed") == ["processed/y.json"]
    assert b.pull("processed") == ["processed/y.json"]
    assert (b.root / "processed" / "y.json").read_text() == "22"

    store.delete("processed/x.json")
    assert b.pull("processed") == []
    assert not (b.root / "processed" / "x.json").exists()
    # The state is the mirror's, never the bucket's.
    assert (b.root / STATE_DIR / "state.json").exists()
    assert not any(f.path.startswith(".") for f in store.list_files())


def test_a_file_another_machine_changed_meanwhile_is_not_overwritten(pair):
    store, a, b = pair
    (a.root / "processed").mkdir(parents=True)
    (a.root / "processed" / "dataset.parquet").write_text("v1")
    a.push("processed")
    b.pull("processed")
    (a.root / "processed" / "dataset.parquet").write_text("v2 from a")
    a.push("processed")
    (b.root / "processed" / "dataset.parquet").write_text("v2 from b")
    with pytest.raises(StorageError, match="changed in the bucket since this machine last pulled"):
        b.push("processed")
    assert store.read_bytes("processed/dataset.parquet") == b"v2 from a"
    # The same bytes written on both machines (a content-addressed image) are no conflict.
    (a.root / "images").mkdir()
    (b.root / "images").mkdir()
    (a.root / "images" / "ab.png").write_bytes(b"png")
    (b.root / "images" / "ab.png").write_bytes(b"png")
    a.push("images")
    assert b.push("images") == ["images/ab.png"]
    assert b.push("images") == []
    # A cache whose copies are equivalent keeps the bucket's and does not stop the push.
    (a.root / "features").mkdir()
    (b.root / "features").mkdir()
    (a.root / "features" / "part-1.parquet").write_bytes(b"from a")
    (b.root / "features" / "part-1.parquet").write_bytes(b"from b")
    (b.root / "features" / "part-2.parquet").write_bytes(b"only b")
    a.push("features")
    assert b.push("features", keep_theirs=True) == ["features/part-2.parquet"]
    assert store.read_bytes("features/part-1.parquet") == b"from a"


def test_a_pull_that_fails_its_hash_writes_nothing(pair):
    store, a, b = pair
    store.write_bytes("models/m/model.keras", b"weights")
    with pytest.raises(DataError, match="does not match the sha256"):
        b.pull("models/m", expect={"models/m/model.keras": "0" * 64})
    assert not (b.root / "models" / "m" / "model.keras").exists()


def test_pull_paths_fetches_just_those_files_and_a_local_data_dir_is_a_no_op(s3, tmp_path):
    store = s3.new_bucket("data")
    for name in ("images/a.png", "images/b.png", "raw/posters/1.jpg"):
        store.write_bytes(name, name.encode())
    env = {**s3.env, "ANIGENRE_CACHE_DIR": str(tmp_path / "cache")}
    settings = load_settings(overrides={"data_dir": store.uri}, env=env)
    assert pull_paths(settings, ["images/b.png", "raw/posters/1.jpg"]) == [
        "images/b.png",
        "raw/posters/1.jpg",
    ]
    assert not (settings.data_dir / "images" / "a.png").exists()
    local = load_settings(overrides={"data_dir": tmp_path / "local"}, env=env)
    assert pull(local, "images") == [] and push(local, "images") == []
    assert not (tmp_path / "local").exists()


# --- the CLI on two machines -----------------------------------------------------------------


def _cli(*args: str, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("ANIGENRE_", "AWS_"))}
    full.update(env, PYTHONPATH=str(ROOT))
    return run_cli(*args, env=full, cwd=cwd, timeout=300)


TINY = ("--backbone", "custom_cnn", "--weights", "none", "--input-size", "40x32")
TINY += ("--epochs", "3", "--bootstrap", "10")


def test_import_train_then_list_evaluate_predict_from_another_machine(s3, tmp_path, shared_dir):
    bucket = s3.new_bucket()
    uri = bucket.uri_of("data")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    labelled_folder(tmp_path / "labelled", 60, seed=0, other="Drama")

    def machine(name: str) -> dict:
        cache = tmp_path / name
        return {**s3.env, "ANIGENRE_CACHE_DIR": str(cache), "ANIGENRE_SHARED_DIR": str(shared_dir)}

    a, b = machine("machine-a"), machine("machine-b")
    done = _cli("--data-dir", uri, "dataset", "import", str(tmp_path / "labelled"), env=a, cwd=cwd)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].startswith(f"dataset {uri}/processed/dataset.parquet: 60")
    done = _cli("--data-dir", uri, "train", *TINY, env=a, cwd=cwd)
    assert done.returncode == 0, done.stderr
    assert f"saved under {uri}/models/" in done.stdout

    # The bucket holds the dataset, its images and the model, as pyarrow reads them.
    data = bucket.child("data")
    dataset = pq.read_table(data.path("processed/dataset.parquet"), filesystem=data.fs)
    assert dataset.num_rows == 60
    assert len(data.list_files("images")) == 60
    (model_id,) = {f.path.split("/")[1] for f in data.list_files("models")}
    stored = {f.path.rsplit("/", 1)[1] for f in data.list_files("models", model_id)}
    assert {"model.keras", "manifest.json", "checksums.json"} <= stored

    # Machine B: listing fetches manifests, not weights.
    done = _cli("--data-dir", uri, "models", "list", env=b, cwd=cwd)
    assert done.returncode == 0, done.stderr
    assert model_id in done.stdout
    mirror_b = load_settings(overrides={"data_dir": uri}, env=b).data_dir
    folder = mirror_b / "models" / model_id
    assert (folder / "manifest.json").exists() and not (folder / "model.keras").exists()

    done = _cli("--data-dir", uri, "evaluate", "latest", env=b, cwd=cwd)
    assert done.returncode == 0, done.stderr
    assert "macro mAP" in done.stdout
    fetched = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert fetched["model.keras"]
    state = json.loads((mirror_b / STATE_DIR / "state.json").read_text())["files"]
    assert f"models/{model_id}/model.keras" in state

    posters = poster_folder(tmp_path / "inbox", 3, seed=500)
    done = _cli("--data-dir", uri, "predict", str(posters), env=b, cwd=cwd)
    assert done.returncode == 0, done.stderr
    assert "3 ok, 0 error" in done.stdout
    # The model was fetched once: the second use downloaded nothing.
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == fetched

    # An alias set on B is seen on a fresh machine C, and the card comes without weights.
    done = _cli("--data-dir", uri, "models", "promote", "latest", env=b, cwd=cwd)
    assert done.returncode == 0, done.stderr
    assert data.read_json("models/_aliases.json") == {"production": model_id}
    c = machine("machine-c")
    done = _cli("--data-dir", uri, "models", "list", env=c, cwd=cwd)
    (row,) = [line for line in done.stdout.splitlines() if line.startswith(model_id)]
    assert "production" in row
    done = _cli("--data-dir", uri, "models", "card", "production", env=c, cwd=cwd)
    assert done.returncode == 0 and model_id in done.stdout, done.stderr
    mirror_c = load_settings(overrides={"data_dir": uri}, env=c).data_dir
    assert not (mirror_c / "models" / model_id / "model.keras").exists()

    # A model saved before cards (and checksums) existed: its card, written on demand on a
    # fresh machine D, lands in the bucket beside the model.
    sums = data.read_bytes(f"models/{model_id}/checksums.json")
    for name in ("MODEL_CARD.md", "checksums.json"):
        data.delete("models", model_id, name)
    done = _cli("--data-dir", uri, "models", "card", "latest", env=machine("d"), cwd=cwd)
    assert done.returncode == 0, done.stderr
    assert f"wrote {uri}/models/{model_id}/MODEL_CARD.md" in done.stderr
    assert data.read_bytes(f"models/{model_id}/MODEL_CARD.md").decode() == done.stdout
    data.write_bytes(f"models/{model_id}/checksums.json", sums)

    # A damaged object in the bucket is refused by its hash, on B and on C.
    keras_key = f"models/{model_id}/model.keras"
    data.write_bytes(keras_key, data.read_bytes(keras_key)[:-100])
    for env in (b, c):
        done = _cli("--data-dir", uri, "predict", str(posters), "--force", env=env, cwd=cwd)
        assert done.returncode == 1
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "does not match the sha256" in lines[0], done.stderr
    assert folder.joinpath("model.keras").stat().st_mtime_ns == fetched["model.keras"]
    assert not (mirror_c / "models" / model_id / "model.keras").exists()

    done = _cli("--data-dir", "gs://bucket/data", "models", "list", env=b, cwd=cwd)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "anigenre: error: 'gs://bucket/data': unsupported storage scheme 'gs://'; "
        "use a local path or s3://bucket/prefix"
    ]
    assert list(cwd.iterdir()) == []  # no folder named s3: (or anything else) made here


def test_scrape_refuses_an_s3_data_dir_in_one_line(s3, tmp_path):
    uri = s3.new_bucket().uri_of("data")
    env = {**s3.env, "ANIGENRE_CACHE_DIR": str(tmp_path / "cache")}
    done = _cli("--data-dir", uri, "scrape", "--years", "2020", env=env, cwd=tmp_path)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert "scrape needs a local data dir" in line and "aws s3 sync" in line


def test_a_model_whose_checksums_cannot_be_read_is_refused_not_loaded_unchecked(s3, tmp_path):
    from anigenre.models.registry import list_models
    from anigenre.models.remote import fetch_model, sync_listing

    store = s3.new_bucket("data")
    manifest = {"model_id": "m1", "created": "2026-01-01T00:00:00", "genres": ["Action"]}
    store.write_json("models/m1/manifest.json", manifest)
    store.write_bytes("models/m1/model.keras", b"weights")
    store.write_bytes("models/m1/checksums.json", b"{not json")
    store.write_json("models/_aliases.json", {"prod": "m1"})
    env = {**s3.env, "ANIGENRE_CACHE_DIR": str(tmp_path / "cache")}
    settings = load_settings(overrides={"data_dir": store.uri}, env=env)
    sync_listing(settings)
    # The listing needs no weights; top-level files of models/ (aliases) come with it.
    assert [m.model_id for m in list_models(settings.data_dir)] == ["m1"]
    assert (settings.data_dir / "models" / "_aliases.json").exists()
    assert not (settings.data_dir / "models" / "m1" / "model.keras").exists()
    with pytest.raises(DataError, match="checksums.json"):
        fetch_model(settings, "latest")
    assert not (settings.data_dir / "models" / "m1" / "model.keras").exists()


def test_imports_from_two_machines_in_turn_both_land_in_the_bucket_dataset(s3, tmp_path):
    from anigenre.jobs import stages

    uri = s3.new_bucket().uri_of("data")
    labelled_folder(tmp_path / "one", 6, seed=0, other="Drama")
    labelled_folder(tmp_path / "two", 6, seed=100, other="Comedy")
    a, b = (
        load_settings(
            overrides={"data_dir": uri}, env={**s3.env, "ANIGENRE_CACHE_DIR": str(tmp_path / m)}
        )
        for m in ("a", "b")
    )
    assert stages.import_dataset(a, tmp_path / "one").total == 6
    # B has never seen the bucket: its import starts from A's dataset, not an empty one.
    assert stages.import_dataset(b, tmp_path / "two").total == 12
    assert stages.import_dataset(a, tmp_path / "two").added == 0  # A pulls B's rows first
    data = open_store(uri, s3.options)
    assert data.read_table("processed/dataset.parquet").num_rows == 12
    assert len(data.list_files("images")) == 12


def test_a_prefix_may_name_one_file(pair):
    store, a, b = pair
    (a.root / "runs").mkdir(parents=True)
    (a.root / "runs" / "r1.json").write_text("{}")
    (a.root / "runs" / "r2.json").write_text("{}")
    assert a.push("runs/r1.json") == ["runs/r1.json"]
    assert [f.path for f in store.list_files()] == ["runs/r1.json"]
    assert b.pull("runs/r1.json") == ["runs/r1.json"]
    assert b.pull("runs/r1.json") == []
    store.delete("runs/r1.json")
    b.pull("runs/r1.json")
    assert not (b.root / "runs" / "r1.json").exists()


def test_a_fetched_model_damaged_on_this_disk_is_fetched_again(s3, tmp_path):
    import hashlib

    from anigenre.models.remote import fetch_model

    store = s3.new_bucket("data")
    files = {
        "manifest.json": json.dumps(
            {"model_id": "m2", "created": "2026-01-01T00:00:00", "genres": ["Action"]}
        ).encode(),
        "model.keras": b"weights" * 100,
    }
    for name, data in files.items():
        store.write_bytes(f"models/m2/{name}", data)
    sums = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    store.write_json("models/m2/checksums.json", sums)
    env = {**s3.env, "ANIGENRE_CACHE_DIR": str(tmp_path / "cache")}
    settings = load_settings(overrides={"data_dir": store.uri}, env=env)
    assert fetch_model(settings, "m2") == "m2"
    local = settings.data_dir / "models" / "m2" / "model.keras"
    assert local.read_bytes() == files["model.keras"]
    local.write_bytes(b"x" * len(files["model.keras"]))  # same size: only the hash tells
    fetch_model(settings, "latest")
    assert local.read_bytes() == files["model.keras"]


def test_a_task_submitted_on_one_machine_is_known_on_another(s3, tmp_path):
    """`jobs status ID` of a queued train, asked on a machine that shares only the bucket
    and Redis: the task record travels with the s3:// data dir."""
    bucket = s3.new_bucket()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ANIGENRE_", "AWS_"))}
    with own_redis(tmp_path / "redis") as (url, _client):

        def machine(name: str) -> dict:
            return (
                base
                | s3.env
                | {
                    "ANIGENRE_DATA_DIR": bucket.uri_of("data"),
                    "ANIGENRE_CACHE_DIR": str(tmp_path / name),
                    "ANIGENRE_BROKER_URL": url,
                }
            )

        submitted = run_cli("jobs", "submit", "train", "--epochs", "1", env=machine("a"))
        assert submitted.returncode == 0, submitted.stderr
        task_id = submitted.stdout.split()[0]
        assert bucket.exists("data", "tasks", f"{task_id}.json")
        status = run_cli("jobs", "status", task_id, "--json", env=machine("b"))
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["name"] == "train"
