"""Training and evaluation stages: the dataset into a registered model, and its scores."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from config import Settings
from core import dataset as ds
from core.dataset_store import DATASET_PATH, read_dataset
from core.errors import DataError


def train_model(settings: Settings, config, bar=None) -> tuple[str, dict]:
    """Train on processed/dataset.parquet and register the artifact: (model id, manifest)."""
    import datetime as dt

    from models import registry
    from models.manifest import build_manifest
    from models.train import train

    dataset, vocab = read_dataset(settings.data_dir / DATASET_PATH)
    outcome = train(
        dataset,
        vocab,
        data_dir=settings.data_dir,
        weights_dir=settings.weights_dir or settings.shared_dir / "weights",
        config=config,
        max_pixels=settings.max_image_pixels,
        bar=bar,
    )
    created = dt.datetime.now(dt.UTC).replace(microsecond=0)
    fingerprint = ds.fingerprint(dataset)
    model_id = registry.new_model_id(outcome.spec.name, created, fingerprint)
    manifest = build_manifest(model_id, created, outcome, config, dataset, vocab, fingerprint)
    registry.save_artifact(settings.data_dir, model_id, outcome.model, manifest, outcome.report)
    return model_id, manifest


@dataclass
class Evaluation:
    table: pd.DataFrame
    summary: dict
    report: dict
    skipped: list[tuple[str, str]]


def evaluate_model(
    settings: Settings, model_id: str, *, dataset: Path | None = None, folder: Path | None = None
) -> Evaluation:
    """Score a registered model on a dataset's test split or on a labelled folder."""
    import numpy as np

    from core import metrics
    from core.importer import parse_genres, read_labels
    from models.predictor import Predictor
    from models.registry import load_artifact, vocabulary_of

    model, manifest = load_artifact(settings.data_dir, model_id)
    vocab = vocabulary_of(manifest)
    if folder is not None:
        records = read_labels(Path(folder) / "labels.csv")
        paths = [Path(folder) / "images" / r["file"] for r in records]
        Y = vocab.encode([parse_genres(r) for r in records])
    else:
        path = dataset or settings.data_dir / DATASET_PATH
        rows, stored = read_dataset(path)
        if stored != vocab:
            raise DataError(f"{path} uses other genres than model {manifest['model_id']}")
        rows = rows[rows["split"] == "test"]
        root = Path(path).resolve().parent.parent  # paths are relative to the data dir
        paths = [root / p for p in rows["path"]]
        Y = np.stack(rows["labels"].to_numpy()) if len(rows) else np.zeros((0, len(vocab)))
    predictor = Predictor(model, manifest, settings.max_image_pixels)
    P, keep, skipped = [], [], []
    offset = 0
    for batch, probs in predictor.predict_files(paths):
        P.append(probs)
        keep.extend(offset + i for i in np.flatnonzero(batch.ok))
        skipped.extend(batch.errors.items())
        offset += len(batch.paths)
    if not keep:
        raise DataError("nothing to evaluate: no image could be decoded")
    P, Y = np.concatenate(P), Y[keep]
    thresholds = np.array([manifest["thresholds"][g] for g in vocab.genres])
    report = metrics.evaluate(P, Y, vocab.genres, thresholds, manifest["global_threshold"])
    prior = metrics.prior_scores(
        np.array([[manifest["train_prevalence"][g] for g in vocab.genres]]), len(Y)
    )
    # The prior has no validation data here, so its thresholds are tuned on the data
    # being evaluated: that flatters the baseline, never the model.
    prior_t = metrics.tune_thresholds(prior, Y)
    prior_report = metrics.evaluate(
        prior, Y, vocab.genres, prior_t, metrics.tune_global_threshold(prior, Y)
    )
    full = {
        "test": report,
        "baselines": {"prior": prior_report},
        "bootstrap_95": {
            "model": metrics.bootstrap_ci(P, Y, thresholds),
            "prior": metrics.bootstrap_ci(prior, Y, prior_t),
        },
    }
    from models.evaluation import summary

    table = pd.DataFrame(report["per_genre"])[["genre", "support", "ap", "f1", "threshold"]]
    return Evaluation(table.round(3), summary(full), full, skipped)
