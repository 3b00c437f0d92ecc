"""``anigenre report``: summary.parquet, charts and a self-contained report.html per run."""

from __future__ import annotations

import base64
import hashlib
import html
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from anigenre.core import metrics
from anigenre.core.charts import barh_png, histogram_png
from anigenre.core.errors import DataError
from anigenre.core.genres import Vocabulary
from anigenre.core.importer import parse_genres, read_labels
from anigenre.core.run_summary import DECISION_COLUMNS, SHIFT_ALPHA, decision_rows, summarize
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
    posters: int = 0  # predicted ok
    labelled: int = 0  # of those, how many a labels file names (by bytes or file name)
    label_files: tuple[str, ...] = ()  # the labels.csv files given or found
    scores: dict | None = None  # macro_map, micro_ap, p_at_3 and n over the scored posters

    def as_json(self) -> dict:
        """What ``report --json`` prints: one object."""
        totals = self.summary[self.summary.section == "totals"].set_index("name")["count"]
        flagged = []
        if self.decisions is not None:
            flagged = self.decisions.loc[
                self.decisions["flagged"].fillna(False).astype(bool), "genre"
            ].tolist()
        scores = self.scores or {}
        return {
            "ok": int(totals.get("ok", 0)),
            "error": int(totals.get("error", 0)),
            "posters": self.posters,
            "labelled": self.labelled,
            "label_files": list(self.label_files),
            "scored": scores.get("n", 0),
            "seen_note": self.seen_note,
            "macro_map": scores.get("macro_map"),
            "micro_ap": scores.get("micro_ap"),
            "p_at_3": scores.get("p_at_3"),
            "per_genre_ap": None
            if self.per_genre_ap is None
            else {
                r.genre: (None if pd.isna(r.ap) else float(r.ap))
                for r in self.per_genre_ap.itertuples()
            },
            "shifted_genres": flagged,
            "folder": str(self.folder),
        }


def run_rows(plan: RunPlan) -> pd.DataFrame:
    """The rows written so far; a damaged part is set aside and named (DataError): a
    report that quietly left its files out would misreport the run."""
    found = (read_part(plan, i) for i in range(len(plan.chunks)))
    parts = [t for t in found if t is not None]
    if not parts:
        return pd.DataFrame(columns=["path", "status", "error", "top_genres", "predicted"])
    return pa.concat_tables(parts).to_pandas()


def label_files(paths: list[str], explicit: Path | None) -> list[Path]:
    """The labels.csv to read: ``explicit`` (an error when it is not there), else one next
    to an ``images/`` folder that holds the inputs (the labelled-folder layout)."""
    if explicit:
        if not Path(explicit).is_file():
            raise DataError(f"labels file {explicit} not found (give a labels.csv)")
        return [Path(explicit)]
    found = {Path(p).parent.parent / "labels.csv" for p in paths if Path(p).parent.name == "images"}
    return sorted(f for f in found if f.is_file())


