"""What a finished prediction run says, as one long table. Pure pandas."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np
import pandas as pd

BINS = np.round(np.linspace(0.0, 1.0, 11), 1)


def confidence(ok_rows: pd.DataFrame, columns: Sequence[str]) -> pd.Series:
    """Each poster's highest genre probability."""
    return ok_rows[list(columns)].max(axis=1) if len(ok_rows) else pd.Series(dtype=float)


def summarize(rows: pd.DataFrame, genres: Sequence[str], columns: Sequence[str]) -> pd.DataFrame:
    """Rows of (section, name, count): genre counts (predicted above threshold, and top-1),
    a confidence histogram, and errors by reason."""
    ok = rows[rows["status"] == "ok"]
    out = [("totals", "ok", len(ok)), ("totals", "error", int((rows["status"] == "error").sum()))]
    predicted = ok["predicted"].map(list) if len(ok) else pd.Series(dtype=object)
    top1 = (
        ok["top_genres"].map(lambda g: g[0] if len(g) else None)
        if len(ok)
        else pd.Series(dtype=object)
    )
    for genre in genres:
        out.append(("predicted_genre", genre, int(predicted.map(lambda g, x=genre: x in g).sum())))
        out.append(("top1_genre", genre, int((top1 == genre).sum())))
    hist, _ = np.histogram(confidence(ok, columns), bins=BINS)
    for lo, hi, n in zip(BINS[:-1], BINS[1:], hist, strict=True):
        out.append(("confidence_histogram", f"{lo:.1f}-{hi:.1f}", int(n)))
    reasons = rows.loc[rows["status"] == "error", "error"].fillna("").map(error_reason)
    for reason, n in reasons.value_counts().sort_index().items():
        out.append(("errors", reason, int(n)))
    return pd.DataFrame(out, columns=["section", "name", "count"]).astype({"count": "int64"})


def error_reason(message: str) -> str:
    """``"corrupt: image file is truncated"`` -> ``"corrupt"``."""
    return message.split(":", 1)[0].strip() or "unknown"


# A run whose rate for a genre is outside this band around the rate the model showed on
# its validation posters is flagged: a hint that these posters differ from the training
# data (another era, another kind of artwork), or that the run is too small to say.
RATE_BAND = (0.5, 2.0)
DECISION_COLUMNS = ("threshold", "train_rate", "expected", "observed", "ratio", "flagged")


class DecisionRecord(Protocol):
    """What a model's manifest (models.manifest.Manifest) records of its decision rule."""

    @property
    def thresholds(self) -> Mapping[str, float]: ...
    @property
    def expected_rates(self) -> Mapping[str, float]: ...
    @property
    def train_prevalence(self) -> Mapping[str, float]: ...
    @property
    def expected_genres_per_poster(self) -> float | None: ...
    @property
    def train_genres_per_poster(self) -> float | None: ...


def decision_rows(
    manifest: DecisionRecord, summary: pd.DataFrame, genres: Sequence[str]
) -> pd.DataFrame:
    """Rows to append to :func:`summarize`'s table: per genre (section ``decision``) the
    threshold of the ``predicted`` column, the training prevalence, the expected rate (share
    of validation posters predicted), this run's observed rate, observed / expected, and
    whether that ratio is outside :data:`RATE_BAND`; then (section ``genres_per_poster``,
    name ``mean``) the mean number of predicted genres per poster, expected vs observed.
    ``count`` is the number of posters (labels) predicted. Expected figures a manifest does
    not record are NaN, never guessed."""
    totals = summary[summary.section == "totals"].set_index("name")["count"]
    ok = int(totals.get("ok", 0))
    counts = summary[summary.section == "predicted_genre"].set_index("name")["count"]
    thresholds = manifest.thresholds
    expected = manifest.expected_rates
    prevalence = manifest.train_prevalence
    out = []
    for g in genres:
        n = int(counts.get(g, 0))
        out.append(
            _row("decision", g, n, thresholds.get(g), prevalence.get(g), expected.get(g), n, ok)
        )
    total = int(counts.reindex(list(genres)).fillna(0).sum())
    # An older manifest's means are the sums of its rates (models.manifest fills them in).
    mean_expected = manifest.expected_genres_per_poster
    mean_train = manifest.train_genres_per_poster
    out.append(_row("genres_per_poster", "mean", total, None, mean_train, mean_expected, total, ok))
    table = pd.DataFrame(out, columns=["section", "name", "count", *DECISION_COLUMNS])
    table["flagged"] = table["flagged"].astype("boolean")
    return table.astype({"count": "int64"})


def _row(section, name, count, threshold, train_rate, expected, predicted, ok) -> tuple:
    observed = predicted / ok if ok else None
    ratio = flagged = None
    if expected is not None and observed is not None:
        if expected > 0:
            ratio = observed / expected
        elif observed > 0:
            ratio = float("inf")  # never predicted on validation, predicted here
        flagged = ratio is not None and not RATE_BAND[0] <= ratio <= RATE_BAND[1]
    nan = float("nan")
    return (
        section,
        name,
        count,
        nan if threshold is None else float(threshold),
        nan if train_rate is None else float(train_rate),
        nan if expected is None else float(expected),
        nan if observed is None else float(observed),
        nan if ratio is None else float(ratio),
        flagged,
    )
