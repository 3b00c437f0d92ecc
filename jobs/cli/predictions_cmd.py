"""``anigenre predictions OUT``: an output dir's predictions as one file, current or all.

Parses and formats only; which rows are current is jobs.runs.current's business.
"""

from __future__ import annotations

import sys
from pathlib import Path

from anigenre.config import Settings
from anigenre.core.errors import ConfigError
from anigenre.jobs.cli import args as types

FORMATS = ("parquet", "csv", "json")


def register(sub) -> None:
    p = sub.add_parser(
        "predictions",
        help="an output dir's predictions: the newest row per file and model, or every run's",
    )
    p.add_argument(
        "out",
        type=types.storage_location,
        help="the output dir predict wrote to (its --out), local or s3://bucket/prefix",
    )
    p.add_argument(
        "--history",
        action="store_true",
        help="every run's rows, not just the current one per file and model",
    )
    p.add_argument(
        "--format",
        choices=FORMATS,
        help="json: one object per line (default: --to's extension, else csv)",
    )
    p.add_argument("--to", type=types.local_path, help="write this file instead of stdout")
    p.set_defaults(run=run, settings_overrides=lambda a: {})


def run(args, settings: Settings) -> int:
    from anigenre.core.atomic import write_bytes_atomic
    from anigenre.jobs.runs.current import predictions_table

    fmt = output_format(args.format, args.to)
    if fmt == "parquet" and args.to is None:
        # Checked before reading: refusing after a long read of a bucket wastes it.
        raise ConfigError("parquet is not for a terminal; give --to FILE, or --format csv|json")
    table = predictions_table(args.out, history=args.history, s3=settings.s3)
    data = encode(table, fmt)
    if args.to is None:
        sys.stdout.write(data.decode("utf-8"))
        return 0
    write_bytes_atomic(args.to, data)
    which = "rows (every run's)" if args.history else "rows (one per file and model)"
    print(f"{table.num_rows} {which} -> {args.to}")
    return 0


def output_format(given: str | None, to: Path | None) -> str:
    if given:
        return given
    suffix = to.suffix.lower().lstrip(".") if to else ""
    return suffix if suffix in FORMATS else "csv"


def encode(table, fmt: str) -> bytes:
    """``table`` as the bytes of a ``fmt`` file. CSV has no lists, so a list column
    (top_genres, predicted) is written joined by ``|``, as labels.csv writes genres."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if fmt == "parquet":
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        return sink.getvalue().to_pybytes()
    if fmt == "json":
        frame = table.to_pandas()
        text = frame.to_json(orient="records", date_format="iso", date_unit="ms", lines=True)
        return text.encode("utf-8")
    for i, field in enumerate(table.schema):
        if pa.types.is_list(field.type):
            table = table.set_column(i, field.name, pc.binary_join(table.column(i), "|"))
    return table.to_pandas().to_csv(index=False).encode("utf-8")
