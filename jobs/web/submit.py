"""The Queue page's one action: a folder queued for prediction, exactly as
``anigenre jobs submit predict`` queues it. No Streamlit."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from anigenre.config import Settings
from anigenre.core.errors import ConfigError

BROKER_HELP = (
    "No broker is configured, so this page cannot queue work. Start the page with "
    "`anigenre web --broker redis://127.0.0.1:6379/0` (or set `ANIGENRE_BROKER_URL`, or "
    "`broker_url` in anigenre.toml) and start a worker with `anigenre worker`. Without a "
    "broker, `anigenre predict FOLDER` runs the same prediction in one process."
)


@dataclass(frozen=True)
class Submitted:
    run_id: str
    files: int
    chunks: int
    already_predicted: int
    duplicates: int

    def describe(self) -> str:
        return (
            f"run {self.run_id}: {self.files} file(s) in {self.chunks} chunk(s) queued on "
            "'predict'"
            + (f"; {self.already_predicted} already predicted" if self.already_predicted else "")
            + (f"; {self.duplicates} duplicate(s)" if self.duplicates else "")
        )


def submit_folder(
    settings: Settings,
    folder: str,
    *,
    model_id: str = "latest",
    top_k: int = 4,
    force: bool = False,
) -> Submitted:
    """Check the broker, plan the run, publish its chunks; a run with nothing left to
    predict is finalised at once. Raises ConfigError/NetworkError with a one-line reason."""
    from anigenre.jobs import stages
    from anigenre.jobs.queue.broker import broker_app
    from anigenre.jobs.queue.publish import send_chunks
    from anigenre.jobs.runs.markers import finalize

    location = folder_location(folder)
    app = broker_app(settings)  # fail before hashing thousands of files
    plan = stages.plan_prediction(
        settings, [location], model_id=model_id, out_dir=None, top_k=top_k, force=force
    )
    sent = len(plan.chunks) if send_chunks(app, plan) is not None else 0
    if not sent:
        finalize(plan)
    return Submitted(
        plan.run_id, len(plan.inputs), sent, plan.already_predicted, len(plan.duplicates)
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
    location = parse_storage_location(text)
    return location.expanduser() if isinstance(location, Path) else location


def masked_url(url: str) -> str:
    """``redis://:secret@host:6379/0`` -> ``redis://:***@host:6379/0``: a broker URL may
    carry a password, and the page is something people show to others."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))
