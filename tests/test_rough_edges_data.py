"""Issue 18's rough edges about data: paths, models and inputs that must not be lost or
misread in silence (items 1, 3, 4, 5, 6 and 9)."""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import pytest
from anigenre.config import Settings, load_settings
from anigenre.core.errors import ConfigError, DataError
from anigenre.jobs.runs.plan import discover, plan_run
from anigenre.jobs.service import runs
from anigenre.jobs.service.dispatch import InProcess
from anigenre.models.synced import Registry

from tests.procs import run_cli
from tests.synthetic import poster_folder, trained_tiny_model


def _env(home: Path, **extra) -> dict:
    """A user's environment with its own home: no ANIGENRE_* from whoever runs the tests."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANIGENRE_", "AWS_"))}
    env.update({"HOME": str(home), **{k: str(v) for k, v in extra.items()}})
    return env


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shared_dir):
    """(settings, model id) of a tiny model in a data dir of the module's own."""
    data = tmp_path_factory.mktemp("rough-data")
    return trained_tiny_model(data, shared_dir, epochs=2)


@pytest.fixture
def data_copy(trained, tmp_path):
    """A copy of the trained data dir this test may damage; its settings."""
    settings, model_id = trained
    data = tmp_path / "data"
    shutil.copytree(settings.data_dir, data)
    return load_settings(overrides={"data_dir": data, "shared_dir": settings.shared_dir}, env={})


# --- 1: '~' is expanded wherever a local path is set ------------------------------------------


