"""Predictions you can trust: the decision rule's expected rates beside a run's observed
ones (summary.parquet and report.html), and the model card (MODEL_CARD.md, `models card`)."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest
from anigenre.core.metrics import MIN_INTERVAL_POSTERS
from anigenre.core.run_summary import SHIFT_ALPHA, decision_rows, summarize
from anigenre.models.manifest import Manifest

GENRES = ("Action", "Drama", "Comedy", "Horror")


def run_summary(predicted: list[list[str]]) -> pd.DataFrame:
    rows = pd.DataFrame(
        {
            "status": ["ok"] * len(predicted),
            "error": [None] * len(predicted),
            "predicted": predicted,
            "top_genres": [p or ["Comedy"] for p in predicted],
            **{f"p_{g}": [0.5] * len(predicted) for g in GENRES},
        }
    )
    return summarize(rows, GENRES, [f"p_{g}" for g in GENRES])


def manifest_of(**recorded) -> Manifest:
    """A manifest read from a file that records only these keys (and an id)."""
    return Manifest.from_json({"model_id": "m", "created": "2026-01-01T00:00:00", **recorded})


def test_decision_rows_set_observed_rates_beside_expected_and_flag_shifts():
    # 10 posters: Action on 5 (expected 0.2: 2.5x), Drama on 3 (expected 0.2: 1.5x),
    # Comedy on 1 (expected 0.6: 0.17x, the one an exact test tells from chance at 10
    # posters, after Holm), Horror on none (expected 0).
    predicted = [["Action", "Drama"]] * 3 + [["Action"]] * 2 + [["Comedy"]] + [[]] * 4
    manifest = manifest_of(
        thresholds={"Action": 0.3, "Drama": 0.4, "Comedy": 0.35, "Horror": 0.9},
        expected_rates={"Action": 0.2, "Drama": 0.2, "Comedy": 0.6, "Horror": 0.0},
        train_prevalence={"Action": 0.18, "Drama": 0.22, "Comedy": 0.5, "Horror": 0.01},
        expected_genres_per_poster=1.0,
        train_genres_per_poster=0.91,
    )
    table = decision_rows(manifest, run_summary(predicted), GENRES)
    per_genre = table[table.section == "decision"].set_index("name")
    assert per_genre["observed"].to_dict() == pytest.approx(
        {"Action": 0.5, "Drama": 0.3, "Comedy": 0.1, "Horror": 0.0}
    )
    assert per_genre["count"].to_dict() == {"Action": 5, "Drama": 3, "Comedy": 1, "Horror": 0}
    assert per_genre.loc["Action", "ratio"] == pytest.approx(2.5)
    assert per_genre["flagged"].tolist() == [False, False, True, False]
    assert per_genre["threshold"].to_dict() == manifest.thresholds
    assert per_genre["train_rate"].to_dict() == manifest.train_prevalence
    mean = table[table.section == "genres_per_poster"].set_index("name").loc["mean"]
    assert mean["observed"] == pytest.approx(0.9) and mean["expected"] == 1.0
    assert mean["count"] == 9 and mean["train_rate"] == 0.91 and pd.isna(mean["flagged"])


def test_decision_rows_of_an_older_model_leave_expected_unrecorded():
    manifest = manifest_of(thresholds=dict.fromkeys(GENRES, 0.4), train_prevalence={})
    table = decision_rows(manifest, run_summary([["Action"], []]), GENRES)
    assert table["expected"].isna().all() and table["ratio"].isna().all()
    assert table["flagged"].isna().all()  # unknown, not "fine"
    assert table.set_index("name").loc["Action", "observed"] == 0.5
    assert table["p_value"].isna().all() and SHIFT_ALPHA == 0.05


# --- with a trained model --------------------------------------------------------------

pytest.importorskip("keras")  # part of the pinned install; never absent in CI

from anigenre.core.dataset_store import DATASET_PATH, read_dataset  # noqa: E402
from anigenre.jobs import stages  # noqa: E402
from anigenre.models.artifacts import CARD_FILE, MODELS_DIR  # noqa: E402
from anigenre.models.card import FEW_POSITIVES, NOT_RECORDED  # noqa: E402
from anigenre.models.registry import check_artifact, model_card, write_checksums  # noqa: E402

from tests.procs import run_cli  # noqa: E402
from tests.synthetic import poster_folder, trained_tiny_model  # noqa: E402

SECTIONS = (
    "## Intended use",
    "## Out-of-scope use",
    "## Training data",
    "## Held-out performance",
    "## Decision rule (the `predicted` column)",
    "## Known failure modes",
    "## Licences and data terms",
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shared_dir):
    return trained_tiny_model(tmp_path_factory.mktemp("trust-data"), shared_dir)


def artifact(settings, model_id):
    folder = settings.data_dir / MODELS_DIR / model_id
    manifest = json.loads((folder / "manifest.json").read_text())
    return folder, manifest, json.loads((folder / "metrics.json").read_text())


def table_rows(card: str, section: str) -> dict[str, list[str]]:
    """The Markdown table rows of one section of the card, by their first cell."""
    body = card.split(section, 1)[1].split("\n## ", 1)[0]
    rows = [
        [c.strip() for c in line.strip("|").split("|")]
        for line in body.splitlines()
        if line.startswith("| ") and not line.startswith("|---")
    ]
    return {r[0]: r[1:] for r in rows[1:]}


def test_manifest_records_the_rule_rates_and_training_data(trained):
    settings, model_id = trained
    _, manifest, _ = artifact(settings, model_id)
    rule = manifest["decision_rule"]
    assert rule["rule"] == "global-rate-capped" and rule["tuned_on"] == "validation"
    dataset, vocab = read_dataset(settings.data_dir / DATASET_PATH)
    assert rule["n_posters"] == int((dataset["split"] == "val").sum())
    assert set(manifest["expected_rates"]) == set(manifest["thresholds"]) == set(vocab.genres)
    assert manifest["expected_genres_per_poster"] == pytest.approx(
        sum(manifest["expected_rates"].values())
    )
    train = dataset[dataset["split"] == "train"]
    Y = np.stack(train["labels"].to_numpy())
    assert manifest["train_genres_per_poster"] == pytest.approx(Y.sum(axis=1).mean())
    recorded = manifest["dataset"]
    assert recorded["sources"] == {"import": len(dataset)}
    assert recorded["genre_counts"]["train"] == dict(
        zip(vocab.genres, Y.sum(axis=0).tolist(), strict=True)
    )
    assert recorded["years"] is None  # the synthetic posters have no year


def test_report_sets_each_genres_observed_rate_beside_the_expected_one(trained, tmp_path):
    settings, model_id = trained
    _, manifest, _ = artifact(settings, model_id)
    plan = stages.plan_prediction(
        settings,
        [poster_folder(tmp_path / "in", 12, seed=500)],
        model_id=model_id,
        out_dir=tmp_path / "out",
    )
    stages.predict_in_process(settings, plan)
    report = stages.report_run(settings, plan.run_id)

    summary = pd.read_parquet(report.folder / "summary.parquet")  # as a user reads it
    decisions = summary[summary.section == "decision"].set_index("name")
    rows = pd.read_parquet(plan.parts_dir.parent, filters=[("run_id", "==", plan.run_id)])
    predicted = rows["predicted"].map(list)
    assert list(decisions.index) == manifest["genres"]
    for genre in manifest["genres"]:
        row = decisions.loc[genre]
        observed = predicted.map(lambda g, x=genre: x in g).mean()
        expected = manifest["expected_rates"][genre]
        assert row["observed"] == pytest.approx(observed)
        assert row["expected"] == expected and row["threshold"] == manifest["thresholds"][genre]
        assert row["train_rate"] == manifest["train_prevalence"][genre]
        if expected > 0:
            assert row["ratio"] == pytest.approx(observed / expected)
        assert row["flagged"] == (row["p_value"] < SHIFT_ALPHA)  # Holm-adjusted, exact
    mean = summary[summary.section == "genres_per_poster"].iloc[0]
    assert mean["observed"] == pytest.approx(predicted.map(len).mean())
    assert mean["expected"] == pytest.approx(manifest["expected_genres_per_poster"])
    # Other sections keep their counts and have no decision figures.
    totals = summary[summary.section == "totals"]
    assert totals.set_index("name")["count"]["ok"] == 12 and totals["expected"].isna().all()

    page = (report.folder / "report.html").read_text()
    assert "Genres predicted per poster: expected" in page and "observed / expected" in page
    assert "Expected rates measured on" in page


def older_copy(settings, model_id, tmp_path):
    """Settings of a data dir holding a copy of the model as trained before the manifest
    recorded expected rates and training data, and before cards were written."""
    from anigenre.config import load_settings

    data = tmp_path / "old-data"
    folder = data / MODELS_DIR / model_id
    shutil.copytree(settings.data_dir / MODELS_DIR / model_id, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    for key in ("expected_rates", "expected_genres_per_poster", "train_genres_per_poster"):
        manifest.pop(key)
    manifest.pop("decision_rule")
    manifest["dataset"] = {"fingerprint": manifest["dataset"]["fingerprint"], "rows": {}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    metrics = json.loads((folder / "metrics.json").read_text())
    metrics["bootstrap_95"].pop("per_genre_ap")
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / CARD_FILE).unlink()
    write_checksums(folder)  # as such a model was saved, not a hand edit
    overrides = {"data_dir": data, "shared_dir": settings.shared_dir}
    return load_settings(overrides=overrides, env={}), folder


def test_report_of_an_older_model_says_expected_rates_were_not_recorded(trained, tmp_path):
    settings, model_id = trained
    old, _ = older_copy(settings, model_id, tmp_path)
    plan = stages.plan_prediction(
        old,
        [poster_folder(tmp_path / "in", 3, seed=700)],
        model_id=model_id,
        out_dir=tmp_path / "out",
    )
    stages.predict_in_process(old, plan)
    report = stages.report_run(old, plan.run_id)
    summary = pd.read_parquet(report.folder / "summary.parquet")
    decisions = summary[summary.section == "decision"]
    assert decisions["expected"].isna().all() and decisions["observed"].notna().all()
    page = (report.folder / "report.html").read_text()
    assert "not recorded" in page and "Rule: not recorded (an older model)." in page


def test_card_is_written_at_train_time_with_the_manifests_figures(trained):
    settings, model_id = trained
    folder, manifest, metrics = artifact(settings, model_id)
    card = (folder / CARD_FILE).read_text()
    assert card.startswith(f"# Model card: {model_id}\n")
    positions = [card.index(s) for s in SECTIONS]
    assert positions == sorted(positions)  # every section, in order

    performance = table_rows(card, "## Held-out performance")
    per_genre = {r["genre"]: r for r in metrics["test"]["per_genre"]}
    intervals = metrics["bootstrap_95"]["per_genre_ap"]
    for genre in manifest["genres"]:
        support, ap, ci, _ = performance[genre]
        assert int(support) == per_genre[genre]["support"]
        if per_genre[genre]["ap"] is None:
            assert ap == "-" and ci == "-"
        else:
            assert ap == f"{per_genre[genre]['ap']:.3f}"
            if genre in intervals:
                lo, hi = intervals[genre]
                assert ci == f"[{lo:.3f}, {hi:.3f}]" and lo <= per_genre[genre]["ap"] + 1e-9
            else:  # no interval below MIN_INTERVAL_POSTERS test posters, nor a made-up one
                assert ci == "-" and metrics["test"]["n"] < MIN_INTERVAL_POSTERS
    summary = manifest["metrics_summary"]
    for row, key in (("model", "test"), ("prior", "prior")):
        cell = performance[row][0]
        assert cell.startswith(f"{summary[key]['macro_map']:.3f}")
        assert ("[" in cell) == ("macro_map" in summary[f"{key}_ci95"])

    decisions = table_rows(card, "## Decision rule")
    for genre in manifest["genres"]:
        threshold, expected, prevalence = decisions[genre]
        assert threshold == f"{manifest['thresholds'][genre]:.3f}"
        assert expected == f"{manifest['expected_rates'][genre]:.3f}"
        assert prevalence == f"{manifest['train_prevalence'][genre]:.3f}"

    data = table_rows(card, "## Training data")
    counts = manifest["dataset"]["genre_counts"]
    assert data["Action"] == [str(counts[s]["Action"]) for s in ("train", "val", "test")]
    assert "import 60" in card and "Years: no poster has a year" in card

    support = {g: per_genre[g]["support"] for g in manifest["genres"]}
    rare = [f"{g} ({n})" for g, n in support.items() if 0 < n < FEW_POSITIVES]
    absent = [g for g, n in support.items() if n == 0]
    failure = card.split("## Known failure modes", 1)[1]
    assert f"fewer than {FEW_POSITIVES} test positives: {', '.join(rare)}." in failure
    assert f"no held-out figure at all: {', '.join(absent)}." in failure
    assert "--include-seen" in failure and "Thumbnails" in failure
    assert "Pretrained weights: none" in card and "AniList's terms of use" in card
    training = manifest["training"]
    assert f"learning rate {training['learning_rate']}\n" in card
    assert ("unit mean L2 norm" in card) == (training["feature_scale"] is not None)


def test_card_of_an_older_model_is_generated_and_says_what_was_not_recorded(trained, tmp_path):
    settings, model_id = trained
    old, folder = older_copy(settings, model_id, tmp_path)
    text, path, written = model_card(old.data_dir, "latest")
    assert written and path == folder / CARD_FILE and path.read_text() == text
    for section in SECTIONS:
        assert section in text
    assert "Sources (dataset `source` column): not recorded" in text
    assert "Positives per genre and split: not recorded." in text
    assert "- Rule: not recorded" in text
    performance = table_rows(text, "## Held-out performance")
    assert performance["Action"][2] == NOT_RECORDED  # no per-genre interval recorded
    assert check_artifact(old.data_dir, model_id).model_id == model_id  # still whole
    # A second call leaves the file as it is.
    assert model_card(old.data_dir, model_id)[2] is False


def test_cli_models_card_latest_prints_the_card(trained):
    settings, model_id = trained
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANIGENRE_")}
    env["ANIGENRE_DATA_DIR"] = str(settings.data_dir)
    result = run_cli("models", "card", "latest", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (settings.data_dir / MODELS_DIR / model_id / CARD_FILE).read_text()
    missing = run_cli("models", "card", "no-such-model", env=env)
    assert missing.returncode != 0 and "anigenre models list" in missing.stderr
