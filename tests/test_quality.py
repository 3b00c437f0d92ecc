"""Honest evaluation: seen posters left out by default, one definition of the baselines, a
progress bar that counts the epochs of one head."""

from __future__ import annotations

import html
import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("keras")  # part of the pinned install; never absent in CI

from anigenre.config import load_settings  # noqa: E402
from anigenre.core.dataset_store import DATASET_PATH, read_dataset  # noqa: E402
from anigenre.core.errors import DataError  # noqa: E402
from anigenre.core.metrics import MIN_INTERVAL_POSTERS  # noqa: E402
from anigenre.core.seen import SEEN_KEY  # noqa: E402
from anigenre.jobs import stages  # noqa: E402
from anigenre.models.artifacts import MODELS_DIR  # noqa: E402
from anigenre.models.config import TrainConfig  # noqa: E402
from anigenre.models.registry import write_checksums  # noqa: E402

from tests.procs import run_cli  # noqa: E402
from tests.synthetic import synthetic_dataset  # noqa: E402

TINY = dict(
    backbone="custom_cnn", weights="none", input_size=(40, 32), epochs=3, bootstrap=20, patience=5
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shared_dir):
    data = tmp_path_factory.mktemp("quality-data")
    synthetic_dataset(data, n=60)
    settings = load_settings(overrides={"data_dir": data, "shared_dir": shared_dir}, env={})
    model_id, manifest = stages.train_model(settings, TrainConfig(**TINY))
    return settings, model_id, manifest


def dataset_folder(settings, folder, splits):
    """A labelled folder (labels.csv + images/) of the dataset's posters in ``splits``."""
    rows, vocab = read_dataset(settings.data_dir / DATASET_PATH)
    rows = rows[rows["split"].isin(splits)]
    (folder / "images").mkdir(parents=True)
    for r in rows.itertuples():
        shutil.copy(settings.data_dir / r.path, folder / "images" / f"{r.sha256[:12]}.png")
    genres = ["|".join(g) for g in vocab.decode(np.stack(rows["labels"].to_numpy()))]
    files = [f"{s[:12]}.png" for s in rows["sha256"]]
    pd.DataFrame({"file": files, "genres": genres}).to_csv(folder / "labels.csv", index=False)
    counts = rows["split"].value_counts()
    return int(counts.get("train", 0) + counts.get("val", 0)), len(rows)


def test_manifest_records_the_decision_rule_and_rates_it_keeps(trained):
    _, _, manifest = trained
    assert manifest.decision_rule["rule"] == "global-rate-capped"
    cap = manifest.decision_rule["cap"]
    for genre, rate in manifest.expected_rates.items():
        # measured on validation, where the cap is enforced
        assert rate <= cap * manifest.train_prevalence[genre] + 1e-9


def test_manifest_records_every_train_and_val_poster(trained):
    settings, _, manifest = trained
    rows, _ = read_dataset(settings.data_dir / DATASET_PATH)
    expected = sorted(rows.loc[rows["split"].isin(["train", "val"]), "sha256"])
    assert list(manifest.seen or ()) == expected and len(expected) < len(rows)


def test_evaluate_scores_only_unseen_posters_unless_asked(trained, tmp_path):
    settings, model_id, _ = trained
    n_seen, n = dataset_folder(settings, tmp_path / "mixed", ["train", "val", "test"])
    result = stages.evaluate_model(settings, model_id, folder=tmp_path / "mixed")
    assert result.notes[0] == (
        f"{n_seen} of {n} posters were in the model's training or validation data; "
        f"scored on {n - n_seen}"
    )
    assert result.summary["n_test"] == n - n_seen

    everything = stages.evaluate_model(
        settings, model_id, folder=tmp_path / "mixed", include_seen=True
    )
    assert everything.summary["n_test"] == n and "--include-seen" in everything.notes[0]

    dataset_folder(settings, tmp_path / "seen", ["train"])
    with pytest.raises(DataError, match="--include-seen"):
        stages.evaluate_model(settings, model_id, folder=tmp_path / "seen")


def test_a_model_without_the_record_is_scored_on_all_and_says_so(trained, tmp_path):
    settings, model_id, _ = trained
    old = settings.data_dir / MODELS_DIR / f"{model_id}-old"
    shutil.copytree(settings.data_dir / MODELS_DIR / model_id, old)
    manifest = json.loads((old / "manifest.json").read_text())
    for key in (SEEN_KEY, "prior_thresholds", "prior_global_threshold"):
        del manifest[key]
    manifest["model_id"] = old.name
    (old / "manifest.json").write_text(json.dumps(manifest))
    write_checksums(old)  # as such a model was saved, not a hand edit
    _, n = dataset_folder(settings, tmp_path / "mixed", ["train", "test"])
    result = stages.evaluate_model(settings, old.name, folder=tmp_path / "mixed")
    assert result.summary["n_test"] == n
    assert result.notes[0].startswith(f"model {old.name} predates the record")
    assert "prior's are tuned on these posters" in result.notes[1]


