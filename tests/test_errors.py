"""One line and an exit code for every error, never a traceback, never a run left planned.

Each case runs the real CLI in a fresh process. A full disk and a read-only mount are real:
the CLI runs in a user + mount namespace of its own (``unshare -rm``) on a tiny tmpfs or a
read-only bind mount, which vanish with the process and are invisible to anyone else.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile

import pandas as pd
import pytest
from anigenre.config import load_settings
from anigenre.core.dataset_store import DATASET_PATH
from anigenre.core.groups import linked_groups
from anigenre.jobs import stages
from anigenre.models.registry import output_width, write_checksums
from anigenre.scraper.store import RawStore

from tests.procs import ROOT, own_redis, run_cli
from tests.synthetic import labelled_folder, poster_folder, poster_png, trained_tiny_model


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shared_dir):
    """A small trained model; each test copies it before breaking anything."""
    data = tmp_path_factory.mktemp("errors-data")
    settings, model_id = trained_tiny_model(data, shared_dir)
    return data, model_id


@pytest.fixture
def data(trained, tmp_path):
    """A data dir of this test's own holding a copy of the trained model."""
    source, _ = trained
    dest = tmp_path / "data"
    shutil.copytree(source / "models", dest / "models")
    return dest


@pytest.fixture
def posters(tmp_path):
    return poster_folder(tmp_path / "in", 3, 500)


def _env(data_dir) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANIGENRE_")}
    return {**env, "ANIGENRE_DATA_DIR": str(data_dir), "TF_CPP_MIN_LOG_LEVEL": "2"}


