"""The LiteRT engine: the export beside model.keras, parity with Keras, the --engine choice
recorded in the run, and LiteRT predictions (in-process and in a worker) without TensorFlow."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from anigenre.core.images import decode_image
from anigenre.jobs import stages
from anigenre.jobs.runs.index import load_plan
from anigenre.jobs.runs.layout import PLAN
from anigenre.models.artifacts import LITERT_FILE, LITERT_KEY, MODELS_DIR
from anigenre.models.export import litert_current

from tests.procs import ROOT, Worker, own_redis, run_cli
from tests.synthetic import poster_png, trained_tiny_model


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shared_dir):
    """The tiny custom CNN of tests/test_jobs.py, trained (and so exported) in its own dir."""
    data = tmp_path_factory.mktemp("litert-data")
    settings, model_id = trained_tiny_model(data, shared_dir)
    return settings, model_id


def folder_of(settings, model_id) -> Path:
    return settings.data_dir / MODELS_DIR / model_id


def posters(path: Path, n: int) -> list[Path]:
    path.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(n):
        files.append(path / f"p{i:03d}.png")
        files[-1].write_bytes(poster_png(2000 + i, genres=(("Action",), ("Comedy",))[i % 2]))
    return files


def probabilities(predictor, files) -> np.ndarray:
    out = [probs for _, probs in predictor.predict_files(files)]
    return np.concatenate(out)


def assert_parity(keras_p: np.ndarray, litert_p: np.ndarray) -> None:
    assert keras_p.shape == litert_p.shape and len(keras_p)
    assert np.abs(keras_p - litert_p).max() < 1e-4
    top4 = lambda p: np.argsort(-p, axis=1, kind="stable")[:, :4]  # noqa: E731
    assert (top4(keras_p) == top4(litert_p)).all()


def copy_without_export(settings, model_id, dest: Path):
    """The artifact as a model trained before exports existed: no model.tflite, no key."""
    target = dest / MODELS_DIR / model_id
    shutil.copytree(folder_of(settings, model_id), target)
    (target / LITERT_FILE).unlink()
    (target / LITERT_KEY).unlink()
    return settings.model_copy(update={"data_dir": dest}), target


def test_training_exports_litert_beside_the_keras_model(trained):
    settings, model_id = trained
    folder = folder_of(settings, model_id)
    assert (folder / LITERT_FILE).stat().st_size > 0
    key = json.loads((folder / LITERT_KEY).read_text())
    assert len(key["keras_sha256"]) == 64 and litert_current(folder)


def test_both_engines_give_the_same_probabilities_and_top4(trained, tmp_path):
    settings, model_id = trained
    files = posters(tmp_path / "in", 40)  # a full batch of 32 and a padded one
    keras_p = probabilities(stages.load_predictor(settings, model_id, "keras"), files)
    litert = stages.load_predictor(settings, model_id, "litert")
    assert litert.engine.name == "litert"
    assert_parity(keras_p, probabilities(litert, files))


def test_chunks_decoded_ahead_are_decoded_once_and_predicted_alike(trained, tmp_path, monkeypatch):
    """In-process, the next chunk's first files decode while this chunk's network runs:
    each file is still read and decoded once, and the rows equal a one-chunk run's."""
    import anigenre.models.predictor

    settings, model_id = trained
    posters(tmp_path / "in", 11)
    (tmp_path / "in" / "copy.png").write_bytes((tmp_path / "in" / "p004.png").read_bytes())
    predictor = stages.load_predictor(settings, model_id, "litert")
    decoded: list[str] = []
    real = anigenre.models.predictor.decode_file
    monkeypatch.setattr(
        anigenre.models.predictor,
        "decode_file",
        lambda p, *a, **k: decoded.append(str(p)) or real(p, *a, **k),
    )

    def rows(out: str, chunk_size: int) -> pd.DataFrame:
        plan = stages.plan_prediction(
            settings, [tmp_path / "in"], model_id=model_id, out_dir=tmp_path / out,
            chunk_size=chunk_size, engine="litert",
        )  # fmt: skip
        stages.predict_in_process(settings, plan, predictor=predictor)
        return pd.read_parquet(tmp_path / out).sort_values("path").reset_index(drop=True)

    chunked = rows("chunked", 3)
    assert len(decoded) == len(set(decoded)) == 11  # once per content: the copy shares p004's
    whole = rows("whole", 100)
    assert len(chunked) == 12 and (chunked["status"] == "ok").all()
    for column in ("path", "top_genres", "predicted"):
        assert (
            chunked[column].map(list if column != "path" else str).tolist()
            == whole[column].map(list if column != "path" else str).tolist()
        )


