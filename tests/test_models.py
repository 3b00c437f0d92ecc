"""Models on CPU with small images and few epochs: they build, learn, save and reload safely."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from PIL import Image

keras = pytest.importorskip("keras")  # part of the pinned install; never absent in CI

from anigenre.config import load_settings  # noqa: E402
from anigenre.core.errors import ConfigError  # noqa: E402
from anigenre.core.genres import Vocabulary  # noqa: E402
from anigenre.jobs import stages  # noqa: E402
from anigenre.models.backbones import BACKBONES, WeightsSource, build_backbone, resolve_weights  # noqa: E402
from anigenre.models.config import TrainConfig  # noqa: E402
from anigenre.models.layers import CaffePreprocess  # noqa: E402
from anigenre.models.registry import list_models, load_artifact  # noqa: E402

from tests.synthetic import synthetic_dataset  # noqa: E402

VOCAB = Vocabulary()


@pytest.fixture(scope="module")
def synth(tmp_path_factory, shared_dir):
    data = tmp_path_factory.mktemp("synth")
    synthetic_dataset(data)
    return load_settings(overrides={"data_dir": data, "shared_dir": shared_dir}, env={})


TINY = {
    "input_size": (40, 32),
    "epochs": 25,
    "batch_size": 16,
    "bootstrap": 50,
    "patience": 25,
    "ensemble": 1,
    "augment": (),  # one view per poster: the counts below are of posters
}


def test_custom_cnn_learns_a_separable_set_end_to_end(synth):
    model_id, manifest = stages.train_model(
        synth, TrainConfig(backbone="custom_cnn", weights="none", learning_rate=3e-3, **TINY)
    )
    losses = manifest.training.loss_history
    assert manifest.training.mode == "end-to-end"
    assert losses[-1] < losses[0] * 0.8  # the loss falls
    s = manifest.metrics_summary
    assert s["test"]["macro_map"] > s["prior"]["macro_map"] + 0.2  # beats the prior clearly
    assert s["test"]["p@3"] is not None


def test_frozen_pretrained_features_train_the_head_and_are_cached(synth):
    config = TrainConfig(backbone="mobilenet_v2_0.35", **{**TINY, "input_size": (64, 48)})
    first_id, first = stages.train_model(synth, config)
    assert first.training.mode == "frozen"
    assert first.weights.source == "file" and len(first.weights.sha256 or "") == 64
    n_rows = sum(first.dataset.rows.values())
    assert first.training.features_computed == n_rows
    s = first.metrics_summary
    assert s["test"]["macro_map"] > s["prior"]["macro_map"]

    # Same run again: nothing recomputed, and the same seed gives the same figures.
    second_id, second = stages.train_model(synth, config)
    assert second.training.features_computed == 0
    assert second.metrics_summary == first.metrics_summary and second_id != first_id
    # Another resize policy is another cache key: the backbone runs again.
    _, third = stages.train_model(synth, TrainConfig(**{**config.__dict__, "resize_policy": "pad"}))
    assert third["training"]["features_computed"] == n_rows


def test_the_head_brings_features_to_unit_norm_and_old_configs_read_as_before(synth):
    """The head's first layer divides by the training features' mean L2 norm, a constant
    saved in the model; a config recorded before these options reads as what it ran."""
    from anigenre.core.dataset_store import DATASET_PATH, read_dataset
    from anigenre.models.features import FeatureCache

    config = TrainConfig(backbone="mobilenet_v2_0.35", **{**TINY, "input_size": (64, 48)})
    model_id, manifest = stages.train_model(synth, config)
    scale = manifest.training.feature_scale
    caches = [d for d in (synth.data_dir / "features").iterdir() if (d / "meta.json").exists()]
    key = next(
        json.loads((d / "meta.json").read_text())
        for d in caches
        if json.loads((d / "meta.json").read_text())["size"] == [64, 48]
        and json.loads((d / "meta.json").read_text())["policy"] == "stretch"
    )
    features = FeatureCache(synth.data_dir / "features", key).load()
    dataset, _ = read_dataset(synth.data_dir / DATASET_PATH)
    X = np.stack([features[s] for s in dataset.loc[dataset["split"] == "train", "sha256"]])
    assert scale == pytest.approx(1 / np.linalg.norm(X, axis=1).mean(), rel=1e-5)
    model = load_artifact(synth.data_dir, model_id)[0]
    layers = {layer.name for layer in model.layers[-1].layers}
    assert "head_scale" in layers

    unscaled = TrainConfig(**{**config.__dict__, "feature_scale": "none"})
    assert stages.train_model(synth, unscaled)[1]["training"]["feature_scale"] is None

    old = config.as_dict()
    del old["feature_scale"], old["taps"]
    assert TrainConfig.from_dict(old).feature_scale == "none"
    assert TrainConfig.from_dict(old).taps == ()
    assert TrainConfig.from_dict(config.as_dict()) == config  # a queued config travels whole


def test_artifact_carries_what_inference_needs_and_loads_in_safe_mode(synth):
    # An ensemble of two heads, so the averaging layer is part of what must save and load.
    stages.train_model(
        synth,
        TrainConfig(
            backbone="mobilenet_v2_0.35", **{**TINY, "input_size": (64, 48), "ensemble": 2}
        ),
    )
    manifest = list_models(synth.data_dir)[-1]
    folder = synth.data_dir / "models" / manifest.model_id
    assert {p.name for p in folder.iterdir()} == {
        "model.keras",
        "manifest.json",
        "metrics.json",
        "model.tflite",  # the LiteRT export, made at save time
        "model.tflite.json",
        "MODEL_CARD.md",  # what a person reads before trusting it
        "checksums.json",  # what a machine fetching it from object storage checks
    }
    sums = json.loads((folder / "checksums.json").read_text())
    assert sums == {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in folder.iterdir()
        if p.name != "checksums.json"
    }
    recorded = json.loads((folder / "manifest.json").read_text())
    for key in (
        "genres",
        "input_size",
        "resize_policy",
        "backbone",
        "weights",
        "thresholds",
        "dataset",
        "seed",
        "libraries",
        "metrics_summary",
        "global_threshold",
    ):
        assert key in recorded, key
    assert manifest.genres == VOCAB.genres and manifest.vocabulary == VOCAB
    card = (folder / "MODEL_CARD.md").read_text()
    assert "Pretrained weights: MobileNetV2 α 0.35 ImageNet weights, Apache-2.0" in card
    metrics = json.loads((folder / "metrics.json").read_text())
    assert [g["genre"] for g in metrics["test"]["per_genre"]] == list(VOCAB.genres)
    assert "Mecha" in metrics["test"]["absent"]  # absent, not averaged as zero

    model, loaded = load_artifact(synth.data_dir, "latest")
    assert loaded == manifest
    out = model.predict(np.zeros((2, 64, 48, 3), np.float32), verbose=0)
    assert out.shape == (2, 18) and ((out >= 0) & (out <= 1)).all()
    # The saved model and the metrics agree: evaluate reproduces the test mAP.
    result = stages.evaluate_model(synth, manifest.model_id)
    assert result.summary["test"]["macro_map"] == pytest.approx(
        manifest.metrics_summary["test"]["macro_map"], abs=1e-4
    )


def test_fine_tuning_runs_on_cpu(synth):
    _, manifest = stages.train_model(
        synth,
        TrainConfig(
            backbone="mobilenet_v2_0.35",
            fine_tune=3,
            epochs=2,
            batch_size=16,
            input_size=(64, 48),
            bootstrap=20,
            learning_rate=1e-4,
        ),
    )
    assert manifest.training.mode == "end-to-end" and manifest.training.epochs_run == 2


@pytest.mark.parametrize(
    ("name", "size", "dim"),
    [("resnet50", (32, 32), 2048), ("inception_v3", (75, 75), 2048), ("custom_cnn", (40, 32), 64)],
)
def test_paper_architectures_build_without_imagenet_weights(name, size, dim):
    spec = BACKBONES[name]
    model = build_backbone(spec, size, WeightsSource("none"))
    assert model.output_shape == (None, dim)


def test_local_weights_copy_exactly_into_a_poster_shaped_backbone(shared_dir):
    spec = BACKBONES["mobilenet_v2_1.0"]
    weights = resolve_weights(spec, "auto", shared_dir / "weights")
    assert weights.kind == "file"
    square = build_backbone(spec, (224, 224), weights)
    poster = build_backbone(spec, (320, 224), weights)
    reference = keras.applications.MobileNetV2(alpha=1.0, include_top=True, weights=None)
    reference.load_weights(weights.path)
    img = Image.open(shared_dir / "weights" / "samples" / "cat.bmp").convert("RGB")
    x = np.asarray(img.resize((224, 224)))[None].astype(np.float32)
    # The weights are the real ImageNet ones: the full model names the cat (README's check).
    labels = (shared_dir / "weights" / "imagenet_labels.txt").read_text().splitlines()
    top1 = int(np.argmax(reference.predict(x / 127.5 - 1.0, verbose=0)))
    assert labels[top1 + 1] == "Egyptian cat"
    pooled = keras.Model(reference.input, reference.layers[-2].output)
    expected = pooled.predict(x / 127.5 - 1.0, verbose=0)
    out = square.predict(x, verbose=0)
    assert out.shape == (1, 1280 + 320)  # the pooled features, then block 16's, pooled
    assert np.allclose(out[:, :1280], expected, atol=1e-4)
    block16 = keras.Model(reference.input, reference.get_layer("block_16_project_BN").output)
    tap = block16.predict(x / 127.5 - 1.0, verbose=0).mean(axis=(1, 2))
    assert np.allclose(out[:, 1280:], tap, atol=1e-4)
    untapped = build_backbone(spec, (224, 224), weights, taps=())
    assert np.allclose(untapped.predict(x, verbose=0), expected, atol=1e-4)
    assert poster.count_params() == square.count_params()


def test_the_default_backbone_appends_mobilenet_v2_0_35_and_names_both_files(shared_dir):
    """The default features: MobileNetV2 1.0 (with block 16) and, on the same input, the
    0.35 network's pooled features; both weight files are named in the weights record."""
    spec = BACKBONES[TrainConfig().backbone]
    assert spec.companion == "mobilenet_v2_0.35"
    weights = resolve_weights(spec, "auto", shared_dir / "weights")
    assert weights.companion.kind == "file"
    assert weights.describe()["companion"]["sha256"] == weights.companion.sha256
    assert weights.features_id == f"{weights.sha256}+{weights.companion.sha256}"
    pair = build_backbone(spec, (96, 64), weights)
    alone = build_backbone(BACKBONES["mobilenet_v2_1.0"], (96, 64), weights)
    small = build_backbone(BACKBONES["mobilenet_v2_0.35"], (96, 64), weights.companion)
    x = np.random.default_rng(0).uniform(0, 255, (2, 96, 64, 3)).astype(np.float32)
    out = pair.predict(x, verbose=0)
    assert out.shape == (2, 1600 + 1280)
    assert np.allclose(out[:, :1600], alone.predict(x, verbose=0), atol=1e-4)
    expected = small.predict(x, verbose=0)
    assert np.allclose(out[:, 1600:], expected, atol=1e-4)
    # A weights file given for the main network leaves the companion on its own file.
    given = resolve_weights(spec, str(weights.path), shared_dir / "weights")
    assert given.companion == weights.companion
    assert resolve_weights(spec, "none", shared_dir / "weights").companion.kind == "none"
    # Pretrained weights on one network and random ones on the other are refused.
    with pytest.raises(ConfigError, match="companion's weights"):
        build_backbone(spec, (96, 64), WeightsSource("file", weights.path, weights.sha256))


