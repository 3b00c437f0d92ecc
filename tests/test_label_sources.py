"""Figures per label source, the lockbox of the transfer protocol, and the trainer's
label-convention indicators."""

from __future__ import annotations

import numpy as np
import pytest
from anigenre.core import metrics as m
from anigenre.core.splits import lockbox_mask


def test_by_label_source_pools_and_splits_by_source():
    Y = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
    P = np.array([[0.9, 0.1, 0.8], [0.2, 0.7, 0.1], [0.6, 0.4, 0.3], [0.1, 0.2, 0.9]])
    sources = ["anilist", "mal-mapped", "anilist", None]
    t = np.full(3, 0.5)
    out = m.by_label_source(P, Y, sources, t)
    assert set(out) == {"pooled", "anilist", "mal-mapped"}
    assert out["pooled"]["n"] == 4 and out["anilist"]["n"] == 2 and out["mal-mapped"]["n"] == 1
    rows = np.array([0, 2])
    for key, f in m.HEADLINE.items():
        assert out["anilist"][key] == f(P[rows], Y[rows], t)
        assert out["pooled"][key] == f(P, Y, t)
    assert out["anilist"]["true_per_poster"] == 2.0
    assert out["anilist"]["predicted_per_poster"] == 1.5  # 0.9, 0.8 | 0.6
    with pytest.raises(ValueError):
        m.by_label_source(P, Y, sources[:2], t)


def test_lockbox_takes_whole_groups_of_one_convention_and_is_stable():
    rng = np.random.default_rng(0)
    groups = [f"g{i // 2}" for i in range(400)]
    sources = ["mal-mapped" if i // 2 % 3 else "anilist" for i in range(400)]
    sources[5] = "anilist"  # group g2 mixes conventions: never in the lockbox
    box = lockbox_mask(groups, sources)
    assert 0.2 < box[np.array(sources) == "mal-mapped"].mean() < 0.5
    assert not box[np.array(sources) == "anilist"].any() and not box[4:6].any()
    for g in set(groups):  # whole groups only
        rows = [i for i, x in enumerate(groups) if x == g]
        assert len(set(box[rows])) == 1
    # A group's place does not depend on the other rows.
    keep = rng.permutation(400)[:150]
    sub = lockbox_mask([groups[i] for i in keep], [sources[i] for i in keep])
    pure = {
        g
        for g in groups
        if all(s == "mal-mapped" for x, s in zip(groups, sources, strict=True) if x == g)
    }
    for j, i in enumerate(keep):
        if groups[i] in pure:
            assert sub[j] == box[i]


def test_convention_indicators_and_drop_inputs_match_zero_indicators():
    import keras
    from anigenre.models.heads import build_head
    from anigenre.models.train import convention_indicators, drop_inputs, other_conventions

    sources = ["mal-mapped", "anilist", None, "anilist-paper-table4"]
    others = other_conventions(sources, "mal-mapped")
    assert others == ("anilist", "anilist-paper-table4")
    assert other_conventions(sources, None) == () and other_conventions(None, "mal-mapped") == ()
    assert other_conventions(["anilist", None], "mal-mapped") == ()  # no row to learn it from
    ind = convention_indicators(sources, others)
    assert ind.tolist() == [[0, 0], [1, 0], [0, 0], [0, 1]]
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(1)
    for hidden in (0, 8):
        head = build_head(4, 3, hidden=hidden, scale=0.5, conventions=2)
        for layer in head.layers:  # non-trivial weights everywhere
            if layer.weights:
                layer.set_weights([rng.normal(size=w.shape) for w in layer.get_weights()])
        x = rng.normal(size=(5, 4)).astype(np.float32)
        served = drop_inputs(head)
        assert served.input_shape == (None, 4)
        zeros = np.zeros((5, 2), np.float32)
        np.testing.assert_allclose(
            served.predict_on_batch(x), head.predict_on_batch([x, zeros]), rtol=1e-5, atol=1e-6
        )
        other = head.predict_on_batch([x, np.ones((5, 2), np.float32)])
        assert not np.allclose(other, served.predict_on_batch(x))


def test_import_keeps_label_source_and_fills_it_in_on_reimport(tmp_path):
    """A folder's label_source reaches the dataset; a dataset written before the column
    existed reads as nulls, and importing the folder again fills them in."""
    import pandas as pd
    import pyarrow.parquet as pq
    from anigenre.config import load_settings
    from anigenre.core.dataset_store import DATASET_PATH, read_dataset
    from anigenre.jobs import stages

    from tests import images as gen

    folder = tmp_path / "in"
    (folder / "images").mkdir(parents=True)
    (folder / "images" / "a.jpg").write_bytes(gen.encode("JPEG"))
    (folder / "images" / "b.png").write_bytes(gen.encode("PNG", color=(0, 0, 255)))
    pd.DataFrame(
        {
            "file": ["a.jpg", "b.png"],
            "genres": ["Action|Drama", "Comedy"],
            "title": ["Alpha", "Beta"],
            "label_source": ["mal-mapped", "anilist"],
        }
    ).to_csv(folder / "labels.csv", index=False)
    settings = load_settings(overrides={"data_dir": tmp_path / "data"}, env={})
    stages.import_dataset(settings, folder)
    path = tmp_path / "data" / DATASET_PATH
    dataset, _ = read_dataset(path)
    assert dict(zip(dataset["title"], dataset["label_source"], strict=True)) == {
        "Alpha": "mal-mapped",
        "Beta": "anilist",
    }
    # As a dataset from before label sources were kept: the column gone.
    table = pq.read_table(path)
    pq.write_table(
        table.drop(["label_source"]).replace_schema_metadata(table.schema.metadata), path
    )
    old, _ = read_dataset(path)
    assert old["label_source"].isna().all()
    stages.import_dataset(settings, folder)
    again, _ = read_dataset(path)
    assert len(again) == 2
    assert set(again["label_source"]) == {"mal-mapped", "anilist"}
    assert again.set_index("sha256")["split"].equals(old.set_index("sha256")["split"])


def test_training_with_a_label_convention_serves_one_input_and_reports_per_source(
    tmp_path, shared_dir
):
    """Rows of the other convention train with their indicator; the model that is saved
    reads images alone, and the report has the test figures per label source."""
    from anigenre.core.genres import Vocabulary
    from anigenre.models.config import TrainConfig
    from anigenre.models.train import train

    from tests.synthetic import synthetic_dataset

    dataset = synthetic_dataset(tmp_path, n=64)
    dataset["label_source"] = ["mal-mapped" if i % 3 else "anilist" for i in range(len(dataset))]
    config = TrainConfig(
        backbone="mobilenet_v2_0.35",
        input_size=(64, 48),
        epochs=5,
        batch_size=16,
        bootstrap=20,
        ensemble=2,
        label_convention="mal-mapped",
    )
    outcome = train(
        dataset,
        Vocabulary(),
        data_dir=tmp_path,
        weights_dir=shared_dir / "weights",
        config=config,
        max_pixels=10**8,
    )
    head = outcome.model.layers[-1]
    assert not isinstance(head.input_shape[0], tuple)  # one input: the features
    assert set(outcome.report["by_label_source"]) == {"pooled", "anilist", "mal-mapped"}
    test = dataset[dataset["split"] == "test"]
    assert outcome.report["by_label_source"]["pooled"]["n"] == len(test)
    assert outcome.probs["test"].shape == (len(test), len(Vocabulary()))