def test_a_model_trained_before_exports_is_exported_on_first_use(trained, tmp_path):
    settings, model_id = trained
    old, folder = copy_without_export(settings, model_id, tmp_path / "data")
    files = posters(tmp_path / "in", 6)
    litert_p = probabilities(stages.load_predictor(old, model_id, "litert"), files)
    assert litert_current(folder)
    assert_parity(probabilities(stages.load_predictor(old, model_id, "keras"), files), litert_p)


def test_an_export_of_another_model_file_is_made_again(trained, tmp_path):
    """Keyed by model.keras's hash: a model file copied over the old one is not served
    through the old one's export."""
    settings, model_id = trained
    old, folder = copy_without_export(settings, model_id, tmp_path / "data")
    stale = b"not the export of this model"
    (folder / LITERT_FILE).write_bytes(stale)
    key = {"keras_sha256": "0" * 64, "tflite_sha256": "0" * 64}
    (folder / LITERT_KEY).write_text(json.dumps(key))
    assert not litert_current(folder)
    stages.load_predictor(old, model_id, "litert")
    assert litert_current(folder) and (folder / LITERT_FILE).read_bytes() != stale


def _env(settings, **extra) -> dict:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("ANIGENRE_")}
    env.update(ANIGENRE_DATA_DIR=str(settings.data_dir), TF_CPP_MIN_LOG_LEVEL="2")
    return {**env, **extra}


def _run_id(result) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout.split()[1].rstrip(":")  # "run <id>: N files to predict ..."


def test_cli_engine_flag_and_setting_are_recorded_in_the_plan(trained, tmp_path):
    settings, _ = trained
    posters(tmp_path / "in", 3)
    runs = {}
    for name, flags, extra in (
        ("default", [], {}),
        ("flag", ["--engine", "keras"], {}),
        ("env", [], {"ANIGENRE_PREDICT_ENGINE": "keras"}),
    ):
        result = run_cli(
            "predict",
            str(tmp_path / "in"),
            "--out",
            str(tmp_path / name),
            *flags,
            env=_env(settings, **extra),
            timeout=180,
        )
        runs[name] = load_plan(settings.data_dir, _run_id(result))
    assert {k: p.engine for k, p in runs.items()} == {
        "default": "litert",
        "flag": "keras",
        "env": "keras",
    }
    rows = {k: pd.read_parquet(p.part_path(0)).sort_values("path") for k, p in runs.items()}
    assert (rows["default"].status == "ok").all() and len(rows["default"]) == 3
    columns = [c for c in rows["default"].columns if c.startswith("p_")]
    assert columns
    litert_p, keras_p = (rows[k][columns].to_numpy() for k in ("default", "flag"))
    assert np.abs(litert_p - keras_p).max() < 1e-4


def test_a_plan_from_before_engines_loads_and_runs_on_keras(trained, tmp_path):
    settings, model_id = trained
    posters(tmp_path / "in", 2)
    plan = stages.plan_prediction(
        settings, [tmp_path / "in"], model_id=model_id, out_dir=tmp_path / "o"
    )
    path = plan.run_dir / PLAN
    saved = json.loads(path.read_text())
    assert saved.pop("engine") == "litert"
    path.write_text(json.dumps(saved))
    old = load_plan(settings.data_dir, plan.run_id)
    assert old.engine == "keras"
    assert stages.predict_in_process(settings, old)["ok"] == 2


