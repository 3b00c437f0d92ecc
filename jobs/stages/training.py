"""Training and evaluation stages: the dataset into a registered model, and its scores.

With an s3:// data dir, training pulls the dataset, the images it names and the feature
cache into the local mirror, and pushes the new feature parts and the model; evaluation
fetches the model (verified, models.remote) and the images it scores (core.mirror).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from anigenre.config import Settings
from anigenre.core import dataset as ds
from anigenre.core import mirror
from anigenre.core.dataset_store import DATASET_PATH, read_dataset
from anigenre.core.errors import DataError
from anigenre.models.manifest import Manifest


def train_model(settings: Settings, config, bar=None, on_embedded=None) -> tuple[str, Manifest]:
    """Train on processed/dataset.parquet and register the artifact: (model id, manifest).
    Progress, for the CLI: ``bar`` (tqdm-shaped) counts epochs, ``on_embedded(done,
    total)`` the backbone embeddings computed first (models.train.train)."""
    import datetime as dt

    from anigenre.models import registry
    from anigenre.models.record import build_manifest
    from anigenre.models.synced import Registry
    from anigenre.models.train import train

    mirror.pull(settings, "processed")
    dataset, vocab = read_dataset(settings.data_dir / DATASET_PATH)
    mirror.pull_paths(settings, dataset["path"])
    mirror.pull(settings, "features")
    outcome = train(
        dataset,
        vocab,
        data_dir=settings.data_dir,
        weights_dir=settings.weights_dir or settings.shared_dir / "weights",
        config=config,
        max_pixels=settings.max_image_pixels,
        bar=bar,
        on_embedded=on_embedded,
    )
    created = dt.datetime.now(dt.UTC).replace(microsecond=0)
    fingerprint = ds.fingerprint(dataset)
    model_id = registry.new_model_id(outcome.spec.name, created, fingerprint)
    manifest = build_manifest(model_id, created, outcome, config, dataset, vocab, fingerprint)
    registry.save_artifact(settings.data_dir, model_id, outcome.model, manifest, outcome.report)
    Registry(settings).published(model_id)
    # After the model: an hour's training must not hang on the cache. Parts are named by
    # their rows, so another machine's part of the same name holds the same embeddings.
    mirror.push(settings, "features", keep_theirs=True)
    return model_id, manifest


@dataclass
class Evaluation:
    table: pd.DataFrame
    summary: dict
    report: dict
    skipped: list[tuple[str, str]]
    notes: list[str]  # what was scored and how: the seen posters left out, old models


def evaluate_model(
    settings: Settings,
    model_id: str,
    *,
    dataset: Path | None = None,
    folder: Path | None = None,
    include_seen: bool = False,
) -> Evaluation:
    """Score a registered model on a dataset's test split or on a labelled folder, leaving
    out (unless ``include_seen``) the posters it was trained or tuned on."""
    import numpy as np
    from anigenre.core import metrics
    from anigenre.core.importer import parse_genres, read_labels
    from anigenre.core.seen import file_sha256, split_seen
    from anigenre.models.evaluation import decisions_of, score, summary
    from anigenre.models.predictor import scoring_predictor
    from anigenre.models.registry import load_artifact, vocabulary_of
    from anigenre.models.synced import Registry

    model, manifest = load_artifact(settings.data_dir, Registry(settings).fetch(model_id))
    vocab = vocabulary_of(manifest)
    if folder is not None:
        records = read_labels(Path(folder) / "labels.csv")
        paths = [Path(folder) / "images" / r["file"] for r in records]
        Y = vocab.encode([parse_genres(r) for r in records])
        shas = [file_sha256(p) for p in paths]
        sources = [r.get("label_source") for r in records]
    else:
        if dataset is None:
            mirror.pull(settings, "processed")
        path = dataset or settings.data_dir / DATASET_PATH
        rows, stored = read_dataset(path)
        if stored != vocab:
            raise DataError(f"{path} uses other genres than model {manifest.model_id}")
        rows = rows[rows["split"] == "test"]
        if dataset is None:
            mirror.pull_paths(settings, rows["path"])
        root = Path(path).resolve().parent.parent  # paths are relative to the data dir
        paths = [root / p for p in rows["path"]]
        Y = np.stack(rows["labels"].to_numpy()) if len(rows) else np.zeros((0, len(vocab)))
        shas = rows["sha256"].tolist()
        sources = rows["label_source"].tolist()
    seen = split_seen(manifest, shas, include_seen)
    notes = [seen.note]
    if not seen.keep.any() and len(paths):
        raise DataError(
            f"all {len(paths)} posters were in the model's training or validation data; "
            "evaluate on other posters, or pass --include-seen to score them anyway"
        )
    paths, Y = [p for p, k in zip(paths, seen.keep, strict=True) if k], Y[seen.keep]
    sources = [s for s, k in zip(sources, seen.keep, strict=True) if k]
    predictor = scoring_predictor(settings.data_dir, model, manifest, settings.max_image_pixels)
    if predictor.engine.name != "keras":
        notes.append(f"scored on {predictor.engine.name}: the int8 network that serves it")
    P, keep, skipped = [], [], []
    offset = 0
    for batch, probs in predictor.predict_files(paths):
        P.append(probs)
        keep.extend(offset + i for i in np.flatnonzero(batch.ok))
        skipped.extend(batch.errors.items())
        offset += len(batch.paths)
    if not keep:
        raise DataError("nothing to evaluate: no image could be decoded")
    P, Y, sources = np.concatenate(P), Y[keep], [sources[i] for i in keep]
    decisions, recorded = decisions_of(manifest, vocab.genres)
    if not recorded:
        # No validation data here: tuning the prior on the evaluated posters flatters the
        # baseline, never the model.
        prior = metrics.prior_scores(decisions["train_prevalence"][None, :], len(Y))
        decisions["prior_thresholds"] = metrics.tune_thresholds(prior, Y)
        decisions["prior_global_threshold"] = metrics.tune_global_threshold(prior, Y)
        notes.append(
            "model predates recorded prior thresholds: the prior's are tuned on these posters"
        )
    full = score(
        P,
        Y,
        vocab.genres,
        decisions,
        n_boot=manifest.config.get("bootstrap", 1000),
        seed=manifest.seed or 0,
        sources=sources,  # labels.csv's or the dataset's label_source: figures per source
    )
    table = pd.DataFrame(full["test"]["per_genre"])[["genre", "support", "ap", "f1", "threshold"]]
    intervals = full["bootstrap_95"]["per_genre_ap"]
    table.insert(3, "ap_lo", [intervals.get(g, (None, None))[0] for g in table["genre"]])
    table.insert(4, "ap_hi", [intervals.get(g, (None, None))[1] for g in table["genre"]])
    return Evaluation(table.round(3), summary(full), full, skipped, notes)
