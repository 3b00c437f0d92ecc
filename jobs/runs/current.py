"""Reading an output dir's predictions: every run's rows (history) or the current view.

``<out>/predictions/`` keeps each run's rows, so a file predicted twice has two rows;
the current view (``core.current``) is one row per (path, model_id). It is computed on
read rather than stored: bench/current.py measures it at a small cost over reading the
history, and a stored copy would be one more file to keep in step with every run.
"""

from __future__ import annotations

import os

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
from anigenre.core.current import current_rows
from anigenre.core.errors import ConfigError, DataError, StorageError
from anigenre.core.schemas import RUN_PARTITION, predictions_schema
from anigenre.core.storage import S3Options, Store, open_store
from anigenre.jobs.runs.layout import PREDICTIONS


def read_predictions(
    out: str | os.PathLike, *, history: bool = False, s3: S3Options | None = None
) -> pd.DataFrame:
    """The current view of ``<out>/predictions`` (one row per path and model, sorted by
    them), or every row with ``history``; ``run_id`` is a column. ``out``: a local
    folder or ``s3://bucket/prefix``, reached with ``s3``."""
    return predictions_table(out, history=history, s3=s3).to_pandas()


def predictions_table(
    out: str | os.PathLike, *, history: bool = False, s3: S3Options | None = None
) -> pa.Table:
    """:func:`read_predictions` as an Arrow table, with the parts' column types."""
    table = read_folder(open_store(out, s3).child(PREDICTIONS))
    return table if history else current_rows(table)


def read_folder(folder: Store) -> pa.Table:
    """Every part under ``folder`` (a predictions folder) with ``run_id``, in run and chunk
    order. No folder is a ConfigError; a part that is not Parquet, a DataError naming it."""
    parts = part_files(folder)
    if not parts:
        if not folder.exists():
            raise ConfigError(
                f"{folder.uri} does not exist; give the output dir a 'predict' wrote to "
                "(the --out of predict, by default the data dir)"
            )
        return _empty()  # runs planned, no part written yet
    try:
        return predictions_dataset(folder, parts).to_table()
    except (pa.ArrowException, OSError) as exc:
        # The scan's error may not say which of hundreds of parts it was; reading them
        # one by one does, and only this failed read pays for it.
        raise _damaged_part(folder, parts) or _unreadable(folder, exc) from exc


def part_files(folder: Store) -> list[str]:
    """The Parquet parts under a predictions folder, relative to it."""
    return [f.path for f in folder.list_files() if f.path.endswith(".parquet")]


def predictions_dataset(folder: Store, parts: list[str]) -> pads.Dataset:
    """The ``parts`` of a predictions folder as one dataset, ``run_id`` from the hive
    partition."""
    # The listed files, not the folder: the dataset discovery would also take a stray file.
    return pads.dataset(
        [folder.path(p) for p in parts],
        format="parquet",
        filesystem=folder.fs,
        partition_base_dir=folder.path(),
        partitioning=pads.partitioning(RUN_PARTITION, flavor="hive"),
    )


def _damaged_part(folder: Store, parts: list[str]) -> DataError | None:
    for part in parts:
        try:
            pq.read_table(folder.path(part), filesystem=folder.fs)
        except (pa.ArrowException, OSError) as exc:
            return DataError(
                f"{folder.uri_of(part)} is not a readable Parquet part ({_first_line(exc)}); "
                "restore it, or move it aside and run the same predict again to redo its files"
            )
    return None


def _unreadable(folder: Store, exc: Exception) -> StorageError:
    """Every part read on its own: the scan failed for a reason outside the files."""
    return StorageError(f"cannot read {folder.uri}: {_first_line(exc)}", folder.uri)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _empty() -> pa.Table:
    schema = predictions_schema([])
    return schema.append(RUN_PARTITION.field("run_id")).empty_table()