def test_a_model_on_the_pair_trains_saves_and_says_what_it_reads(synth):
    """Trained through the stage: the manifest and card name the companion and its weights,
    the features are cached under a key naming both files, the artifact reloads, and
    fine-tuning, whose top layers would all be the companion's, is refused."""
    from anigenre.models.artifacts import CARD_FILE

    pair = "mobilenet_v2_1.0_with_0.35"  # float; the default serves it quantized
    config = TrainConfig(backbone=pair, **{**TINY, "input_size": (64, 48)})
    model_id, manifest = stages.train_model(synth, config)
    assert manifest.backbone == pair
    assert manifest.training.companion == "mobilenet_v2_0.35"
    companion = manifest.weights.companion
    assert companion is not None and companion.source == "file"
    assert len(companion.sha256 or "") == 64
    keys = [
        json.loads((d / "meta.json").read_text())
        for d in (synth.data_dir / "features").iterdir()
        if (d / "meta.json").exists()
    ]
    ours = [k for k in keys if k["backbone"] == manifest.backbone]
    assert [k["weights"] for k in ours] == [f"{manifest.weights.sha256}+{companion.sha256}"]
    model, _ = load_artifact(synth.data_dir, model_id)
    assert model.output_shape == (None, len(VOCAB))
    card = (synth.data_dir / "models" / model_id / CARD_FILE).read_text()
    assert "with mobilenet_v2_0.35's pooled last layer" in card
    assert "weights: file; companion's: file" in card
    assert "- mobilenet_v2_0.35's weights: MobileNetV2 α 0.35 ImageNet weights" in card
    with pytest.raises(ConfigError, match="runs two networks"):
        stages.train_model(synth, TrainConfig(**{**config.__dict__, "fine_tune": 2}))


