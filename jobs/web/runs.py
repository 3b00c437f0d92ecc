"""The run browser's data: the runs table, one run's rows, filters, charts, downloads.

Plain functions (no Streamlit). Which runs there are and how each stands is
jobs.service.runs's business (the same RunStatus ``anigenre jobs status`` prints); this
module only formats it. A run's rows are read once per version of its part files.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from anigenre.core import metrics
from anigenre.core.genres import ADULT_GENRE, GENRES, Vocabulary, column_slug
from anigenre.core.storage import S3Options, is_remote
from anigenre.jobs.runs.reports import find_labels
from anigenre.jobs.runs.status import RunStatus
from anigenre.jobs.service.runs import RunEntry

RUN_COLUMNS = [
    "run_id", "state", "progress", "rows", "ok", "error", "model_id", "created", "note"
]  # fmt: skip
UNREADABLE = "unreadable"  # a listed run whose files could not be read (RunEntry.error)
# RunStatus.state values worth polling for: a stalled run moves again once a worker
# takes its chunks; an interrupted one waits for a resume, a failed one for a retry.
LIVE = ("queued", "running", "stalled")


def is_live(status: RunStatus | None) -> bool:
    return status is not None and status.state in LIVE


def rows_done(status: RunStatus) -> int:
    return status.rows_ok + status.rows_error


def fraction(status: RunStatus) -> float:
    return rows_done(status) / status.rows_total if status.rows_total else 1.0


def note_of(status: RunStatus) -> str:
    """Why the run is stalled, interrupted or failed; empty while all is well."""
    return status.note or status.failed or ""


# What an anigenre process reads to reach a bucket (core.storage.S3Options.from_env).
AWS_VARIABLES = "AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_REGION"


def unreadable_note(entry: RunEntry, s3: S3Options) -> str:
    """Why a listed run could not be read, in full, and what would let the page read it:
    a run writing to a bucket needs the AWS variables its command had."""
    why = entry.error or "its files could not be read"
    where = entry.out_dir
    if where and is_remote(where) and not s3.access_key_id:
        return (
            f"run {entry.run_id} writes to {where}, and this page has no AWS keys to "
            f"reach it ({why}). Start the page (anigenre web) with {AWS_VARIABLES} set, as "
            "for the command that made the run."
        )
    return why


def run_row(entry: RunEntry, s3: S3Options | None = None) -> dict:
    """One line of the runs table (RUN_COLUMNS)."""
    s = entry.status
    if s is None:
        note = unreadable_note(entry, s3 or S3Options())
        return {"run_id": entry.run_id, "state": UNREADABLE, "note": note}
    return {
        "run_id": entry.run_id,
        "state": s.state,
        "progress": fraction(s),
        "rows": f"{rows_done(s)}/{s.rows_total}",
        "ok": s.rows_ok,
        "error": s.rows_error,
        "model_id": entry.model_id,
        "created": when(entry.created),
        "note": note_of(s),
    }


def progress_text(s: RunStatus) -> str:
    live = s.state in ("queued", "running")  # a rate and ETA only while it moves
    rate = f", {s.rate_per_s:.1f} posters/s" if s.rate_per_s and live else ""
    eta = f", about {s.eta_s:.0f} s left" if s.eta_s and live else ""
    return (
        f"{s.state}: {rows_done(s)}/{s.rows_total} rows ({s.rows_ok} ok, "
        f"{s.rows_error} error), {s.chunks_done}/{s.chunks_total} chunks{rate}{eta}"
    )


def warning_text(s: RunStatus, resume: str) -> str | None:
    """What the page says under a run that is not moving; ``resume``: the command that
    finishes it (jobs.service.hints.command)."""
    if s.state == "interrupted":
        return f"Interrupted: {s.note}. `{resume}` finishes it."
    if s.state == "failed":
        return f"Failed: {s.failed}. `{resume}` retries it."
    if s.state == "stalled":
        return f"Stalled: {s.note}."
    return None


def part_signature(parts_dir: Path) -> tuple:
    """Names, sizes and mtimes of a run's parts: changes whenever a part is written."""
    out = []
    for p in sorted(Path(parts_dir).glob("part-*.parquet")):
        try:
            st = p.stat()
        except FileNotFoundError:  # replaced between glob and stat
            continue
        out.append((p.name, st.st_size, st.st_mtime_ns))
    return tuple(out)


def with_file(rows: pd.DataFrame) -> pd.DataFrame:
    """A run's rows (``jobs.service.runs.table``, which reads and checks its parts) plus
    a ``file`` column (the name) after ``path``."""
    if not len(rows):
        return pd.DataFrame(columns=["path", "file", "status", "error", "top_genres", "predicted"])
    rows = rows.reset_index(drop=True)
    rows.insert(rows.columns.get_loc("path") + 1, "file", rows["path"].map(lambda p: Path(p).name))
    return rows


def genres_of(rows: pd.DataFrame, manifest: dict | None) -> Vocabulary:
    """The run's genres: its model's, or (model deleted) the known genres with a column."""
    if manifest is not None:
        return Vocabulary(tuple(manifest["genres"]))
    present = set(rows.columns)
    return Vocabulary(tuple(g for g in (*GENRES, ADULT_GENRE) if "p_" + column_slug(g) in present))


def with_labels(rows: pd.DataFrame, labels_csv: Path | None = None) -> pd.DataFrame:
    """Adds ``labels`` (true genres, or None) when a labels.csv is known for the inputs."""
    labels = find_labels(rows["path"].tolist(), labels_csv) if len(rows) else {}
    out = rows.copy()
    out["labels"] = rows["path"].map(labels.get) if labels else None
    return out


