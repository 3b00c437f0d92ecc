"""What the Queue page parses before it calls jobs.service.runs.submit, as ``anigenre jobs
submit predict`` parses its arguments. No Streamlit."""

from __future__ import annotations

from pathlib import Path

from anigenre.core.errors import ConfigError

BROKER_HELP = (
    "No broker is configured, so this page cannot queue work. Start the page with "
    "`anigenre web --broker redis://127.0.0.1:6379/0` (or set `ANIGENRE_BROKER_URL`, or "
    "`broker_url` in anigenre.toml) and start a worker with `anigenre worker`. Without a "
    "broker, `anigenre predict FOLDER` runs the same prediction in one process."
)


def folder_location(folder: str) -> Path | str:
    """The folder typed on the page, as ``anigenre predict`` parses its paths: a local
    path (``~`` expanded) or an ``s3://bucket/prefix`` URI, kept as text because a Path
    would fold its ``//``. Raises ConfigError with one line."""
    from anigenre.core.storage import parse_storage_location

    text = folder.strip()
    if not text:
        raise ConfigError(
            "type the path of a folder of posters (or of one poster), or an s3://bucket/prefix"
        )
    return parse_storage_location(text)  # "~" expanded there, as for the CLI's paths


def output_location(folder: str) -> Path | str | None:
    """The output folder typed on the page, parsed like the posters' folder; None when
    left empty (the run writes to the data dir, as ``--out`` left out does)."""
    return folder_location(folder) if folder.strip() else None