# Keras warns once per layer it cannot fill before the shape mismatch that we turn into an error.
@pytest.mark.filterwarnings("ignore:Skipping nested container:UserWarning")
def test_wrong_or_missing_weights_fail_loudly(shared_dir, tmp_path):
    spec = BACKBONES["mobilenet_v2_1.0"]
    wrong = resolve_weights(
        spec, str(shared_dir / "weights" / "mobilenet_v2_0.35_224_no_top.weights.h5"), tmp_path
    )
    with pytest.raises(ConfigError):
        build_backbone(spec, (64, 64), wrong)
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_weights(spec, str(tmp_path / "nope.h5"), tmp_path)
    assert resolve_weights(spec, "auto", tmp_path).kind == "imagenet"  # no local file there
    with pytest.raises(ConfigError, match="no pretrained weights"):
        resolve_weights(BACKBONES["custom_cnn"], "imagenet", tmp_path)


def test_caffe_layer_matches_keras_resnet_preprocessing():
    x = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    expected = keras.applications.resnet50.preprocess_input(x.copy())
    assert np.allclose(CaffePreprocess()(x), expected, atol=1e-4)


def test_evaluate_on_a_labelled_folder(synth, tmp_path):
    stages.train_model(
        synth, TrainConfig(backbone="mobilenet_v2_0.35", **{**TINY, "input_size": (64, 48)})
    )
    from tests.synthetic import labelled_folder

    folder = tmp_path / "held-out"
    labelled_folder(
        folder,
        16,
        seed=9000,
        other="Drama",
        extra_rows=[{"file": "missing.png", "genres": "Drama"}],
    )
    result = stages.evaluate_model(synth, "latest", folder=folder)
    assert result.summary["n_test"] == 16 and len(result.skipped) == 1
    table = result.table.set_index("genre")
    assert table.loc["Action", "support"] == 8 and table.loc["Action", "ap"] > 0.5
    assert result.summary["test"]["macro_map"] > result.summary["prior"]["macro_map"]
