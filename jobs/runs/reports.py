"""``anigenre report``: summary.parquet, charts and a self-contained report.html per run."""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from anigenre.core import metrics
from anigenre.core.charts import barh_png, histogram_png
from anigenre.core.genres import Vocabulary
from anigenre.core.importer import parse_genres, read_labels
from anigenre.core.run_summary import DECISION_COLUMNS, RATE_BAND, decision_rows, summarize
from anigenre.core.seen import split_seen
from anigenre.jobs.runs.parts import read_part
from anigenre.jobs.runs.plan import RunPlan
from anigenre.models.manifest import Manifest
from PIL import Image

GALLERY_LIMIT = 60
THUMB = (120, 170)


@dataclass
class Report:
    folder: Path | str  # the URI when the output dir is in object storage
    summary: pd.DataFrame
    per_genre_ap: pd.DataFrame | None
    seen_note: str | None = None  # which labelled posters were scored, when any had labels
    decisions: pd.DataFrame | None = None  # thresholds, expected and observed rates


def run_rows(plan: RunPlan) -> pd.DataFrame:
    """The rows written so far; a damaged part is set aside and named (DataError): a
    report that quietly left its files out would misreport the run."""
    found = (read_part(plan, i) for i in range(len(plan.chunks)))
    parts = [t for t in found if t is not None]
    if not parts:
        return pd.DataFrame(columns=["path", "status", "error", "top_genres", "predicted"])
    return pa.concat_tables(parts).to_pandas()


def find_labels(paths: list[str], explicit: Path | None) -> dict[str, list[str]]:
    """Genres by resolved file path: from ``explicit`` labels.csv, or a ``labels.csv`` next to
    an ``images/`` folder that holds the inputs (the labelled-folder layout)."""
    candidates = (
        {Path(explicit)}
        if explicit
        else {
            Path(p).parent.parent / "labels.csv" for p in paths if Path(p).parent.name == "images"
        }
    )
    labels: dict[str, list[str]] = {}
    for csv_path in candidates:
        if csv_path.exists():
            images = csv_path.parent / "images"
            for rec in read_labels(csv_path):
                labels[str((images / rec["file"]).resolve())] = parse_genres(rec)
    return labels


def build_report(
    plan: RunPlan,
    vocab: Vocabulary,
    *,
    labels_csv: Path | None = None,
    manifest: Manifest | None = None,
    include_seen: bool = False,
) -> Report:
    rows = run_rows(plan)
    columns = vocab.columns()
    store = plan.out.child("reports", plan.run_id)
    # A Path for a local output dir, the URI for one in object storage.
    folder = Path(store.path()) if store.is_local else store.uri
    summary = summarize(rows, vocab.genres, columns)
    if manifest is not None and manifest.thresholds:
        summary = pd.concat(
            [summary, decision_rows(manifest, summary, vocab.genres)], ignore_index=True
        )
    store.write_table("summary.parquet", pa.Table.from_pandas(summary, preserve_index=False))

    counts = summary[summary.section == "predicted_genre"].set_index("name")["count"]
    charts = {
        "predicted_genres.png": barh_png(
            counts.to_frame("posters"), f"Predicted genres ({plan.run_id})", "posters"
        ),
        "confidence.png": histogram_png(
            summary[summary.section == "confidence_histogram"].set_index("name")["count"],
            "Highest genre probability per poster",
            "probability",
        ),
    }
    ap_table, seen_note = _per_genre_ap(
        rows, vocab, find_labels(rows["path"].tolist(), labels_csv), manifest, include_seen
    )
    if ap_table is not None:
        present = ap_table.dropna(subset=["ap"]).set_index("genre")[["ap"]]
        charts["per_genre_ap.png"] = barh_png(
            present, "Average precision per genre (genres present in the labels)", "AP"
        )
    for name, data in charts.items():
        store.write_bytes(name, data)
    decisions = decision_table(summary, manifest)
    page = _html(plan, rows, summary, charts, ap_table, vocab, seen_note, include_seen, decisions)
    store.write_bytes("report.html", page.encode("utf-8"))
    return Report(folder, summary, ap_table, seen_note, decisions)


def decision_table(summary: pd.DataFrame, manifest: Manifest | None) -> pd.DataFrame | None:
    """The summary's ``decision`` rows as a per-genre table (None without them), with the
    rule and the genres-per-poster row in ``attrs`` for the page."""
    rows = summary[summary.section == "decision"]
    if rows.empty:
        return None
    table = rows.rename(columns={"name": "genre"})[["genre", "count", *DECISION_COLUMNS]]
    table = table.reset_index(drop=True)
    rule = manifest.decision_rule if manifest is not None else {}
    table.attrs["rule"] = (
        f"Rule: {rule['text']}." if rule.get("text") else "Rule: not recorded (an older model)."
    )
    if rule.get("n_posters"):
        table.attrs["rule"] += (
            f" Expected rates measured on {rule['n_posters']} validation posters."
        )
    mean = summary[summary.section == "genres_per_poster"]
    table.attrs["per_poster"] = mean.iloc[0].to_dict() if len(mean) else None
    return table