def find_labels(
    paths: list[str], explicit: Path | None = None, shas: list[str | None] | None = None
) -> dict[str, list[str]]:
    """Genres by input path, as the path is given, from :func:`label_files`, wherever the
    posters were copied. A poster is matched by its bytes (``shas``, its sha256) to an
    image in the labels' ``images/`` folder; else by file name, to a row whose image is not
    there to compare (a labels.csv on its own). A poster that only shares its name with a
    labelled image of other bytes is another poster, and gets no labels. Without ``shas``,
    by file name alone."""
    by_sha: dict[str, list[str]] = {}
    by_name: dict[str, list[str]] = {}
    for csv_path in label_files(paths, explicit):
        images = csv_path.parent / "images"
        for rec in read_labels(csv_path):
            name = rec["file"].strip()
            genres = parse_genres(rec)
            plain = Path(name).name == name  # never a path out of images/
            digest = _sha256(images / name) if shas is not None and plain else None
            if digest is not None:
                by_sha.setdefault(digest, genres)
            else:
                by_name.setdefault(name, genres)
    labels = {}
    for i, path in enumerate(paths):
        sha = shas[i] if shas is not None else None
        found = by_sha.get(sha) if sha else None
        if found is None:
            found = by_name.get(Path(path).name)
        if found is not None:
            labels[path] = found
    return labels


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:  # not there (or unreadable): the row is matched by name
        return None


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
    paths = rows["path"].tolist()
    files = label_files(paths, labels_csv)
    shas = rows["sha256"].tolist() if "sha256" in rows else None
    labels = find_labels(paths, labels_csv, shas) if files else {}
    ok = rows[rows["status"] == "ok"]
    labelled = int(ok["path"].isin(labels).sum())
    ap_table, seen_note, scores = _per_genre_ap(rows, vocab, labels, manifest, include_seen)
    if ap_table is not None:
        present = ap_table.dropna(subset=["ap"]).set_index("genre")[["ap"]]
        charts["per_genre_ap.png"] = barh_png(
            present, "Average precision per genre (genres present in the labels)", "AP"
        )
    for name, data in charts.items():
        store.write_bytes(name, data)
    decisions = decision_table(summary, manifest)
    labelling = labelled_note(len(ok), labelled, files) if files else None
    page = _html(
        plan, rows, summary, charts, ap_table, vocab, seen_note, include_seen, decisions,
        labels, labelling,
    )  # fmt: skip
    store.write_bytes("report.html", page.encode("utf-8"))
    return Report(
        folder, summary, ap_table, seen_note, decisions, len(ok), labelled,
        tuple(str(f) for f in files), scores,
    )  # fmt: skip


def labelled_note(posters: int, labelled: int, files: list[Path]) -> str:
    """'28 of 30 posters labelled (by their bytes or file name in labels.csv)'."""
    where = ", ".join(str(f) for f in files)
    return f"{labelled} of {posters} posters labelled (by their bytes or file name in {where})"


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
) -> tuple[pd.DataFrame | None, str | None, dict | None]:
    """Per-genre AP over the labelled posters the model did not train or tune on (all of
    them with ``include_seen``), the line that says which were scored, and the headline
    figures over them."""
    ok = rows[(rows["status"] == "ok") & rows["path"].isin(labels)]
    if ok.empty:
        return None, None, None
    seen = split_seen(manifest, ok["sha256"].tolist(), include_seen)
    ok = ok[seen.keep]
    if ok.empty:
        return None, seen.note + " (use --include-seen to score them anyway)", None
    Y = vocab.encode([labels[p] for p in ok["path"]])
    P = ok[vocab.columns()].to_numpy(dtype=np.float64)
    aps = [metrics.average_precision(Y[:, j], P[:, j]) for j in range(len(vocab.genres))]
    present = [a for a in aps if a is not None]
    scores = {
        "n": len(ok),
        "macro_map": float(np.mean(present)) if present else None,
        "micro_ap": metrics.average_precision(Y.ravel(), P.ravel()),
        "p_at_3": metrics.precision_recall_at_k(P, Y, 3)[0],
    }
    out = [
        {
            "genre": g,
            "support": int(Y[:, j].sum()),
            "ap": aps[j],
        }
        for j, g in enumerate(vocab.genres)
    ]
    return pd.DataFrame(out), seen.note, scores


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


