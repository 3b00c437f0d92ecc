"""Dataset stages: scrape tables or labelled folders into processed/dataset.parquet.

With an s3:// data dir each stage pulls what it reads from the bucket into the local
mirror first and pushes what it wrote after (core.mirror); locally those are no-ops.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from anigenre.config import Settings
from anigenre.core import dataset as ds
from anigenre.core import mirror
from anigenre.core.atomic import write_bytes_atomic, write_text_atomic
from anigenre.core.charts import split_counts_png
from anigenre.core.dataset_store import (
    DATASET_PATH,
    empty_dataset,
    read_dataset,
    read_or_empty,
    write_dataset,
)
from anigenre.core.errors import DataError
from anigenre.core.genres import Vocabulary
from anigenre.core.importer import IMAGE_DIR, import_folder
from anigenre.scraper.store import RawStore


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
    # The tables only: the posters they name are fetched by whoever reads them (training).
    mirror.pull(settings, "raw", recursive=False)
    mirror.pull(settings, "processed")
    store = RawStore(settings.data_dir)
    if not store.media_path.exists():
        raise DataError(f"no scraped titles at {store.media_path}; run 'anigenre scrape' first")
    vocab = Vocabulary.for_content(settings.include_adult)
    rows, filtered = ds.from_scrape(
        store.media().to_pandas(), store.posters().to_pandas(), filters, vocab
    )
    change = _merge_and_write(settings, vocab, rows, replace_source="scrape", filtered=filtered)
    mirror.push(settings, "processed")
    return change


def import_dataset(settings: Settings, folder: Path, *, replace: bool = False) -> DatasetChange:
    vocab = Vocabulary.for_content(settings.include_adult)
    mirror.pull(settings, "processed")
    result = import_folder(folder, settings.data_dir, vocab, settings.max_image_pixels)
    if result.rows.empty and not replace:
        # Nothing usable: say why instead of writing (or failing to write) an empty merge.
        reasons = "; ".join(f"{name}: {why}" for name, why in result.skipped[:3])
        raise DataError(
            f"nothing to import from {folder}: every file was skipped"
            + (f" ({len(result.skipped)}; e.g. {reasons})" if result.skipped else "")
        )
    change = _merge_and_write(settings, vocab, result.rows, fresh=replace)
    # Images first: a dataset in the bucket never names an image that is not there yet.
    mirror.push(settings, IMAGE_DIR.as_posix())
    mirror.push(settings, "processed")
    change.skipped, change.duplicate_files = result.skipped, result.duplicates
    return change


def ensure_dataset(settings: Settings, folder: Path) -> tuple[pd.DataFrame, Vocabulary]:
    """The dataset, importing ``folder`` first if there is none yet (benchmarks, demos)."""
    path = settings.data_dir / DATASET_PATH
    mirror.pull(settings, "processed")
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
    mirror.pull(settings, "processed")
    dataset, vocab = read_dataset(settings.data_dir / DATASET_PATH)
    table = ds.stats(dataset, vocab)
    out_dir = out_dir or settings.data_dir / "processed"
    csv_path, png_path = out_dir / "dataset_stats.csv", out_dir / "dataset_stats.png"
    write_text_atomic(csv_path, table.to_csv(index_label="genre"))
    title = f"Genres per split ({len(dataset)} posters, {dataset['group'].nunique()} groups)"
    write_bytes_atomic(png_path, split_counts_png(table, list(vocab.genres), title))
    if out_dir == settings.data_dir / "processed":
        mirror.push(settings, "processed")
    return DatasetStats(table, csv_path, png_path, ds.fingerprint(dataset))
