"""Training-time augmentation: mirror images' features train the heads, nothing changes
at serving time."""

from __future__ import annotations

import pytest

keras = pytest.importorskip("keras")  # part of the pinned install; never absent in CI

from anigenre.config import load_settings  # noqa: E402
from anigenre.jobs import stages  # noqa: E402
from anigenre.models.config import TrainConfig  # noqa: E402

from tests.synthetic import synthetic_dataset  # noqa: E402

TINY = {
    "backbone": "mobilenet_v2_0.35",
    "input_size": (64, 48),
    "epochs": 5,
    "batch_size": 16,
    "bootstrap": 20,
    "patience": 5,
    "ensemble": 1,
}


@pytest.fixture(scope="module")
def synth(tmp_path_factory, shared_dir):
    data = tmp_path_factory.mktemp("synth")
    synthetic_dataset(data)
    return load_settings(overrides={"data_dir": data, "shared_dir": shared_dir}, env={})


def test_flip_augment_embeds_training_mirrors_only_and_serves_the_plain_view(synth):
    _, plain = stages.train_model(synth, TrainConfig(**TINY, augment=()))
    rows = plain.dataset.rows
    _, flipped = stages.train_model(synth, TrainConfig(**TINY, augment=("flip",)))
    # The plain features come from the cache; the mirrors only for the training posters.
    assert flipped.training.features_computed == rows["train"]
    assert flipped.tta == ()  # served as one view
    assert flipped.config["augment"] == ["flip"]
    assert flipped.metrics_summary != plain.metrics_summary  # the heads saw other rows
    # Flip TTA, whose copies also train, now needs the mirrors of val and test only.
    _, tta = stages.train_model(synth, TrainConfig(**TINY, tta=("flip",), augment=("flip",)))
    assert tta.training.features_computed == rows["val"] + rows["test"]


def test_augment_is_validated_and_travels_with_the_config():
    with pytest.raises(ValueError, match="training augmentation"):
        TrainConfig(augment=("rotate",))
    config = TrainConfig(augment=("flip",))
    assert TrainConfig.from_dict(config.as_dict()) == config
    old = config.as_dict()
    del old["augment"]  # a config recorded before the field: no augmentation
    assert TrainConfig.from_dict(old).augment == ()


def test_the_zoom_view_is_the_middle_of_the_poster_filling_the_input(tmp_path):
    import numpy as np
    from anigenre.models.embed import embed_files
    from PIL import Image

    img = np.zeros((230, 161, 3), np.uint8)
    img[:, :8] = 255  # a white band at the left edge (5%), outside the middle 87%
    Image.fromarray(img).save(tmp_path / "p.png")
    seen = []
    keep = lambda x: seen.append(x) or x.reshape(len(x), -1)[:, :1].astype(np.float32)  # noqa: E731
    embed_files(keep, [tmp_path / "p.png"], (100, 70), "stretch", max_pixels=10**8, zoom=1.15)
    embed_files(keep, [tmp_path / "p.png"], (100, 70), "stretch", max_pixels=10**8)
    zoomed, plain = seen
    assert zoomed.shape == plain.shape == (1, 100, 70, 3)
    assert plain[0, :, 1].min() > 200 and zoomed[0, :, 1].max() < 50
