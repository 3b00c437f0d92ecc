"""Arrow schemas of every table the project writes. Declared once, used by writer and reader."""

from __future__ import annotations

import pyarrow as pa

# Parquet has no second resolution; milliseconds round-trip exactly.
UTC_MILLIS = pa.timestamp("ms", tz="UTC")

MEDIA = pa.schema(
    [
        pa.field("anilist_id", pa.int64(), nullable=False),
        pa.field("id_mal", pa.int64()),
        pa.field("title", pa.string()),
        pa.field("title_romaji", pa.string()),
        pa.field("title_english", pa.string()),
        pa.field("year", pa.int16()),
        pa.field("start_date", pa.date32()),
        pa.field("season", pa.string()),
        pa.field("format", pa.string()),
        pa.field("status", pa.string()),
        pa.field("episodes", pa.int32()),
        pa.field("duration", pa.int32()),
        pa.field("genres", pa.list_(pa.string())),
        pa.field("average_score", pa.int16()),
        pa.field("popularity", pa.int32()),
        pa.field("studios", pa.list_(pa.string())),
        pa.field("main_studios", pa.list_(pa.string())),
        pa.field("is_adult", pa.bool_()),
        pa.field("cover_url", pa.string()),
        pa.field("cover_url_large", pa.string()),
        pa.field("cover_color", pa.string()),
        pa.field("description_text", pa.string()),
        pa.field("updated_at", UTC_MILLIS),
        pa.field("scraped_at", UTC_MILLIS),
    ]
)

POSTER_STATUSES = ("ok", "missing", "invalid", "error")

POSTERS = pa.schema(
    [
        pa.field("anilist_id", pa.int64(), nullable=False),
        pa.field("path", pa.string()),  # relative to the data dir, derived from the id
        pa.field("source_url", pa.string()),
        pa.field("sha256", pa.string()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("format", pa.string()),
        pa.field("bytes", pa.int64()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error", pa.string()),
        pa.field("fetched_at", UTC_MILLIS),
    ]
)

SOURCES = ("scrape", "import")

DATASET = pa.schema(
    [
        pa.field("sha256", pa.string(), nullable=False),
        pa.field("path", pa.string(), nullable=False),  # relative to the data dir
        pa.field("anilist_id", pa.int64()),
        pa.field("title", pa.string()),
        pa.field("year", pa.int16()),
        pa.field("group", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("genres", pa.list_(pa.string())),
        pa.field("labels", pa.list_(pa.int8())),  # multi-hot in the vocabulary's order
        pa.field("split", pa.string(), nullable=False),
        pa.field("label_source", pa.string()),  # read as null from datasets made before it
    ]
)


RUN_PARTITION = pa.schema([pa.field("run_id", pa.string())])


def predictions_schema(genre_columns: list[str]) -> pa.Schema:
    """Columns of a predictions part file: one float32 per genre (``p_action``,
    ``p_sci_fi``, ...) between the identifying columns and the ranked lists.

    ``run_id`` is the hive partition (``run_id=<id>/``), so it lives in the directory
    name, not in the files: readers of the folder (pandas, pyarrow.dataset with hive
    partitioning, DuckDB with ``hive_partitioning``) add it as a column.
    """
    return pa.schema(
        [
            pa.field("model_id", pa.string(), nullable=False),
            pa.field("path", pa.string(), nullable=False),
            pa.field("sha256", pa.string()),
            pa.field("status", pa.string(), nullable=False),  # ok | error
            pa.field("error", pa.string()),
            *[pa.field(c, pa.float32()) for c in genre_columns],
            pa.field("top_genres", pa.list_(pa.string())),
            pa.field("predicted", pa.list_(pa.string())),
            pa.field("predicted_at", UTC_MILLIS),
        ]
    )