NO_TF = """
import sys
from anigenre.jobs import stages
from anigenre.config import load_settings
settings = load_settings(overrides={{"data_dir": {data!r}}}, env={{}})
plan = stages.plan_prediction(settings, [{folder!r}], model_id="latest", out_dir={out!r},
                              engine={engine!r})
manifest = stages.predict_in_process(settings, plan)
print(manifest["ok"], sorted(m for m in ("tensorflow", "keras") if m in sys.modules))
"""


@pytest.mark.parametrize(
    "engine, imported", [("litert", "[]"), ("keras", "['keras', 'tensorflow']")]
)
def test_litert_prediction_does_not_import_tensorflow(trained, tmp_path, engine, imported):
    settings, _ = trained
    posters(tmp_path / "in", 5)
    code = NO_TF.format(
        data=str(settings.data_dir),
        folder=str(tmp_path / "in"),
        out=str(tmp_path / "o"),
        engine=engine,
    )
    result = _python(code, settings)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == f"5 {imported}"


def _python(code: str, settings) -> subprocess.CompletedProcess:
    """``python -c CODE`` in a fresh process: what it imports is what a worker would."""
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _tensorflow_mapped(pid: int) -> bool:
    """Whether process ``pid`` has TensorFlow's own libraries loaded (LiteRT's runtime
    lives in ai_edge_litert/, not under a tensorflow/ folder)."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return "/tensorflow/" in maps or "libtensorflow" in maps


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def test_a_worker_predicts_a_litert_run_without_tensorflow(trained, tmp_path):
    settings, _ = trained
    assert not _worker_run(settings, tmp_path, "litert")


def test_a_worker_predicts_a_keras_run_with_tensorflow(trained, tmp_path):
    settings, _ = trained
    assert _worker_run(settings, tmp_path, "keras")


def test_a_worker_predicts_an_int8_run_without_tensorflow(trained_int8, tmp_path):
    settings, _, _ = trained_int8
    assert not _worker_run(settings, tmp_path, "litert")


def _worker_run(settings, tmp_path, engine: str) -> bool:
    """Predict 8 posters through one worker on ``engine``: whether it had TensorFlow."""
    posters(tmp_path / "in", 8)
    with own_redis(tmp_path / "redis") as (url, _):
        env = _env(settings, ANIGENRE_BROKER_URL=url)
        worker = Worker("lite", env, tmp_path / "w.log").start()
        try:
            result = run_cli(
                "jobs",
                "submit",
                "predict",
                str(tmp_path / "in"),
                "--out",
                str(tmp_path / "o"),
                "--engine",
                engine,
                "--chunk-size",
                "4",
                env=env,
            )
            assert result.returncode == 0, result.stderr
            run_id = result.stdout.split()[0]
            waited = run_cli("jobs", "wait", run_id, "--timeout", "120", env=env, timeout=180)
            assert waited.returncode == 0 and "8 ok" in waited.stdout, waited.stderr
            pids = [worker.proc.pid, *_children(worker.proc.pid)]
            assert len(pids) > 1
            with_tf = any(_tensorflow_mapped(p) for p in pids)
        finally:
            worker.stop()
    assert load_plan(settings.data_dir, run_id).engine == engine
    return with_tf


@pytest.mark.parametrize(
    "backbone", ["mobilenet_v2_0.35", "mobilenet_v2_1.0_with_0.35", "resnet50"]
)
def test_pretrained_backbones_and_their_scaling_convert_with_parity(backbone, shared_dir, tmp_path):
    """MobileNetV2 with the local ImageNet weights (Rescaling inside), the default pair of
    MobileNetV2s on one input, and ResNet50's CaffePreprocess layer, at a small input: the
    export gives Keras's probabilities."""
    from anigenre.models.backbones import BACKBONES, WeightsSource, build_backbone, resolve_weights
    from anigenre.models.engines import KerasEngine, LiteRTEngine
    from anigenre.models.export import convert_to_litert
    from anigenre.models.heads import build_head
    from anigenre.models.train import compose

    spec = BACKBONES[backbone]
    weights = (
        resolve_weights(spec, "auto", shared_dir / "weights")
        if spec.local_file
        else WeightsSource("none")
    )
    features = build_backbone(spec, (64, 48), weights)
    model = compose(features, build_head(features.output_shape[-1], 18))
    path = tmp_path / "model.tflite"
    path.write_bytes(convert_to_litert(model))
    x = np.random.default_rng(0).integers(0, 256, (8, 64, 48, 3)).astype(np.float32)
    assert_parity(KerasEngine(model).run(x), LiteRTEngine(path).run(x))


