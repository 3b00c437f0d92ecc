"""Our own int8 network (backbone ``mobilenet_v2_1.0_with_0.35_int8``): training quantizes the
float pair on its training posters, the head learns the int8 network's features, LiteRT
serves those very numbers, ``evaluate`` scores on it and the card says so."""

from __future__ import annotations

import json

import numpy as np
import pytest
from anigenre.jobs import stages
from anigenre.models.artifacts import FEATURES_FILE, MODELS_DIR
from anigenre.models.int8 import CALIBRATION_POSTERS, PTQ, QUANTIZED_DIR, calibration_set
from anigenre.models.manifest import Manifest

SIZE = (128, 96)


@pytest.fixture(scope="module")
def trained_ptq(tmp_path_factory, shared_dir):
    from anigenre.config import load_settings
    from anigenre.models.config import TrainConfig

    from tests.synthetic import synthetic_dataset

    data = tmp_path_factory.mktemp("ptq-data")
    synthetic_dataset(data, n=48, size=(120, 90))
    settings = load_settings(overrides={"data_dir": data, "shared_dir": shared_dir}, env={})
    config = TrainConfig(
        backbone="mobilenet_v2_1.0_with_0.35_int8",
        input_size=SIZE,
        epochs=3,
        ensemble=2,
        bootstrap=10,
    )
    model_id, manifest = stages.train_model(settings, config)
    return settings, model_id, manifest


def test_training_quantizes_the_pair_and_the_model_serves_that_network(trained_ptq):
    settings, model_id, manifest = trained_ptq
    features = manifest.weights.features
    assert features is not None and features.kind == PTQ
    assert features.path.parent == settings.data_dir / QUANTIZED_DIR
    n_train = manifest.dataset.rows["train"]
    assert features.calibration == min(n_train, CALIBRATION_POSTERS)
    folder = settings.data_dir / MODELS_DIR / model_id
    # Served as it was made: the file the head's features came from, byte for byte.
    assert (folder / FEATURES_FILE).read_bytes() == features.path.read_bytes()
    assert manifest.weights.companion is not None  # the 0.35's weights, still recorded


def test_the_head_trains_on_the_features_the_served_network_computes(trained_ptq):
    from anigenre.core.dataset_store import DATASET_PATH, read_dataset
    from anigenre.core.images import decode_image
    from anigenre.models.features import FeatureCache

    settings, model_id, manifest = trained_ptq
    metas = [
        json.loads(p.read_text()) for p in (settings.data_dir / "features").glob("*/meta.json")
    ]
    # The plain view, and the training posters' mirrors (TrainConfig.augment), both int8.
    assert sorted((m["view"], m.get("engine")) for m in metas) == [
        ("flip", "litert-int8"),
        ("plain", "litert-int8"),
    ]
    metas = [m for m in metas if m["view"] == "plain"]
    assert metas[0]["weights"].startswith(manifest.weights.features.sha256)
    cached = FeatureCache(settings.data_dir / "features", metas[0]).load()
    dataset, _ = read_dataset(settings.data_dir / DATASET_PATH)
    rows = dataset.head(4)
    images = np.stack([decode_image((settings.data_dir / p).read_bytes(), SIZE) for p in rows.path])
    engine = stages.load_predictor(settings, model_id, "litert").engine
    served = engine.features(images)
    # MobileNetV2 1.0 with block 16 (1280 + 320) and the 0.35's 1280, one int8 network.
    assert served.shape == (4, 2880) and served.std() > 0
    np.testing.assert_array_equal(served, np.stack([cached[s] for s in rows.sha256]))


def test_the_int8_network_takes_pixels_as_they_are(trained_ptq):
    settings, model_id, _ = trained_ptq
    features = stages.load_predictor(settings, model_id, "litert").engine.features
    detail = features._run.input
    assert detail["dtype"] == np.uint8 and tuple(detail["quantization"]) == (1.0, 0)


def test_keras_stays_the_float_reference_and_agrees_loosely(trained_ptq, shared_dir):
    """Keras runs the float pair the int8 network was quantized from: other numbers, close."""
    settings, model_id, _ = trained_ptq
    files = sorted((shared_dir / "data" / "posters" / "images").iterdir())[:16]
    out = {}
    for engine in ("keras", "litert"):
        predictor = stages.load_predictor(settings, model_id, engine)
        out[engine] = np.concatenate([p for _, p in predictor.predict_files(files)])
    diff = np.abs(out["keras"] - out["litert"])
    assert 0 < diff.max() < 0.15 and diff.mean() < 0.02


def test_evaluate_scores_on_the_engine_that_serves_and_the_card_says_so(trained_ptq):
    from anigenre.models.card import render_card

    settings, model_id, manifest = trained_ptq
    result = stages.evaluate_model(settings, model_id)
    assert any("scored on litert" in note for note in result.notes)
    card = render_card(manifest, None)
    assert "LiteRT's, the engine that serves" in card
    assert f"quantized to full integer on {manifest.weights.features.calibration}" in card


def test_training_again_on_the_same_posters_reuses_the_quantized_network(trained_ptq):
    from anigenre.models.config import TrainConfig

    settings, _, manifest = trained_ptq
    made = list((settings.data_dir / QUANTIZED_DIR).iterdir())
    mtime = made[0].stat().st_mtime_ns
    config = TrainConfig(
        backbone="mobilenet_v2_1.0_with_0.35_int8",
        input_size=SIZE,
        epochs=1,
        ensemble=1,
        bootstrap=5,
    )
    _, again = stages.train_model(settings, config)
    assert list((settings.data_dir / QUANTIZED_DIR).iterdir()) == made
    assert made[0].stat().st_mtime_ns == mtime
    assert again.weights.features == manifest.weights.features


def test_calibration_posters_are_the_first_by_sha():
    shas = ["c", "a", "d", "b"]
    assert calibration_set(shas, 2) == [1, 3]
    assert calibration_set(shas, 10) == [1, 3, 0, 2]


def test_the_manifest_keeps_the_kind_and_older_ones_read_as_imagenet_int8():
    old = {
        "model_id": "m",
        "created": "2026-01-01T00:00:00",
        "weights": {"source": "file", "features": {"path": "/w/x.tflite", "sha256": "ab"}},
    }
    read = Manifest.from_json(old)
    features = read.weights.features
    assert features.kind == "imagenet-int8" and features.calibration is None
    assert "kind" not in read.to_json()["weights"]["features"]  # written as it was
    ptq = json.loads(json.dumps(old))
    ptq["weights"]["features"] |= {"kind": "ptq", "calibration": 200}
    again = Manifest.from_json(Manifest.from_json(ptq).to_json())
    assert (again.weights.features.kind, again.weights.features.calibration) == ("ptq", 200)