def one_line(result: subprocess.CompletedProcess, code: int) -> str:
    """The single stderr line of a failed command, after checking it is all there is."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code, result.stderr
    assert len(lines) == 1 and lines[0].startswith("anigenre: error: "), result.stderr
    return lines[0]


def no_runs(data_dir) -> bool:
    runs = data_dir / "runs"
    return not runs.exists() or not any(runs.iterdir())


def _model_dir(data_dir):
    (folder,) = (data_dir / "models").iterdir()
    return folder


def truncate_model(data_dir) -> None:
    path = _model_dir(data_dir) / "model.keras"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def drop_a_genre(data_dir) -> None:
    path = _model_dir(data_dir) / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["genres"] = manifest["genres"][:-1]
    path.write_text(json.dumps(manifest))
    write_checksums(path.parent)  # another model's manifest, with its sums: only the width tells


# --- a model that cannot serve is refused before a run is planned ---------------------


@pytest.mark.parametrize(
    ("damage", "fragment"),
    [(truncate_model, "is damaged (truncated"), (drop_a_genre, "has 18 outputs but")],
)
@pytest.mark.parametrize("queued", [False, True], ids=["predict", "jobs-submit"])
def test_a_broken_model_is_refused_before_any_run_is_recorded(
    data, posters, tmp_path, damage, fragment, queued
):
    damage(data)
    out = tmp_path / "out"
    args = ["predict", str(posters), "--out", str(out)]
    if queued:
        with own_redis(tmp_path / "redis") as (url, client):
            result = run_cli("jobs", "--broker", url, "submit", *args, env=_env(data))
            assert not client.keys("*")  # nothing queued
    else:
        result = run_cli(*args, env=_env(data))
    line = one_line(result, 1)
    assert fragment in line
    assert no_runs(data) and not out.exists()


def test_the_model_check_needs_no_tensorflow(data):
    """`jobs submit predict` checks the model where TensorFlow may not even be installed."""
    script = (
        "import sys; from pathlib import Path; from models.registry import check_artifact; "
        f"check_artifact(Path({str(data)!r}), 'latest'); "
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True)
    assert result.returncode == 0, result.stderr.decode()


def test_output_width_from_the_saved_config_matches_keras(tmp_path):
    """The cheap check reads the width from config.json; it must agree with Keras for
    every head the project builds (plain, hidden layer, ensemble of heads)."""
    import keras
    from anigenre.models.heads import average_heads, build_head
    from anigenre.models.train import compose

    backbone = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten()], name="bb")
    models = {
        "plain": compose(backbone, build_head(192, 17)),
        "hidden": compose(backbone, build_head(192, 18, hidden=16)),
        "ensemble": compose(
            backbone, average_heads([build_head(192, 19, name=f"h{i}") for i in range(3)])
        ),
    }
    for name, model in models.items():
        path = tmp_path / f"{name}.keras"
        model.save(path)
        config = json.loads(zipfile.ZipFile(path).read("config.json"))
        assert output_width(config) == model.output_shape[-1], name


# --- broker, output folder ---------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["http://user:hunter2@127.0.0.1:1/0", "amqp://guest:hunter2@host//", "localhost:1234"]
)
def test_a_broker_url_of_another_scheme_is_one_line(data, posters, url):
    result = run_cli("jobs", "--broker", url, "submit", "predict", str(posters), env=_env(data))
    line = one_line(result, 2)
    assert "redis://" in line and "rediss://" in line and "hunter2" not in result.stderr
    assert no_runs(data)


def test_out_that_is_a_file_is_refused_before_planning(data, posters, tmp_path):
    out = tmp_path / "out.txt"
    out.write_text("not a folder")
    line = one_line(run_cli("predict", str(posters), "--out", str(out), env=_env(data)), 2)
    assert f"--out {out} is a file" in line
    assert no_runs(data) and out.read_text() == "not a folder"


# --- full disk, read-only mounts (real, in a mount namespace) ----------------------------


@pytest.fixture(scope="module")
def namespaces(tmp_path_factory):
    """Skip where user + mount namespaces are not allowed (some CI sandboxes)."""
    probe = tmp_path_factory.mktemp("probe")
    ok = subprocess.run(
        ["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {probe}"],
        capture_output=True,
    )
    if ok.returncode != 0:
        pytest.skip(f"cannot mount in a user namespace here: {ok.stderr.decode().strip()}")


def run_cli_mounted(setup: str, *args: str, env: dict) -> subprocess.CompletedProcess:
    """``anigenre ARGS`` after shell ``setup`` ran in a mount namespace of its own."""
    script = f'set -e; {setup}; exec "$0" -m jobs.cli "$@"'
    return subprocess.run(
        ["unshare", "-rm", "sh", "-c", script, sys.executable, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def full_tmpfs(path) -> str:
    """Shell that mounts a 64 KiB tmpfs at ``path`` and fills it to the last byte."""
    return (
        f"mount -t tmpfs -o size=64k tmpfs {path}; cat /dev/zero > {path}/fill 2>/dev/null || true"
    )


def read_only(path) -> str:
    return f"mount --bind {path} {path}; mount -o remount,bind,ro {path}"


def test_a_full_disk_is_one_line_naming_the_path(namespaces, data, posters, tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    result = run_cli_mounted(
        full_tmpfs(disk), "predict", str(posters), "--out", str(disk / "out"), env=_env(data)
    )
    line = one_line(result, 1)
    # The file that could not be written, not its hidden temp name nor just a folder: the
    # plan streams, so its first chunk manifest may be the first file to fill the disk.
    written = r"(_plan\.json|_chunks/\d+\.json)"
    assert "no space left" in line and re.search(rf"{disk}/out/\S+/{written}:", line), line
    assert no_runs(data)


def test_a_read_only_output_dir_is_one_line(namespaces, data, posters, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    result = run_cli_mounted(
        read_only(out), "predict", str(posters), "--out", str(out), env=_env(data)
    )
    line = one_line(result, 1)
    # The planning lock under prediction-runs/ is the first thing written there.
    assert "read-only" in line and re.search(rf"{out}/prediction-runs\S*:", line), line
    assert no_runs(data) and not any(out.iterdir())


def test_a_read_only_data_dir_is_one_line_and_leaves_no_plan(namespaces, data, posters, tmp_path):
    out = tmp_path / "out"
    result = run_cli_mounted(
        read_only(data), "predict", str(posters), "--out", str(out), env=_env(data)
    )
    line = one_line(result, 1)
    assert "read-only" in line and re.search(rf"{data}/runs/\S+\.json:", line), line
    # The plan was written to --out before the index refused it: an unrecorded run that no
    # command could find or resume must not stay behind.
    assert no_runs(data) and not list((out / "predictions").glob("run_id=*"))


def test_import_into_a_read_only_data_dir_is_one_line(namespaces, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    labelled_folder(tmp_path / "labelled", 4, seed=1, other="Drama")
    result = run_cli_mounted(
        read_only(data), "dataset", "import", str(tmp_path / "labelled"), env=_env(data)
    )
    line = one_line(result, 1)
    assert "read-only" in line and re.search(rf"{data}/images/[0-9a-f]{{64}}\.png:", line), line


def test_a_file_where_a_folder_must_be_is_one_line(tmp_path):
    """An OSError no edge maps (here the scrape lock's folder) still ends as one line."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "raw").write_text("in the way")
    result = run_cli(
        "scrape", "--years", "2020", "--endpoint", "http://127.0.0.1:1", env=_env(data)
    )
    line = one_line(result, 1)
    assert f"{data / 'raw'} is a file, not a folder" in line


# --- runs whose output folder was deleted ------------------------------------------------


def test_a_run_whose_folder_was_deleted_is_flagged_not_fatal(data, posters, tmp_path, shared_dir):
    settings = load_settings(overrides={"data_dir": data, "shared_dir": shared_dir}, env={})
    gone = stages.plan_prediction(settings, [posters], model_id="latest", out_dir=tmp_path / "gone")
    kept = stages.plan_prediction(settings, [posters], model_id="latest", out_dir=tmp_path / "kept")
    shutil.rmtree(tmp_path / "gone")

    listed = run_cli("jobs", "list", env=_env(data))
    assert listed.returncode == 0 and "Traceback" not in listed.stderr, listed.stderr
    lines = dict(line.split(":", 1) for line in listed.stdout.strip().splitlines())
    assert "unreadable" in lines[f"run {gone.run_id}"]
    assert "moved or deleted" in lines[f"run {gone.run_id}"]
    assert "0/1 chunks" in lines[f"run {kept.run_id}"]

    for command in (["jobs", "status"], ["jobs", "wait"], ["jobs", "resume"], ["report"]):
        line = one_line(run_cli(*command, gone.run_id, env=_env(data)), 1)
        assert f"run {gone.run_id}: unreadable" in line and "moved or deleted" in line, command


# --- imported folders --------------------------------------------------------------------


def test_a_link_out_of_images_is_refused_like_an_unsafe_name(tmp_path):
    folder, data = tmp_path / "labelled", tmp_path / "data"
    rows = [{"file": "link.png", "genres": "Action"}, {"file": "inner.png", "genres": "Drama"}]
    labelled_folder(folder, 4, seed=1, other="Drama", extra_rows=rows)
    secret = tmp_path / "elsewhere" / "secret.png"
    secret.parent.mkdir()
    secret.write_bytes(poster_png(999))  # a valid image: only the link makes it unsafe
    (folder / "images" / "link.png").symlink_to(secret)
    (folder / "images" / "inner.png").symlink_to("x0.png")  # inside images/: fine

    result = run_cli("dataset", "import", str(folder), env=_env(data))
    assert result.returncode == 0, result.stderr
    assert "skipped link.png: unsafe file (a link pointing outside images/)" in result.stdout
    assert "duplicate inner.png: same image as x0.png" in result.stdout
    dataset = pd.read_parquet(data / DATASET_PATH)
    assert len(dataset) == 4
    assert hashlib.sha256(secret.read_bytes()).hexdigest() not in set(dataset["sha256"])


def test_labels_with_only_file_and_genres_keep_the_dataset_usable(tmp_path):
    """Optional columns are optional: a dataset built from such a folder must take more."""
    data = tmp_path / "data"
    labelled_folder(tmp_path / "a", 6, seed=1, other="Drama")
    labelled_folder(tmp_path / "b", 6, seed=50, other="Comedy")
    assert pd.read_csv(tmp_path / "a" / "labels.csv").columns.tolist() == ["file", "genres"]
    for folder in ("a", "b"):
        result = run_cli("dataset", "import", str(tmp_path / folder), env=_env(data))
        assert result.returncode == 0, result.stderr

    store = RawStore(data)
    store.upsert_media([{"anilist_id": 7, "title": "T", "year": 2021, "genres": ["Action"]}])
    store.upsert_posters(
        [{"anilist_id": 7, "path": "raw/posters/7.png", "sha256": "7" * 64, "status": "ok"}]
    )
    result = run_cli("preprocess", env=_env(data))
    assert result.returncode == 0, result.stderr
    assert len(pd.read_parquet(data / DATASET_PATH)) == 13


def test_group_linking_takes_every_kind_of_missing_value():
    """Nulls read back from parquet are NaN (or pandas' NA), not None."""
    titles, ids = [None, float("nan"), pd.NA, "Show 2"], [pd.NA, float("nan"), None, 7.0]
    assert linked_groups(["a", "b", "c", "d"], titles, ids) == ["a", "b", "c", "d"]