def _html(
    plan, rows, summary, charts, ap_table, vocab, seen_note, include_seen, decisions, labels,
    labelling,
):  # fmt: skip
    e = html.escape
    totals = summary[summary.section == "totals"].set_index("name")["count"]
    errors = summary[summary.section == "errors"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>anigenre run {e(plan.run_id)}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1100px}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px}"
        ".gallery{display:flex;flex-wrap:wrap}"
        ".g{width:170px;margin:6px;font-size:12px;overflow:hidden}"
        ".g img{max-width:120px;display:block}"
        # A long file name is cut with an ellipsis (the whole name on hover), never run
        # into the next card.
        ".g .name{display:block;overflow:hidden;text-overflow:ellipsis;white-space:nowrap;"
        "font-weight:bold}"
        ".pass{font-weight:bold;color:#07672e}.below{color:#777}"
        ".true{display:block;font-style:italic;color:#1d3f8f}</style></head><body>",
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
    if labelling is not None:
        parts.append(f"<p>{e(labelling)}.</p>")
    if seen_note is not None:
        label = " (including posters the model was trained on)" if include_seen else ""
        parts += [f"<h2>Per-genre AP against the labels{label}</h2>", f"<p>{e(seen_note)}</p>"]
    if ap_table is not None:
        parts.append(_img(charts["per_genre_ap.png"], "per-genre AP"))
        parts.append(ap_table.to_html(index=False, float_format="%.3f", na_rep="absent"))
    if len(errors):
        parts += ["<h2>Errors by reason</h2>", errors[["name", "count"]].to_html(index=False)]
    parts += [
        f"<h2>Gallery (first {GALLERY_LIMIT})</h2>",
        "<p>Each poster's top genres by probability; <span class='pass'>bold green</span>: "
        "the genre passed its threshold (the <code>predicted</code> column), "
        "<span class='below'>grey</span>: below it"
        + (
            "; <span class='true' style='display:inline'>true:</span> the labels' genres"
            if labels
            else ""
        )
        + ".</p><div class='gallery'>",
    ]
    ok = rows[rows["status"] == "ok"].head(GALLERY_LIMIT)
    for r in ok.itertuples():
        parts.append(_card(r, vocab, labels.get(r.path)))
    parts.append("</div></body></html>")
    return "\n".join(parts)


def _card(r, vocab: Vocabulary, true: list[str] | None) -> str:
    """One gallery card, on one line: thumbnail, name, genres marked by whether they passed
    their thresholds (predicted genres outside the top k too), and the true genres."""
    e = html.escape
    thumb = _thumbnail(r.path)
    probs = dict(zip(vocab.genres, (getattr(r, c) for c in vocab.columns()), strict=True))
    passed = set(r.predicted)
    shown = [*r.top_genres, *(g for g in vocab.genres if g in passed and g not in r.top_genres)]
    genres = "<br>".join(
        f'<span class="{"pass" if g in passed else "below"}">{e(g)} {probs[g]:.2f}</span>'
        for g in shown
    )
    img = f'<img alt="" src="data:image/jpeg;base64,{thumb}">' if thumb else ""
    name = e(Path(r.path).name)
    truth = (
        f'<span class="true">true: {e(", ".join(true) or "none")}</span>'
        if true is not None
        else ""
    )
    return (
        f'<div class="g">{img}<span class="name" title="{name}">{name}</span>{genres}{truth}</div>'
    )


def _decisions_html(decisions: pd.DataFrame) -> list[str]:
    e = html.escape

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
    parts.append(
        "<p>A genre is marked <i>shifted</i> when an exact test says its rate in this run "
        "differs from the expected one: Fisher's exact test against the validation posters "
        "the rate was measured on (the exact binomial test against the rate, for a model "
        f"that did not record their number), p-values Holm-adjusted over the genres, at "
        f"{SHIFT_ALPHA}. On a small run only large differences can be told from chance, "
        "so few genres are marked.</p>"
    )
    flagged = decisions[decisions["flagged"].fillna(False).astype(bool)]
    if len(flagged):
        parts.append(
            f"<p><b>{len(flagged)} genre(s) predicted at a rate that differs from the expected "
            f"one</b> ({e(', '.join(flagged['genre']))}): a hint that these posters differ "
            "from the ones the model was tuned on.</p>"
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
            "p (Holm)": decisions["p_value"].map(lambda v: "-" if pd.isna(v) else f"{v:.3g}"),
            "shifted": decisions["flagged"].map(lambda f: "" if pd.isna(f) or not f else "shifted"),
        }
    )
    parts.append(shown.to_html(index=False))
    return parts