def test_training_features_from_litert_are_kerass_features(shared_dir):
    """Enough missing images and the float backbone's features come from its LiteRT
    export, under the same cache key, so they must be Keras's numbers; a few come from
    Keras itself, since the export would cost more than it saves."""
    from anigenre.models.backbones import BACKBONES, build_backbone, resolve_weights
    from anigenre.models.embed import LITERT_MIN_IMAGES, features_extractor

    spec = BACKBONES["mobilenet_v2_0.35"]
    weights = resolve_weights(spec, "auto", shared_dir / "weights")
    backbone = build_backbone(spec, (96, 64), weights)
    x = np.random.default_rng(1).integers(0, 256, (6, 96, 64, 3)).astype(np.uint8)
    keras_features = features_extractor(backbone, weights, images=LITERT_MIN_IMAGES - 1)
    litert_features = features_extractor(backbone, weights, images=LITERT_MIN_IMAGES)
    from anigenre.models.engines import FloatNetwork

    assert isinstance(litert_features, FloatNetwork)
    assert not isinstance(keras_features, FloatNetwork)
    expected = keras_features(x)
    assert expected.shape == (6, 1280) and expected.std() > 0
    np.testing.assert_allclose(litert_features(x), expected, atol=1e-4, rtol=1e-4)


def test_without_the_litert_runtime_predict_says_what_to_do(trained, tmp_path):
    settings, _ = trained
    posters(tmp_path / "in", 1)
    code = (
        "import sys; sys.modules['ai_edge_litert'] = None\n"  # as if never installed
        "from jobs.cli import main\n"
        f"sys.exit(main(['predict', {str(tmp_path / 'in')!r}, '--out', {str(tmp_path / 'o')!r}]))"
    )
    result = _python(code, settings)
    assert result.returncode == 2, result.stderr
    error = result.stderr.strip().splitlines()[-1]
    assert (
        "ai-edge-litert" in error and "--engine keras" in error and "Traceback" not in result.stderr
    )


# --- a head trained on int8 features (backbone mobilenet_v2_1.0_int8) ----------------------


@pytest.fixture(scope="module")
def trained_int8(tmp_path_factory, shared_dir):
    """A head on the shared int8 MobileNetV2's features, in its own dir. At half the
    default input: at 64x48 the int8 features of noise-like synthetic posters are too far
    from the float ones (cosine 0.92) to stand for real use; at 160x112 they are 0.996."""
    from anigenre.config import load_settings
    from anigenre.models.config import TrainConfig

    from tests.synthetic import synthetic_dataset

    data = tmp_path_factory.mktemp("int8-data")
    synthetic_dataset(data, n=60)
    settings = load_settings(overrides={"data_dir": data, "shared_dir": shared_dir}, env={})
    config = TrainConfig(
        backbone="mobilenet_v2_1.0_int8",
        input_size=(160, 112),
        epochs=3,
        ensemble=2,
        bootstrap=10,
        # A one-layer head and one view: what is checked here is the two files and the
        # cache's engine key (the default head and its mirror rows: test_train_augment).
        hidden=0,
        augment=(),
    )
    model_id, manifest = stages.train_model(settings, config)
    return settings, model_id, manifest