def _per_genre_ap(
    rows: pd.DataFrame,
    vocab: Vocabulary,
    labels: dict,
    manifest: Manifest | None,
    include_seen: bool,
) -> tuple[pd.DataFrame | None, str | None]:
    """Per-genre AP over the labelled posters the model did not train or tune on (all of
    them with ``include_seen``), and the line that says which were scored."""
    ok = rows[(rows["status"] == "ok") & rows["path"].isin(labels)]
    if ok.empty:
        return None, None
    seen = split_seen(manifest, ok["sha256"].tolist(), include_seen)
    ok = ok[seen.keep]
    if ok.empty:
        return None, seen.note + " (use --include-seen to score them anyway)"
    Y = vocab.encode([labels[p] for p in ok["path"]])
    P = ok[vocab.columns()].to_numpy(dtype=np.float64)
    out = [
        {
            "genre": g,
            "support": int(Y[:, j].sum()),
            "ap": metrics.average_precision(Y[:, j], P[:, j]),
        }
        for j, g in enumerate(vocab.genres)
    ]
    return pd.DataFrame(out), seen.note


def _thumbnail(path: str) -> str | None:
    try:
        with Image.open(path) as img:
            img.thumbnail(THUMB)
            buf = io.BytesIO()
            img.convert("RGB").save(buf, format="JPEG", quality=80)
    except Exception:  # noqa: BLE001 - an unreadable poster just has no thumbnail
        return None
    return base64.b64encode(buf.getvalue()).decode()


def _img(data: bytes, alt: str) -> str:
    encoded = base64.b64encode(data).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{encoded}">'


def _html(plan, rows, summary, charts, ap_table, vocab, seen_note, include_seen, decisions):
    e = html.escape
    totals = summary[summary.section == "totals"].set_index("name")["count"]
    errors = summary[summary.section == "errors"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>anigenre run {e(plan.run_id)}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1100px}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px}"
        ".g{display:inline-block;width:170px;margin:6px;vertical-align:top;font-size:12px}"
        ".g img{max-width:120px;display:block}</style></head><body>",
        f"<h1>Run {e(plan.run_id)}</h1>",
        f"<p>Model <code>{e(plan.model_id)}</code>. {totals.get('ok', 0)} posters predicted, "
        f"{totals.get('error', 0)} errors ({len(plan.duplicates)} of the rows are copies of "
        "byte-identical files), "
        f"{plan.already_predicted} already predicted earlier.</p>",
        "<h2>Predicted genres</h2>",
        _img(charts["predicted_genres.png"], "predicted genre distribution"),
        "<h2>Confidence</h2>",
        _img(charts["confidence.png"], "confidence histogram"),
    ]
    if decisions is not None:
        parts += _decisions_html(decisions)
    if seen_note is not None:
        label = " (including posters the model was trained on)" if include_seen else ""
        parts += [f"<h2>Per-genre AP against the labels{label}</h2>", f"<p>{e(seen_note)}</p>"]
    if ap_table is not None:
        parts.append(_img(charts["per_genre_ap.png"], "per-genre AP"))
        parts.append(ap_table.to_html(index=False, float_format="%.3f", na_rep="absent"))
    if len(errors):
        parts += ["<h2>Errors by reason</h2>", errors[["name", "count"]].to_html(index=False)]
    parts.append(f"<h2>Gallery (first {GALLERY_LIMIT})</h2><div>")
    ok = rows[rows["status"] == "ok"].head(GALLERY_LIMIT)
    for r in ok.itertuples():
        thumb = _thumbnail(r.path)
        probs = dict(zip(vocab.genres, (getattr(r, c) for c in vocab.columns()), strict=True))
        genres = "<br>".join(f"{e(g)} {probs[g]:.2f}" for g in r.top_genres)
        img = f'<img alt="" src="data:image/jpeg;base64,{thumb}">' if thumb else ""
        parts.append(f'<div class="g">{img}<b>{e(Path(r.path).name)}</b><br>{genres}</div>')
    parts.append("</div></body></html>")
    return "\n".join(parts)


def _decisions_html(decisions: pd.DataFrame) -> list[str]:
    e = html.escape
    lo, hi = RATE_BAND

    def num(value) -> str:
        return "not recorded" if pd.isna(value) else f"{value:.3f}"

    parts = ["<h2>Decisions: thresholds and rates</h2>", f"<p>{e(decisions.attrs['rule'])}</p>"]
    mean = decisions.attrs.get("per_poster")
    if mean is not None:
        parts.append(
            f"<p>Genres predicted per poster: expected {num(mean['expected'])} (validation), "
            f"observed {num(mean['observed'])} in this run (ratio {num(mean['ratio'])}); "
            f"the training labels have {num(mean['train_rate'])}.</p>"
        )
    flagged = decisions[decisions["flagged"].fillna(False).astype(bool)]
    if len(flagged):
        parts.append(
            f"<p><b>{len(flagged)} genre(s) predicted at under {lo}x or over {hi}x their "
            f"expected rate</b> ({e(', '.join(flagged['genre']))}): a hint that these posters "
            "differ from the ones the model was tuned on, or that the run is small.</p>"
        )
    shown = pd.DataFrame(
        {
            "genre": decisions["genre"],
            "threshold": decisions["threshold"].map(num),
            "training prevalence": decisions["train_rate"].map(num),
            "expected rate": decisions["expected"].map(num),
            "observed rate": decisions["observed"].map(num),
            # Without an expected rate there is no ratio; with one of 0 and none observed
            # the ratio is undefined, which is no news.
            "observed / expected": [
                num(r) if pd.isna(x) or not pd.isna(r) else "-"
                for x, r in zip(decisions["expected"], decisions["ratio"], strict=True)
            ],
            f"outside [{lo}, {hi}]": decisions["flagged"].map(
                lambda f: "" if pd.isna(f) or not f else "shift?"
            ),
        }
    )
    parts.append(shown.to_html(index=False))
    return parts