@dataclass(frozen=True)
class RowFilter:
    genres: tuple[str, ...] = ()  # predicted (at or over the model's threshold): any of them
    min_probability: float = 0.0  # of the chosen genres, or of the top genre without any
    errors_only: bool = False
    name_contains: str = ""


def apply_filter(rows: pd.DataFrame, vocab: Vocabulary, f: RowFilter) -> pd.DataFrame:
    if f.name_contains:
        rows = rows[rows["file"].str.contains(f.name_contains, case=False, regex=False)]
    if f.errors_only:
        return rows[rows["status"] == "error"]
    if f.genres or f.min_probability > 0:
        rows = rows[rows["status"] == "ok"]  # an error row has no probabilities
    if f.genres:
        chosen = set(f.genres)
        rows = rows[rows["predicted"].map(lambda g: bool(chosen.intersection(g)))]
    if f.min_probability > 0:
        rows = rows[probability_of(rows, vocab, f.genres) >= f.min_probability]
    return rows


def probability_of(rows: pd.DataFrame, vocab: Vocabulary, genres: Sequence[str]) -> pd.Series:
    """Highest probability among ``genres`` (all genres when empty), per row."""
    index = dict(zip(vocab.genres, vocab.columns(), strict=True))
    columns = [index[g] for g in genres] if genres else list(index.values())
    if not len(rows):
        return pd.Series(dtype=float, index=rows.index)
    return rows[columns].max(axis=1).astype(float)


def page_count(n: int, per_page: int) -> int:
    return max(1, -(-n // per_page))


def page_slice(rows: pd.DataFrame, page: int, per_page: int) -> pd.DataFrame:
    """Rows of 1-based ``page``; a page past the end gives the last one."""
    page = min(max(1, page), page_count(len(rows), per_page))
    return rows.iloc[(page - 1) * per_page : page * per_page]


def table_view(rows: pd.DataFrame, vocab: Vocabulary, genres: Sequence[str] = ()) -> pd.DataFrame:
    """What the page shows of rows: names and lists as text, one probability."""
    out = pd.DataFrame(
        {
            "file": rows["file"],
            "status": rows["status"],
            "top genres": rows["top_genres"].map(_joined),
            "passes thresholds": rows["predicted"].map(_joined),
            "probability": probability_of(rows, vocab, genres) if len(rows) else [],
            "error": rows["error"].fillna(""),
        },
        index=rows.index,
    )
    if "labels" in rows and rows["labels"].notna().any():
        out.insert(4, "true genres", rows["labels"].map(_joined))
    return out


def _joined(value) -> str:
    return ", ".join(value) if value is not None and not _isna(value) else ""


def _isna(value) -> bool:
    return isinstance(value, float) and np.isnan(value)


def genre_summary(rows: pd.DataFrame, vocab: Vocabulary) -> pd.DataFrame:
    """Per genre: posters predicted (over threshold), posters where it ranks first, mean
    probability, and with true labels: support and average precision."""
    ok = rows[rows["status"] == "ok"]
    predicted = ok["predicted"].map(list) if len(ok) else pd.Series(dtype=object)
    top1 = ok["top_genres"].map(lambda g: g[0] if len(g) else None) if len(ok) else None
    out = pd.DataFrame(index=pd.Index(vocab.genres, name="genre"))
    out["predicted"] = [int(predicted.map(lambda g, x=x: x in g).sum()) for x in vocab.genres]
    out["ranked first"] = [int((top1 == x).sum()) if top1 is not None else 0 for x in vocab.genres]
    out["mean probability"] = [float(ok[c].mean()) if len(ok) else 0.0 for c in vocab.columns()]
    labelled = ok[ok["labels"].notna()] if "labels" in ok else ok.iloc[0:0]
    if len(labelled):
        truth = [[g for g in lab if g in vocab.genres] for lab in labelled["labels"]]
        Y = vocab.encode(truth)
        P = labelled[vocab.columns()].to_numpy(dtype=np.float64)
        out["support"] = Y.sum(axis=0).astype(int)
        out["average precision"] = [
            metrics.average_precision(Y[:, j], P[:, j]) for j in range(len(vocab))
        ]
    return out


def csv_bytes(rows: pd.DataFrame) -> bytes:
    """Lists as ``A|B`` (the labels.csv convention), so the file opens anywhere."""
    out = rows.copy()
    for column in ("top_genres", "predicted", "labels"):
        if column in out:
            out[column] = out[column].map(lambda v: "|".join(v) if v is not None else "")
    return out.to_csv(index=False).encode()


def parquet_bytes(rows: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    table = pa.Table.from_pandas(rows.reset_index(drop=True), preserve_index=False)
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def report_path(out_dir: Path, run_id: str) -> Path:
    """Where ``anigenre report`` writes the run's page (jobs.runs.reports)."""
    return Path(out_dir) / "reports" / run_id / "report.html"


def age(created: str | None, now: dt.datetime | None = None) -> str:
    if not created:
        return ""
    seconds = (
        (now or dt.datetime.now(dt.UTC)) - dt.datetime.fromisoformat(created)
    ).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{max(seconds, 0):.0f} s ago"


def when(created: str | None) -> str:
    """An ISO time as ``2026-11-28 14:47 UTC``."""
    if not created:
        return ""
    at = dt.datetime.fromisoformat(created).astimezone(dt.UTC)
    return f"{at:%Y-%m-%d %H:%M} UTC"