def test_an_int8_model_streams_posters_through_its_network_as_they_decode(trained_int8, tmp_path):
    """predict_files on int8 features runs each poster in the thread that decoded it: the
    same probabilities, batch by batch, as predict_arrays on the decoded posters, with a
    file that fails to decode an error in its place."""
    from anigenre.core.images import decode_image

    settings, model_id, _ = trained_int8
    predictor = stages.load_predictor(settings, model_id, "litert")
    assert predictor.engine.streams
    paths = posters(tmp_path / "in", 7)
    broken = tmp_path / "in" / "broken.jpg"
    broken.write_bytes(b"<html>not a poster</html>")
    files = [*map(str, paths[:3]), str(broken), *map(str, paths[3:])]
    predictor.batch_size = 3  # batches of three, one with the broken file in its middle
    out = list(predictor.predict_files(files))
    assert [b.paths for b, _ in out] == [files[0:3], files[3:6], files[6:8]]
    assert out[1][0].ok.tolist() == [False, True, True]
    assert out[1][0].errors[str(broken)].startswith("not-an-image")
    decoded = np.stack([decode_image(p.read_bytes(), predictor.size) for p in paths])
    expected = [decoded[0:3], decoded[3:5], decoded[5:7]]
    for (batch, probs), images in zip(out, expected, strict=True):
        np.testing.assert_array_equal(probs, predictor.predict_arrays(images))
        np.testing.assert_array_equal(batch.arrays, images)


def test_an_int8_model_exports_its_extractor_and_head(trained_int8, shared_dir):
    from anigenre.models.artifacts import FEATURES_FILE

    settings, model_id, manifest = trained_int8
    folder = folder_of(settings, model_id)
    int8 = shared_dir / "weights" / "tf2_mobilenet_v2_1.0_224_ptq.tflite"
    assert manifest.weights.features is not None and manifest.weights.features.path == int8
    key = json.loads((folder / LITERT_KEY).read_text())
    assert len(key["features_sha256"]) == 64 and litert_current(folder)
    # The head alone (two 1280x18 heads): far smaller than the 4 MB extractor it reads.
    assert (
        (folder / LITERT_FILE).stat().st_size < 1_000_000 < (folder / FEATURES_FILE).stat().st_size
    )
    (folder / FEATURES_FILE).write_bytes(b"x")  # a damaged extractor is not served
    assert not litert_current(folder)
    stages.load_predictor(settings, model_id, "litert")
    assert litert_current(folder)


def test_int8_features_are_cached_by_engine_and_served_as_trained(trained_int8):
    """The head's training features are the ones the LiteRT engine computes when serving:
    the same numbers, from a cache folder keyed by the int8 engine."""
    from anigenre.core.dataset_store import DATASET_PATH, read_dataset
    from anigenre.core.images import decode_image
    from anigenre.models.features import FeatureCache

    settings, model_id, manifest = trained_int8
    metas = [
        json.loads(p.read_text()) for p in (settings.data_dir / "features").glob("*/meta.json")
    ]
    assert [m.get("engine") for m in metas] == ["litert-int8"]
    key = metas[0]
    assert manifest.weights.features is not None
    assert key["weights"] == manifest.weights.features.sha256
    cached = FeatureCache(settings.data_dir / "features", key).load()
    dataset, _ = read_dataset(settings.data_dir / DATASET_PATH)
    rows = dataset.head(5)
    images = np.stack(
        [decode_image((settings.data_dir / p).read_bytes(), (160, 112)) for p in rows.path]
    )
    engine = stages.load_predictor(settings, model_id, "litert").engine
    served = engine.features(images)
    assert served.shape == (5, 1280) and served.std() > 0
    np.testing.assert_array_equal(served, np.stack([cached[s] for s in rows.sha256]))