def test_the_default_cache_dir_is_under_the_home_not_a_folder_named_tilde(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for settings in (Settings(), load_settings(env={})):
        assert settings.cache_dir == tmp_path / "home" / ".cache" / "anigenre"


def test_tilde_is_expanded_in_every_local_path_setting(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    names = ("data_dir", "shared_dir", "weights_dir", "cache_dir", "inbox", "inbox_out")
    env = {f"ANIGENRE_{n.upper()}": f"~/{n}" for n in names}
    settings = load_settings(env=env)
    for name in names:
        assert str(getattr(settings, name)) == str(home / name), name


def test_a_quoted_tilde_in_a_path_argument_is_expanded(tmp_path, monkeypatch):
    import argparse

    from anigenre.jobs.cli import args

    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    assert args.local_path("~/labels.csv") == home / "labels.csv"
    assert args.storage_location("~/out") == home / "out"
    with pytest.raises(argparse.ArgumentTypeError, match="cannot expand"):
        args.local_path("~nosuchuser4711/x.csv")
    folder = poster_folder(tmp_path / "posters", 1, 3)
    plan = plan_run([folder], model_id="m", out_dir=Path("~/out"))
    assert plan.out_dir == str(home / "out") and (home / "out").is_dir()
    assert not (tmp_path / "~").exists()


def test_a_tilde_that_cannot_be_expanded_is_refused_in_one_line(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="cannot expand '~nosuchuser4711'"):
        load_settings(env={"ANIGENRE_CACHE_DIR": "~nosuchuser4711/cache"})


@pytest.mark.slow
def test_an_s3_run_with_a_local_data_dir_leaves_no_tilde_folder(trained, s3, tmp_path):
    settings, _ = trained
    bucket = s3.new_bucket()
    for poster in sorted(poster_folder(tmp_path / "src", 3, 7).iterdir()):
        bucket.write_bytes(f"in/{poster.name}", poster.read_bytes())
    cwd, home = tmp_path / "fresh", tmp_path / "home"
    cwd.mkdir()
    env = _env(home, **s3.env)
    data = ["--data-dir", str(settings.data_dir)]
    done = run_cli(
        "predict", bucket.uri_of("in"), "--out", bucket.uri_of("out"), *data, env=env, cwd=cwd
    )
    assert done.returncode == 0, done.stderr
    nobucket = run_cli(
        "predict", bucket.uri_of("in"), "--out", "s3://nosuchbucket4711/x", *data, env=env, cwd=cwd
    )
    assert nobucket.returncode != 0
    assert "Traceback" not in nobucket.stderr
    assert list(cwd.iterdir()) == []  # no ./~ (and nothing else)
    assert list((home / ".cache" / "anigenre" / "locks").iterdir())


# --- 3: a hand-edited local manifest.json is refused by its checksum ---------------------------


def _edit_thresholds(settings, model_id: str) -> Path:
    path = settings.data_dir / "models" / model_id / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["thresholds"] = {g: 0.0 for g in manifest["thresholds"]}
    path.write_text(json.dumps(manifest))
    return path


def test_an_edited_local_manifest_is_refused_with_what_to_do(trained, data_copy, tmp_path):
    _, model_id = trained
    path = _edit_thresholds(data_copy, model_id)
    for use in (Registry(data_copy).checked, Registry(data_copy).manifest):
        with pytest.raises(DataError) as caught:
            use(model_id)
        line = str(caught.value)
        assert "\n" not in line
        assert str(path) in line and "checksums.json" in line
        assert "copy the artifact again" in line
    folder = poster_folder(tmp_path / "posters", 2, 3)
    before = runs.runs(data_copy)
    with pytest.raises(DataError, match="does not match"):
        runs.plan(data_copy, [folder], model=model_id)
    assert runs.runs(data_copy) == before  # refused before anything was planned


def test_a_model_saved_before_checksums_still_loads(trained, data_copy):
    _, model_id = trained
    (data_copy.data_dir / "models" / model_id / "checksums.json").unlink()
    assert Registry(data_copy).checked(model_id).model_id == model_id


# --- 4: a run where every file fails says so, and exits 1 -------------------------------------


def _only_broken(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "x.jpg").write_text("not an image")
    return folder


@pytest.mark.slow
def test_a_run_where_every_file_fails_exits_1_and_says_so(data_copy, tmp_path):
    folder = _only_broken(tmp_path / "broken")
    env = _env(tmp_path / "home")
    data = ["--data-dir", str(data_copy.data_dir)]
    done = run_cli("predict", str(folder), *data, env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "nothing was predicted" in done.stderr
    assert "Traceback" not in done.stderr
    run_id = runs.runs(data_copy)[0].run_id
    waited = run_cli("jobs", "wait", run_id, *data, env=env)
    assert waited.returncode == 1 and "nothing was predicted" in waited.stdout + waited.stderr
    resumed = run_cli("jobs", "resume", run_id, *data, env=env)
    assert resumed.returncode == 1 and "nothing was predicted" in resumed.stdout + resumed.stderr


def test_the_api_returns_the_run_and_its_status_says_nothing_was_predicted(data_copy, tmp_path):
    import anigenre

    run = anigenre.predict(_only_broken(tmp_path / "broken"), settings=data_copy)
    s = run.status()
    assert s.complete and s.rows_ok == 0 and s.rows_error == 1
    assert "nothing was predicted" in s.note
    assert "nothing was predicted" in run.wait().note


# --- 5: paths are stored as the user gave them, links included --------------------------------


def test_posters_given_through_a_symlinked_folder_keep_the_links_path(
    trained, tmp_path, monkeypatch
):
    import anigenre

    real = poster_folder(tmp_path / "real", 2, 11)
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    (real / "twin.png").symlink_to(real / "p0.png")  # a second name of one file: one input
    monkeypatch.chdir(tmp_path)
    found = discover([Path("link"), link / "p1.png"])
    assert [str(p) for p in found] == [str(link / "p0.png"), str(link / "p1.png")]
    plan = plan_run([Path("link")], model_id="m", out_dir=tmp_path / "out")
    assert [e["path"] for e in plan.inputs] == [str(link / "p0.png"), str(link / "p1.png")]
    rows = anigenre.load_model(settings=trained[0]).predict([Path("link/p0.png")])
    assert rows["path"].tolist() == [str(link / "p0.png")]  # the API's rows join a run's


# --- 6: inputs that are not files get a row, never silence or "does not exist" ------------------


def _discover_within(paths: list, seconds: float = 20) -> list:
    """discover + hashing in a thread: a FIFO opened for reading would block for ever."""
    result: dict = {}

    def work() -> None:
        result["plan"] = plan_run(paths, model_id="m", out_dir=paths[0].parent / "out")

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        for fifo in [p for p in paths[0].parent.rglob("*.jpg") if p.is_fifo()]:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # let the reader go
        pytest.fail("planning blocked on a FIFO")
    return result["plan"].inputs


def test_a_fifo_and_an_image_named_folder_in_a_folder_get_error_rows(trained, tmp_path):
    settings, model_id = trained
    folder = poster_folder(tmp_path / "in", 1, 5)
    os.mkfifo(folder / "pipe.jpg")
    (folder / "dir.jpg").mkdir()
    entries = {Path(e["path"]).name: e for e in _discover_within([folder])}
    assert set(entries) == {"p0.png", "pipe.jpg", "dir.jpg"}
    assert entries["pipe.jpg"]["sha256"] is None and entries["dir.jpg"]["sha256"] is None
    out = tmp_path / "run-out"
    done = runs.submit(settings, [folder], InProcess(settings), model=model_id, out=out)
    rows = runs.table(settings, done.run_id)
    rows.index = rows["path"].map(lambda p: Path(p).name)
    assert rows.loc["p0.png", "status"] == "ok"
    assert "FIFO" in rows.loc["pipe.jpg", "error"]
    assert "folder" in rows.loc["dir.jpg", "error"]


def test_a_fifo_named_on_the_command_line_is_an_input_not_missing(tmp_path):
    os.mkfifo(tmp_path / "pipe.jpg")
    entries = _discover_within([tmp_path / "pipe.jpg"])
    assert [e["path"] for e in entries] == [str(tmp_path / "pipe.jpg")]
    with pytest.raises(ConfigError, match="does not exist"):
        discover([tmp_path / "nothing.jpg"])


# --- 9: 'models list' says what is wrong --------------------------------------------------------


@pytest.mark.slow
def test_models_list_of_a_bucket_that_does_not_exist_says_so(s3, tmp_path):
    env = _env(tmp_path / "home", **s3.env)
    done = run_cli("models", "list", "--data-dir", "s3://nosuchbucket4711/data", env=env)
    assert done.returncode == 2, done.stdout
    assert done.stderr.count("\n") == 1 and "no such bucket" in done.stderr
    assert "nosuchbucket4711" in done.stderr


def test_models_list_of_an_empty_bucket_is_just_empty(s3, tmp_path):
    bucket = s3.new_bucket("data")
    env = _env(tmp_path / "home", **s3.env)
    done = run_cli("models", "list", "--data-dir", bucket.uri, env=env)
    assert done.returncode == 0, done.stderr
    assert "no models" in done.stdout


def test_a_damaged_manifest_is_named_not_called_no_models(trained, data_copy, tmp_path):
    _, model_id = trained
    (data_copy.data_dir / "models" / model_id / "manifest.json").write_text("{ not json")
    env = _env(tmp_path / "home")
    data = ["--data-dir", str(data_copy.data_dir)]
    listed = run_cli("models", "list", *data, env=env)
    assert listed.returncode == 1
    assert "anigenre train" not in listed.stdout + listed.stderr
    assert f"models/{model_id}" in listed.stderr and "cannot read" in listed.stderr
    with pytest.raises(DataError) as caught:
        Registry(data_copy).resolve("latest")
    assert model_id in str(caught.value) and "anigenre train" not in str(caught.value)


def test_a_data_dir_that_is_a_file_is_refused(tmp_path):
    afile = tmp_path / "data.txt"
    afile.write_text("x")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        load_settings(overrides={"data_dir": afile}, env={})
    done = run_cli("models", "list", "--data-dir", str(afile), env=_env(tmp_path / "home"))
    assert done.returncode == 2
    assert "is a file, not a folder" in done.stderr and "no trained models" not in done.stderr
