"""Pipeline stages as plain functions of Settings: the CLI and the Celery tasks both call these."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from config import Settings
from core import dataset as ds
from core.atomic import write_bytes_atomic, write_text_atomic
from core.charts import split_counts_png
from core.dataset_store import (
    DATASET_PATH,
    empty_dataset,
    read_dataset,
    read_or_empty,
    write_dataset,
)
from core.errors import DataError
from core.genres import Vocabulary
from core.importer import import_folder
from scraper.store import RawStore


@dataclass
class DatasetChange:
    path: Path
    added: int
    total: int
    duplicates: int = 0
    filtered: list[tuple[str, int]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    duplicate_files: list[tuple[str, str]] = field(default_factory=list)
    splits: dict[str, int] = field(default_factory=dict)


def preprocess(settings: Settings, filters: ds.Filters) -> DatasetChange:
    """Raw scrape tables -> dataset rows (source=scrape), replacing the previous scrape rows."""
    store = RawStore(settings.data_dir)
    if not store.media_path.exists():
        raise DataError(f"no scraped titles at {store.media_path}; run 'anigenre scrape' first")
    vocab = Vocabulary.for_content(settings.include_adult)
    rows, filtered = ds.from_scrape(
        store.media().to_pandas(), store.posters().to_pandas(), filters, vocab
    )
    return _merge_and_write(settings, vocab, rows, replace_source="scrape", filtered=filtered)


def import_dataset(settings: Settings, folder: Path, *, replace: bool = False) -> DatasetChange:
    vocab = Vocabulary.for_content(settings.include_adult)
    result = import_folder(folder, settings.data_dir, vocab, settings.max_image_pixels)
    change = _merge_and_write(settings, vocab, result.rows, fresh=replace)
    change.skipped, change.duplicate_files = result.skipped, result.duplicates
    return change


def ensure_dataset(settings: Settings, folder: Path) -> tuple[pd.DataFrame, Vocabulary]:
    """The dataset, importing ``folder`` first if there is none yet (benchmarks, demos)."""
    path = settings.data_dir / DATASET_PATH
    if not path.exists():
        import_dataset(settings, folder)
    return read_dataset(path)


def _merge_and_write(
    settings: Settings,
    vocab: Vocabulary,
    rows: pd.DataFrame,
    *,
    replace_source: str | None = None,
    fresh: bool = False,
    filtered=None,
) -> DatasetChange:
    path = settings.data_dir / DATASET_PATH
    existing = empty_dataset() if fresh else read_or_empty(path, vocab)
    merged, duplicates = ds.merge(
        existing, rows, vocab, replace_source=replace_source, seed=settings.split_seed
    )
    write_dataset(path, merged, vocab)
    return DatasetChange(
        path=path,
        added=len(rows) - duplicates,
        total=len(merged),
        duplicates=duplicates,
        filtered=filtered or [],
        splits=merged["split"].value_counts().to_dict(),
    )


@dataclass
class DatasetStats:
    table: pd.DataFrame
    csv_path: Path
    png_path: Path
    fingerprint: str


def dataset_stats(settings: Settings, out_dir: Path | None = None) -> DatasetStats:
    dataset, vocab = read_dataset(settings.data_dir / DATASET_PATH)
    table = ds.stats(dataset, vocab)
    out_dir = out_dir or settings.data_dir / "processed"
    csv_path, png_path = out_dir / "dataset_stats.csv", out_dir / "dataset_stats.png"
    write_text_atomic(csv_path, table.to_csv(index_label="genre"))
    title = f"Genres per split ({len(dataset)} posters, {dataset['group'].nunique()} groups)"
    write_bytes_atomic(png_path, split_counts_png(table, list(vocab.genres), title))
    return DatasetStats(table, csv_path, png_path, ds.fingerprint(dataset))


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


def plan_prediction(
    settings: Settings,
    paths,
    *,
    model_id: str,
    out_dir: Path | None,
    top_k: int = 4,
    chunk_size: int = 64,
    force: bool = False,
):
    """Hash the inputs and write the run plan; needs no model and no TensorFlow."""
    from jobs.runs import plan_run
    from models.registry import resolve_model_id

    return plan_run(
        [Path(p) for p in paths],
        model_id=resolve_model_id(settings.data_dir, model_id),
        out_dir=out_dir or settings.data_dir,
        data_dir=settings.data_dir,
        top_k=top_k,
        chunk_size=chunk_size,
        force=force,
    )


def load_predictor(settings: Settings, model_id: str):
    from models.predictor import Predictor
    from models.registry import load_artifact

    model, manifest = load_artifact(settings.data_dir, model_id)
    return Predictor(model, manifest, settings.max_image_pixels)


def predict_in_process(settings: Settings, plan, on_chunk=None, predictor=None) -> dict:
    """Run every chunk of ``plan`` here, then finalise. The embedded default: no broker."""
    from jobs.chunks import execute_chunk
    from jobs.runs import chunk_done, finalize

    for index in range(len(plan.chunks)):
        if chunk_done(plan, index):  # a resumed run skips what is already written
            continue
        predictor = predictor or load_predictor(settings, plan.model_id)
        result = execute_chunk(plan, index, predictor)
        if on_chunk:
            on_chunk(result)
    return finalize(plan)


def report_run(settings: Settings, run_id: str, labels_csv: Path | None = None):
    from jobs.reports import build_report
    from jobs.runs import load_plan
    from models.registry import load_manifest, vocabulary_of

    plan = load_plan(settings.data_dir, run_id)
    vocab = vocabulary_of(load_manifest(settings.data_dir, plan.model_id))
    return build_report(plan, vocab, labels_csv=labels_csv)