def test_train_and_evaluate_give_the_same_baseline_figures(trained):
    settings, model_id, manifest = trained
    result = stages.evaluate_model(settings, model_id)  # the dataset's test split
    trained_summary = manifest.metrics_summary
    assert result.summary["n_test"] == trained_summary["n_test"]
    assert result.summary["prior"] == trained_summary["prior"]
    as_json = lambda d: json.loads(json.dumps(d))  # noqa: E731 - intervals: tuples vs lists
    assert as_json(result.summary["prior_ci95"]) == as_json(trained_summary["prior_ci95"])
    metrics = json.loads((settings.data_dir / MODELS_DIR / model_id / "metrics.json").read_text())
    top_k = metrics["baselines"]["top_k_frequent"]
    assert result.report["baselines"]["top_k_frequent"] == top_k
    # Per-genre AP intervals too: the same resampling of the same posters.
    intervals = metrics["bootstrap_95"]["per_genre_ap"]
    if result.summary["n_test"] < MIN_INTERVAL_POSTERS:  # core.metrics: none made up
        assert intervals == {}
    else:
        assert {"Action", "Drama", "Comedy"} <= intervals.keys()  # the genres test posters have
    assert as_json(result.report["bootstrap_95"]["per_genre_ap"]) == intervals
    table = result.table.set_index("genre")
    for genre, (lo, hi) in intervals.items():
        assert table.loc[genre, ["ap_lo", "ap_hi"]].tolist() == [round(lo, 3), round(hi, 3)]


def test_report_scores_unseen_labelled_posters_and_labels_include_seen(trained, tmp_path):
    settings, model_id, _ = trained
    n_seen, n = dataset_folder(settings, tmp_path / "mixed", ["train", "val", "test"])
    plan = stages.plan_prediction(
        settings, [tmp_path / "mixed" / "images"], model_id=model_id, out_dir=tmp_path / "out"
    )
    stages.predict_in_process(settings, plan)

    report = stages.report_run(settings, plan.run_id)
    line = (
        f"{n_seen} of {n} posters were in the model's training or validation data; "
        f"scored on {n - n_seen}"
    )
    assert report.seen_note == line
    assert report.per_genre_ap["support"].max() <= n - n_seen
    page = (report.folder / "report.html").read_text()
    assert html.escape(line) in page and "including posters the model was trained on" not in page

    # Each genre's threshold and expected rate from the manifest, beside the run's rate.
    manifest = json.loads((settings.data_dir / MODELS_DIR / model_id / "manifest.json").read_text())
    decisions = report.decisions.set_index("genre")
    rows = pd.read_parquet(plan.parts_dir.parent, filters=[("run_id", "==", plan.run_id)])
    for genre in ("Action", "Drama"):
        observed = rows["predicted"].map(lambda g, x=genre: x in list(g)).mean()
        assert decisions.loc[genre, "observed"] == pytest.approx(observed)
        assert decisions.loc[genre, "threshold"] == manifest["thresholds"][genre]
        assert decisions.loc[genre, "expected"] == manifest["expected_rates"][genre]
    assert "Decisions: thresholds and rates" in page and "1.25x its training" in page

    everything = stages.report_run(settings, plan.run_id, include_seen=True)
    rows, vocab = read_dataset(settings.data_dir / DATASET_PATH)
    supports = np.stack(rows["labels"].to_numpy()).sum(axis=0)
    got = everything.per_genre_ap.set_index("genre")["support"]
    assert [got[g] for g in vocab.genres] == supports.tolist()
    page = (everything.folder / "report.html").read_text()
    assert "including posters the model was trained on" in page and "--include-seen" in page


def test_cli_evaluate_prints_the_seen_line_and_takes_include_seen(trained, tmp_path):
    settings, model_id, _ = trained
    n_seen, n = dataset_folder(settings, tmp_path / "mixed", ["train", "val", "test"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANIGENRE_")}
    env["ANIGENRE_DATA_DIR"] = str(settings.data_dir)
    args = ("evaluate", model_id, "--folder", str(tmp_path / "mixed"))
    result = run_cli(*args, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"{n_seen} of {n} posters were in the model's training or validation data" in (
        result.stdout
    )
    seen = run_cli(*args, "--include-seen", env=env, timeout=300)
    assert seen.returncode == 0 and f"scored on all {n} (--include-seen" in seen.stdout


class FakeBar:
    def __init__(self, total):
        self.total, self.n, self.most, self.descriptions = total, 0, 0, []

    def update(self, k):
        self.n += k
        self.most = max(self.most, self.n)

    def reset(self):
        self.n = 0

    def set_description(self, text):
        self.descriptions.append(text)

    def set_postfix(self, **_):
        pass


def test_progress_bar_counts_the_epochs_of_one_head(trained):
    settings, _, _ = trained
    epochs = 3
    bar = FakeBar(total=epochs)
    config = TrainConfig(
        backbone="mobilenet_v2_0.35",
        input_size=(64, 48),
        epochs=epochs,
        patience=epochs,
        ensemble=2,
        bootstrap=10,
    )
    stages.train_model(settings, config, bar)
    assert bar.most == epochs <= bar.total  # without the restart: 2 heads x 3 = 6 epochs
    assert bar.descriptions == ["train head 1/2", "train head 2/2"]
