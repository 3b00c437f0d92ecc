"""What a training run records about its model: the manifest of a new artifact."""

from __future__ import annotations

import datetime as dt
import platform

import numpy as np
import pandas as pd
from anigenre.core.genres import Vocabulary
from anigenre.core.seen import SEEN_KEY, seen_record
from anigenre.models.config import TrainConfig
from anigenre.models.evaluation import summary
from anigenre.models.manifest import MANIFEST_VERSION, Manifest


def build_manifest(
    model_id: str,
    created: dt.datetime,
    outcome,
    config: TrainConfig,
    dataset: pd.DataFrame,
    vocab: Vocabulary,
    fingerprint: str,
) -> Manifest:
    report = outcome.report
    frozen = not config.fine_tune and outcome.spec.pretrained
    # Built as the file's JSON and read back, so a new artifact passes the one reader too.
    return Manifest.from_json(
        {
            "manifest_version": MANIFEST_VERSION,
            "model_id": model_id,
            "created": created.isoformat(),
            "backbone": outcome.spec.name,
            "weights": outcome.weights.describe(),
            "genres": list(vocab.genres),
            "input_size": list(outcome.size),
            "input": "RGB uint8 0..255, decoded by core.images.decode_image; "
            "scaling is in the model",
            "resize_policy": config.resize_policy,
            "tta": list(config.tta),
            "thresholds": report["thresholds"],
            "global_threshold": report["global_threshold"],
            "decision_rule": report["decision_rule"],
            "expected_rates": report["expected_rates"],
            "expected_genres_per_poster": report["expected_genres_per_poster"],
            "train_genres_per_poster": report["train_genres_per_poster"],
            "train_prevalence": report["train_prevalence"],
            "prior_thresholds": report["prior_thresholds"],
            "prior_global_threshold": report["prior_global_threshold"],
            # What `evaluate` and `report` leave out by default: posters it learnt or tuned on.
            SEEN_KEY: seen_record(dataset["split"].tolist(), dataset["sha256"].tolist()),
            "dataset": {"fingerprint": fingerprint, **describe_dataset(dataset, vocab)},
            "seed": config.seed,
            "config": config.as_dict(),
            "training": {
                "mode": "frozen" if frozen else "end-to-end",
                "epochs_run": outcome.epochs_run,
                "best_epoch": outcome.best_epoch,
                "val_map_history": outcome.val_history,
                "loss_history": outcome.loss_history,
                "features_computed": outcome.features_computed,
                "learning_rate": config.lr(frozen),
                "taps": list(outcome.taps),
                "companion": {"backbone": outcome.spec.companion}
                if outcome.spec.companion
                else None,
                "feature_scale": outcome.feature_scale,
            },
            "libraries": library_versions(),
            "metrics_summary": summary(report),
        }
    )


def library_versions() -> dict[str, str]:
    import keras
    import tensorflow as tf

    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
    }


def describe_dataset(dataset: pd.DataFrame, vocab: Vocabulary) -> dict:
    """What the model card says about the training data: posters per split and per source,
    positives per genre and split, and the years covered (None where no row has one)."""
    counts = {}
    for split, rows in dataset.groupby("split"):
        Y = np.stack(rows["labels"].to_numpy()) if len(rows) else np.zeros((0, len(vocab)))
        counts[str(split)] = dict(
            zip(vocab.genres, Y.sum(axis=0).astype(int).tolist(), strict=True)
        )
    years = pd.to_numeric(dataset["year"], errors="coerce").dropna()
    return {
        "rows": {str(k): int(v) for k, v in dataset["split"].value_counts().items()},
        "sources": {str(k): int(v) for k, v in dataset["source"].value_counts().items()},
        "genre_counts": counts,
        "years": [int(years.min()), int(years.max())] if len(years) else None,
    }