def test_float_features_keep_the_cache_key_they_had_before_engines():
    from anigenre.models.features import cache_key

    old = {"backbone": "b", "weights": "w", "size": [2, 1], "policy": "stretch", "view": "plain"}
    assert cache_key("b", "w", (2, 1), "stretch", "plain") == old
    assert cache_key("b", "w", (2, 1), "stretch", "plain", engine="litert-int8") == {
        **old,
        "engine": "litert-int8",
    }


def test_int8_litert_agrees_with_its_float_keras_reference(trained_int8, shared_dir):
    """The int8 engine and its float Keras reference are other networks, so they differ
    by quantization noise only: here (a head trained three epochs on synthetic posters,
    run on 40 real ones at 160x112) max 0.048, mean 0.005, same top-4 on 92.5%. The
    issue's bar (0.02, 99%) is for the real model at 320x224: bench/predict.py."""
    settings, model_id, _ = trained_int8
    files = sorted((shared_dir / "data" / "posters" / "images").iterdir())[:40]
    keras_p = probabilities(stages.load_predictor(settings, model_id, "keras"), files)
    litert = stages.load_predictor(settings, model_id, "litert")
    assert litert.engine.features is not None
    litert_p = probabilities(litert, files)
    assert keras_p.shape == litert_p.shape == (40, 18)
    diff = np.abs(keras_p - litert_p)
    assert 0 < diff.max() < 0.1 and diff.mean() < 0.01  # not 0: they are other engines
    top4 = lambda p: np.sort(np.argsort(-p, axis=1, kind="stable")[:, :4], axis=1)  # noqa: E731
    assert (top4(keras_p) == top4(litert_p)).all(axis=1).mean() >= 0.85


def test_a_stray_extractor_beside_a_float_model_is_not_served(trained, tmp_path):
    """An int8 extractor left in a float model's folder (a model.keras copied over an int8
    one) would feed the float head wrong inputs: the export is made again without it."""
    from anigenre.models.artifacts import FEATURES_FILE

    settings, model_id = trained
    old, folder = copy_without_export(settings, model_id, tmp_path / "data")
    files = posters(tmp_path / "in", 6)
    keras_p = probabilities(stages.load_predictor(old, model_id, "keras"), files)
    stages.load_predictor(old, model_id, "litert")
    (folder / FEATURES_FILE).write_bytes(b"an extractor of another model")
    assert not litert_current(folder)
    litert = stages.load_predictor(old, model_id, "litert")
    assert litert.engine.features is None and not (folder / FEATURES_FILE).exists()
    assert_parity(keras_p, probabilities(litert, files))


def test_int8_backbone_without_its_file_says_what_to_do(tmp_path, shared_dir):
    from anigenre.core.errors import ConfigError
    from anigenre.models.backbones import BACKBONES, resolve_weights

    spec = BACKBONES["mobilenet_v2_1.0_int8"]
    weights = tmp_path / "weights"
    weights.mkdir()
    shutil.copy(shared_dir / "weights" / spec.local_file, weights)
    with pytest.raises(ConfigError, match="needs the int8 file .*tf2_mobilenet_v2"):
        resolve_weights(spec, "auto", weights)
    with pytest.raises(ConfigError, match="no --weights none"):
        resolve_weights(spec, "none", shared_dir / "weights")


def test_int8_models_take_uint8_pixels_with_the_float_feeds_numbers(trained_int8, shared_dir):
    """The int8 network reads pixels as they are: fed uint8 (no float32 copy of the batch),
    it gives exactly the probabilities the float32 feed gave."""
    settings, model_id, _ = trained_int8
    predictor = stages.load_predictor(settings, model_id, "litert")
    assert predictor.engine.takes_uint8
    files = sorted((shared_dir / "data" / "posters" / "images").iterdir())[:6]
    images = np.stack([decode_image(f.read_bytes(), predictor.size) for f in files])
    fed_uint8 = predictor.predict_arrays(images)
    predictor.engine.takes_uint8 = False
    np.testing.assert_array_equal(predictor.predict_arrays(images), fed_uint8)
