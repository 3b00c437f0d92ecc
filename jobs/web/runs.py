"""The run browser's data: the runs list, one run's rows, filters, charts, downloads.

Plain functions of the runs index (no Streamlit), sized for many and large runs: the list
reads a complete run's small manifest rather than its plan (which lists every input),
and a run's rows are read once per version of its part files.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from anigenre.core import metrics
from anigenre.core.errors import AnigenreError
from anigenre.core.genres import ADULT_GENRE, GENRES, Vocabulary, column_slug
from anigenre.jobs.runs.index import indexed_run_files, list_runs, load_plan
from anigenre.jobs.runs.plan import MANIFEST
from anigenre.jobs.runs.reports import find_labels
from anigenre.jobs.runs.status import run_status

# The run ids sort by creation time (jobs.runs.plan.run_id_at).
RUN_COLUMNS = [
    "run_id", "state", "progress", "rows", "ok", "error", "model_id", "created", "note"
]  # fmt: skip


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    state: str  # complete | running | queued | failed | stalled | interrupted | unreadable
    chunks_done: int
    chunks_total: int
    rows_done: int
    rows_total: int
    ok: int
    error: int
    model_id: str | None
    created: str | None
    rate_per_s: float | None = None
    eta_s: float | None = None
    note: str = ""

    @property
    def fraction(self) -> float:
        return self.rows_done / self.rows_total if self.rows_total else 1.0

    @property
    def live(self) -> bool:
        """Still moving, so worth polling."""
        return self.state in ("running", "queued")

    def as_row(self) -> dict:
        return {
            "run_id": self.run_id,
            "state": self.state,
            "progress": self.fraction,
            "rows": f"{self.rows_done}/{self.rows_total}",
            "ok": self.ok,
            "error": self.error,
            "model_id": self.model_id,
            "created": when(self.created),
            "note": self.note,
        }


def runs_newest_first(home: Path | str, s3=None) -> list[str]:
    """``home``: where the runs index lives (jobs.runs.index.index_home: the data dir's
    s3:// URI when it is in a bucket, never its local mirror)."""
    return list(reversed(list_runs(home, s3)))


def state_of(status) -> str:
    """A one-word state from a RunStatus. ``stalled`` and ``interrupted`` are read if
    this version of RunStatus has them."""
    if status.complete:
        return "complete"
    if status.failed:
        return "failed"
    for flag in ("interrupted", "stalled"):
        if getattr(status, flag, False):
            return flag
    if status.chunks_done == 0 and status.rows_ok + status.rows_error == 0:
        return "queued"
    return "running"


def summarize_run(home: Path | str, run_id: str, counts=None, s3=None) -> RunSummary:
    """One line of the runs list. ``home``: where the runs index lives (index_home);
    ``counts``: a PartCounts reused across polls; ``s3``: how to reach a bucket."""
    try:
        files = indexed_run_files(home, run_id, s3)
        if files.exists(MANIFEST):
            m = json.loads(files.read_bytes(MANIFEST))
            return RunSummary(
                run_id=run_id,
                state="complete",
                chunks_done=len(m.get("parts", [])),
                chunks_total=len(m.get("parts", [])),
                rows_done=m["rows"],
                rows_total=m["rows"],
                ok=m["ok"],
                error=m["error"],
                model_id=m.get("model_id"),
                created=m.get("created"),
            )
        plan = load_plan(home, run_id, s3)
        s = run_status(plan, counts=counts)
    except (OSError, ValueError, KeyError, TypeError, AnigenreError) as exc:
        # One broken index entry must not take the whole list down.
        return RunSummary(run_id, "unreadable", 0, 0, 0, 0, 0, 0, None, None, note=str(exc))
    state = state_of(s)
    return RunSummary(
        run_id=run_id,
        state=state,
        chunks_done=s.chunks_done,
        chunks_total=s.chunks_total,
        rows_done=s.rows_ok + s.rows_error,
        rows_total=s.rows_total,
        ok=s.rows_ok,
        error=s.rows_error,
        model_id=plan.model_id,
        created=plan.created,
        rate_per_s=s.rate_per_s,
        eta_s=s.eta_s,
        note=s.failed or "",
    )


def progress_text(s: RunSummary) -> str:
    rate = f", {s.rate_per_s:.1f} posters/s" if s.rate_per_s and s.live else ""
    eta = f", about {s.eta_s:.0f} s left" if s.eta_s and s.live else ""
    return (
        f"{s.state}: {s.rows_done}/{s.rows_total} rows "
        f"({s.ok} ok, {s.error} error), {s.chunks_done}/{s.chunks_total} chunks{rate}{eta}"
    )


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


def load_rows(parts_dir: Path) -> pd.DataFrame:
    """Every row written so far, in chunk order, plus a ``file`` column (the name)."""
    parts = sorted(Path(parts_dir).glob("part-*.parquet"))
    tables = []
    for p in parts:
        try:
            tables.append(pq.read_table(p))
        except FileNotFoundError:
            continue
    if not tables:
        return pd.DataFrame(columns=["path", "file", "status", "error", "top_genres", "predicted"])
    rows = pa.concat_tables(tables, promote_options="default").to_pandas()
    rows.insert(1, "file", rows["path"].map(lambda p: Path(p).name))
    return rows.reset_index(drop=True)


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


def page_slice_list(items: Sequence, page: int, per_page: int) -> Sequence:
    page = min(max(1, page), page_count(len(items), per_page))
    return items[(page - 1) * per_page : page * per_page]


def when(created: str | None) -> str:
    """An ISO time as ``2026-11-28 14:47 UTC``."""
    if not created:
        return ""
    at = dt.datetime.fromisoformat(created).astimezone(dt.UTC)
    return f"{at:%Y-%m-%d %H:%M} UTC"
