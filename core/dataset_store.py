"""dataset.parquet on disk: the table plus its vocabulary in the schema metadata."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from anigenre.core import schemas
from anigenre.core.errors import DataError
from anigenre.core.genres import Vocabulary
from anigenre.core.tables import write_table

GENRES_KEY = b"anigenre.genres"
DATASET_PATH = Path("processed") / "dataset.parquet"


def write_dataset(path: Path, dataset: pd.DataFrame, vocab: Vocabulary) -> None:
    table = pa.Table.from_pandas(dataset, schema=schemas.DATASET, preserve_index=False)
    table = table.replace_schema_metadata({GENRES_KEY: vocab.to_json().encode()})
    write_table(path, table)


def read_dataset(path: Path) -> tuple[pd.DataFrame, Vocabulary]:
    if not Path(path).exists():
        raise DataError(
            f"no dataset at {path}; build one with 'anigenre preprocess' or "
            "'anigenre dataset import DIR'"
        )
    table = pq.read_table(path, schema=None)
    meta = table.schema.metadata or {}
    if GENRES_KEY not in meta:
        raise DataError(f"{path} has no genre vocabulary in its metadata; rebuild it")
    vocab = Vocabulary.from_json(meta[GENRES_KEY].decode())
    for field in schemas.DATASET:  # columns added since the file was written: null
        if field.name not in table.column_names and field.nullable:
            table = table.append_column(field, pa.nulls(len(table), field.type))
    return table.select(schemas.DATASET.names).cast(schemas.DATASET).to_pandas(), vocab


def empty_dataset() -> pd.DataFrame:
    return schemas.DATASET.empty_table().to_pandas()


def read_or_empty(path: Path, vocab: Vocabulary) -> pd.DataFrame:
    """The dataset at ``path``, or an empty one; a vocabulary mismatch is an error."""
    if not Path(path).exists():
        return empty_dataset()
    dataset, stored = read_dataset(path)
    if stored != vocab:
        raise DataError(
            f"{path} uses genres {list(stored.genres)}, this run {list(vocab.genres)}; "
            "use --replace to start afresh"
        )
    return dataset
