"""The Python API: ``import anigenre``, ``load_model`` and its ``predict``, ``read_predictions``,
checked against a real bulk run of the same files; and docs/python-api.md, run as written."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from anigenre.core.errors import ConfigError, InvalidImage
from anigenre.core.schemas import predictions_schema
from anigenre.jobs import stages
from anigenre.models.aliases import set_alias
from PIL import Image

import anigenre
from tests import images as gen
from tests.procs import ROOT
from tests.synthetic import poster_png, trained_tiny_model

TOL = 1e-4
DOC = ROOT / "docs" / "python-api.md"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shared_dir):
    data = tmp_path_factory.mktemp("api-data")
    settings, model_id = trained_tiny_model(data, shared_dir, epochs=1)
    set_alias(settings.data_dir, "production", model_id, [model_id])
    return settings, model_id


@pytest.fixture(scope="module")
def posters(tmp_path_factory):
    """Good posters in PNG and JPEG, and every kind of bad file."""
    folder = tmp_path_factory.mktemp("api-posters")
    for i in range(6):
        (folder / f"p{i}.png").write_bytes(poster_png(300 + i))
    Image.open(io.BytesIO(poster_png(310))).save(folder / "j.jpg", quality=90)
    (folder / "cut.jpg").write_bytes(gen.encode("JPEG", size=(300, 400))[:600])
    (folder / "empty.png").write_bytes(b"")
    (folder / "page.jpg").write_bytes(b"<!DOCTYPE html><html>Not found</html>")
    return folder


@pytest.fixture(scope="module")
def bulk(trained, posters, tmp_path_factory):
    """The rows an in-process bulk run (`anigenre predict`) writes for ``posters``."""
    settings, _ = trained
    out = tmp_path_factory.mktemp("api-out")
    plan = stages.plan_prediction(settings, [posters], model_id="latest", out_dir=out)
    stages.predict_in_process(settings, plan)
    rows = pd.read_parquet(out / "predictions", filters=[("run_id", "==", plan.run_id)])
    return out, rows.set_index("path")


@pytest.fixture(scope="module")
def litert(trained):
    return anigenre.load_model("latest", data_dir=trained[0].data_dir)


@pytest.fixture(scope="module")
def keras_model(trained):
    return anigenre.load_model("latest", data_dir=trained[0].data_dir, engine="keras")


def _files(posters) -> list:
    return sorted(posters.iterdir())


def _genre_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c.startswith("p_")]


# -- loading ---------------------------------------------------------------------------


def test_a_model_is_named_by_id_prefix_alias_or_latest(trained):
    settings, model_id = trained
    for name in (model_id, model_id[:-3], "production", "latest"):
        model = anigenre.load_model(name, data_dir=settings.data_dir)
        assert model.model_id == model_id, name
    assert anigenre.load_model(settings=settings).model_id == model_id


def test_settings_are_found_as_the_cli_finds_them(trained, tmp_path, monkeypatch):
    settings, model_id = trained
    for key in [k for k in os.environ if k.startswith("ANIGENRE_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(anigenre.errors.DataError, match="no trained models"):
        anigenre.load_model()  # ./data: nothing there
    # ./anigenre.toml, then ANIGENRE_* over it, then data_dir= over both.
    (tmp_path / "anigenre.toml").write_text(
        f'[anigenre]\ndata_dir = "{settings.data_dir}"\npredict_engine = "keras"\n'
    )
    found = anigenre.load_model("production")
    assert (found.model_id, found.engine) == (model_id, "keras")
    monkeypatch.setenv("ANIGENRE_PREDICT_ENGINE", "litert")
    assert anigenre.load_model().engine == "litert"
    assert anigenre.load_settings().data_dir == settings.data_dir
    assert anigenre.load_settings(env={}).predict_engine == "keras"  # the file, no env
    monkeypatch.setenv("ANIGENRE_DATA_DIR", str(tmp_path / "elsewhere"))
    with pytest.raises(anigenre.errors.DataError):
        anigenre.load_model()
    assert anigenre.load_model(data_dir=settings.data_dir).model_id == model_id
    # settings= and data_dir= together: the settings, with that data dir.
    other = anigenre.load_settings(env={}, overrides={"data_dir": tmp_path / "x"})
    moved = anigenre.load_model(settings=other, data_dir=settings.data_dir, engine="litert")
    assert moved.model_id == model_id


def test_a_bad_name_or_engine_is_one_config_error(trained):
    settings, _ = trained
    with pytest.raises(ConfigError, match="no single model matches 'nope'"):
        anigenre.load_model("nope", settings=settings)
    with pytest.raises(ConfigError, match="engine must be one of litert, keras"):
        anigenre.load_model(settings=settings, engine="onnx")


def test_import_is_light_and_the_api_prints_nothing(trained, posters):
    """A fresh process: importing the package and its settings loads no TensorFlow,
    LiteRT or Celery; loading and predicting on either engine writes nothing to the
    terminal (TensorFlow's start-up notices included)."""
    code = (
        "import sys, anigenre\n"
        "anigenre.Settings, anigenre.load_settings, anigenre.errors.ConfigError\n"
        "heavy = {'tensorflow', 'keras', 'celery', 'ai_edge_litert', 'pandas'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
        "for engine in ('litert', 'keras'):\n"
        "    m = anigenre.load_model('latest', data_dir=sys.argv[1], engine=engine)\n"
        "    assert len(m.predict([sys.argv[2], b'x'])) == 2\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANIGENRE_", "TF_"))}
    done = subprocess.run(
        [sys.executable, "-c", code, str(trained[0].data_dir), str(posters / "p0.png")],
        capture_output=True, text=True, env=env, cwd=posters, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert (done.stdout, done.stderr) == ("", "")


# -- predicting --------------------------------------------------------------------------


def test_rows_are_the_bulk_runs_rows_for_the_same_files(litert, keras_model, posters, bulk):
    _, expected = bulk
    files = _files(posters)
    for model in (litert, keras_model):
        rows = model.predict(files)
        schema = predictions_schema(_genre_columns(rows))
        assert list(rows.columns) == schema.names
        assert rows["path"].tolist() == [str(f.resolve()) for f in files]  # input order
        want = expected.loc[rows["path"]]
        for column in ("model_id", "sha256", "status", "error"):
            assert rows[column].fillna("-").tolist() == want[column].fillna("-").tolist(), column
        ok = (rows["status"] == "ok").to_numpy()
        assert ok.sum() == 7
        for column in ("top_genres", "predicted"):
            got = [list(v) for v in rows[column][ok]]
            assert got == [list(v) for v in want[column][ok]], (model.engine, column)
        columns = _genre_columns(rows)
        diff = np.abs(rows[columns][ok].to_numpy() - want[columns][ok].to_numpy())
        assert diff.max() < TOL, (model.engine, diff.max())
        assert rows[columns][~ok].isna().all().all()


def test_litert_and_keras_agree(litert, keras_model, posters):
    files = sorted(posters.glob("p*.png"))
    a, b = litert.predict(files), keras_model.predict(files)
    columns = _genre_columns(a)
    assert np.abs(a[columns].to_numpy() - b[columns].to_numpy()).max() < TOL
    assert (litert.engine, keras_model.engine) == ("litert", "keras")


def test_images_and_bytes_are_predicted_as_their_files(litert, posters):
    path = posters / "j.jpg"
    data = path.read_bytes()
    items = [path, Image.open(path), data, bytearray(data), Image.open(path).convert("CMYK")]
    rows = litert.predict(items)
    assert rows["path"].tolist() == [
        str(path.resolve()), "<image 1>", "<bytes 2>", "<bytes 3>", "<image 4>"
    ]  # fmt: skip
    assert rows["status"].eq("ok").all()
    sha = rows["sha256"][0]
    assert [s if isinstance(s, str) else None for s in rows["sha256"]] == [
        sha,
        None,
        sha,
        sha,
        None,
    ]
    probs = rows[_genre_columns(rows)].to_numpy()
    # An opened image is re-encoded losslessly: the pixels the model sees are the file's.
    assert np.abs(probs - probs[0]).max() < TOL
    single = litert.probabilities(path)
    assert np.abs(single - probs[0]).max() < TOL and single.shape == (len(litert.genres),)


def test_a_bad_poster_is_an_error_row_with_the_runs_reason(litert, posters, tmp_path):
    good = posters / "p0.png"
    tiny = Image.new("RGB", (4, 4))
    whole = gen.encode("JPEG", size=(300, 400))
    cut = Image.open(io.BytesIO(whole[: len(whole) // 2]))  # its pixels are read later
    rows = litert.predict(
        [b"", good, b"<html>nope</html>", (posters / "cut.jpg").read_bytes(), tiny,
         tmp_path / "missing.png", tmp_path, cut]
    )  # fmt: skip
    assert rows["status"].tolist() == ["error", "ok"] + ["error"] * 6
    reasons = [e.split(":")[0] if isinstance(e, str) else None for e in rows["error"]]
    assert reasons == [
        "empty", None, "not-an-image", "corrupt", "absurd-size", "unreadable", "unreadable",
        "corrupt",
    ]  # fmt: skip
    assert rows["error"][5] == "unreadable: No such file or directory"
    assert rows["top_genres"][0] is None and rows["top_genres"][1] is not None
    with pytest.raises(InvalidImage) as caught:
        litert.probabilities(b"")
    assert caught.value.reason == "empty"
    with pytest.raises(TypeError, match="poster 1 is a int"):
        litert.predict([good, 7])
    with pytest.raises(TypeError, match="a list of posters"):
        litert.predict(str(good))
    assert litert.predict([]).empty


def test_many_posters_keep_their_order_across_batches(litert, posters):
    files = [posters / f"p{i % 6}.png" for i in range(70)]  # more than two batches of 32
    rows = litert.predict(files, top_k=2)
    assert rows["path"].tolist() == [str(f.resolve()) for f in files]
    assert rows["top_genres"].map(len).eq(2).all()
    first = rows[_genre_columns(rows)].to_numpy()
    assert np.abs(first[::6] - first[0]).max() < TOL


# -- reading runs ----------------------------------------------------------------------


def test_read_predictions_is_the_current_view_of_the_runs(trained, bulk):
    settings, model_id = trained
    out, expected = bulk
    current = anigenre.read_predictions(out, settings=settings)
    assert sorted(current["path"]) == sorted(expected.index)
    assert set(current["model_id"]) == {model_id}
    history = anigenre.read_predictions(str(out), history=True, settings=settings)
    assert len(history) == len(expected) and "run_id" in history.columns


# -- the document ----------------------------------------------------------------------


def doc_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)


def test_the_python_api_document_runs_as_written(trained, tmp_path, monkeypatch):
    """docs/python-api.md's blocks, in order, as one session: in a folder with
    ``posters/`` and ``out/`` (predicted by the CLI), the data dir in ANIGENRE_DATA_DIR."""
    from anigenre.jobs.cli import main

    settings, _ = trained
    (tmp_path / "posters").mkdir()
    Image.open(io.BytesIO(poster_png(400))).save(tmp_path / "posters" / "a.jpg")
    (tmp_path / "posters" / "b.png").write_bytes(poster_png(401, genres=("Comedy",)))
    for key in [k for k in os.environ if k.startswith("ANIGENRE_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("ANIGENRE_DATA_DIR", str(settings.data_dir))
    monkeypatch.chdir(tmp_path)
    assert main(["predict", "posters", "--out", "out"]) == 0
    blocks = doc_blocks()
    assert len(blocks) >= 5
    scope: dict = {}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), scope)  # noqa: S102 - the document, verbatim
    assert scope["rows"]["path"].tolist() == [
        str(tmp_path / "posters" / "a.jpg"),
        str(tmp_path / "posters" / "b.png"),
    ]
