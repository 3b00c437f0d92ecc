"""Reading an output dir's predictions: every run's rows (history) or the current view.

``<out>/predictions/`` keeps each run's rows, so a file predicted twice has two rows;
the current view (``core.current``) is one row per (path, model_id). It is computed on
read rather than stored: bench/current.py measures it at a small cost over reading the
history, and a stored copy would be one more file to keep in step with every run.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq
from anigenre.core.current import current_rows
from anigenre.core.errors import ConfigError, DataError, StorageError
from anigenre.core.schemas import RUN_PARTITION, predictions_schema
from anigenre.core.storage import S3Options, Store, open_store
from anigenre.jobs.runs.layout import PREDICTIONS
from anigenre.jobs.runs.parts import set_aside_damaged

if TYPE_CHECKING:  # both import pandas, which a worker's chunk never needs
    import pandas as pd
    import pyarrow.dataset as pads

T = TypeVar("T")
log = logging.getLogger(__name__)


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
    table = read_folder(open_store(out, s3))
    return table if history else current_rows(table)


def read_folder(out: Store) -> pa.Table:
    """Every part under ``out``'s predictions folder with ``run_id``, in run and chunk
    order. No folder is a ConfigError. A damaged part is set aside (jobs.runs.parts) and
    named by a DataError: the next read has the rest, and nobody reads fewer rows than
    the runs wrote without being told."""
    folder = out.child(PREDICTIONS)
    if not part_files(folder) and not folder.exists():
        raise ConfigError(
            f"{folder.uri} does not exist; give the output dir a 'predict' wrote to "
            "(the --out of predict, by default the data dir)"
        )
    table, said = scan(out, lambda parts: predictions_dataset(folder, parts).to_table())
    if said:
        more = f" (and {len(said) - 1} more part(s) like it)" if len(said) > 1 else ""
        raise DataError(said[0] + more)
    return _empty() if table is None else table  # None: runs planned, no part written yet


def scan(out: Store, read: Callable[[list[str]], T]) -> tuple[T | None, list[str]]:
    """``read(parts)`` of ``out``'s predictions folder, None when it holds no part. When
    the scan fails, the damaged parts are set aside and it runs again without them; also
    the lines that say which. A scan that fails with every part readable is a
    StorageError."""
    folder = out.child(PREDICTIONS)
    parts = part_files(folder)
    if not parts:
        return None, []
    try:
        return read(parts), []
    except (pa.ArrowException, OSError) as exc:
        # The scan's error may not say which of hundreds of parts it was; reading them
        # one by one does, and only this failed read pays for it.
        said = set_aside_damaged(out, parts)
        if not said:
            raise _unreadable(folder, exc) from exc
    rest = part_files(folder)
    return (read(rest) if rest else None), said


def first_schema(out: Store) -> tuple[pa.Schema | None, list[str]]:
    """The schema of the first readable part of ``out``'s predictions folder (None when
    there is none), setting aside the damaged ones before it; the lines that say which."""
    folder = out.child(PREDICTIONS)
    said: list[str] = []
    for part in part_files(folder):
        try:
            return pq.read_schema(folder.path(part), filesystem=folder.fs), said
        except FileNotFoundError:
            continue
        except (pa.ArrowException, OSError):
            said += set_aside_damaged(out, [part])
    return None, said


def tell(said: list[str]) -> None:
    """Say each part set aside in the log: stderr in a terminal, the worker's log in a
    worker (a caller that goes on reading, rather than raising, owes the user the line)."""
    for line in said:
        log.warning(line)


def part_files(folder: Store) -> list[str]:
    """The Parquet parts under a predictions folder, relative to it."""
    return [f.path for f in folder.list_files() if f.path.endswith(".parquet")]


def predictions_dataset(folder: Store, parts: list[str]) -> pads.Dataset:
    """The ``parts`` of a predictions folder as one dataset, ``run_id`` from the hive
    partition."""
    import pyarrow.dataset as pads

    # The listed files, not the folder: the dataset discovery would also take a stray file.
    return pads.dataset(
        [folder.path(p) for p in parts],
        format="parquet",
        filesystem=folder.fs,
        partition_base_dir=folder.path(),
        partitioning=pads.partitioning(RUN_PARTITION, flavor="hive"),
    )


def _unreadable(folder: Store, exc: Exception) -> StorageError:
    """Every part read on its own: the scan failed for a reason outside the files."""
    return StorageError(f"cannot read {folder.uri}: {_first_line(exc)}", folder.uri)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _empty() -> pa.Table:
    schema = predictions_schema([])
    return schema.append(RUN_PARTITION.field("run_id")).empty_table()
