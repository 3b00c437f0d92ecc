"""Parquet read/write helpers: explicit schemas, zstd, atomic replace, upsert by key."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from anigenre.core.atomic import atomic_path


def rows_to_table(rows: Sequence[dict], schema: pa.Schema) -> pa.Table:
    """Build a table with exactly ``schema``'s columns; a missing key becomes null."""
    return pa.Table.from_pylist([{f.name: r.get(f.name) for f in schema} for r in rows], schema)


def write_table(path: Path, table: pa.Table, tmp_dir: Path | None = None) -> None:
    with atomic_path(path, tmp_dir) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def read_table(path: Path, schema: pa.Schema) -> pa.Table:
    """Read ``path`` as ``schema``; an absent file is an empty table of that schema."""
    if not Path(path).exists():
        return schema.empty_table()
    return pq.read_table(path, schema=schema)


def upsert(path: Path, rows: Sequence[dict], key: str, schema: pa.Schema) -> pa.Table:
    """Replace rows whose ``key`` is in ``rows`` and add the rest; write atomically.

    Running the same upsert twice leaves the same file, which is what makes a
    re-scrape (or a page redone after a crash) unable to duplicate anything.
    """
    new = rows_to_table(_last_per_key(rows, key), schema)
    old = read_table(path, schema)
    kept = old.filter(pc.invert(pc.is_in(old[key], value_set=new[key])))
    merged = pa.concat_tables([kept, new]).sort_by(key)
    write_table(path, merged)
    return merged


def _last_per_key(rows: Sequence[dict], key: str) -> list[dict]:
    return list({r[key]: r for r in rows}.values())
