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


# A genre's rate in a run is flagged as shifted from the rate the model showed on its
# validation posters when an exact test says so at this family-wise level (Holm over the
# genres tested): a hint that these posters differ from the training data (another era,
# another kind of artwork). Not a ratio band: on 21 posters a genre expected on 17% is
# missing by chance 2% of the time, and with 18 genres some genre always is.
SHIFT_ALPHA = 0.05
DECISION_COLUMNS = (
    "threshold",
    "train_rate",
    "expected",
    "observed",
    "ratio",
    "p_value",
    "flagged",
)


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
    @property
    def decision_rule(self) -> Mapping: ...


def decision_rows(
    manifest: DecisionRecord, summary: pd.DataFrame, genres: Sequence[str]
) -> pd.DataFrame:
    """Rows to append to :func:`summarize`'s table: per genre (section ``decision``) the
    threshold of the ``predicted`` column, the training prevalence, the expected rate (share
    of validation posters predicted), this run's observed rate, observed / expected, the
    Holm-adjusted p-value of :func:`shift_p_values` and whether it is under
    :data:`SHIFT_ALPHA`; then (section ``genres_per_poster``, name ``mean``) the mean number
    of predicted genres per poster, expected vs observed (a mean of counts: not tested).
    ``count`` is the number of posters (labels) predicted. Expected figures a manifest does
    not record are NaN, never guessed; so is the verdict on them."""
    totals = summary[summary.section == "totals"].set_index("name")["count"]
    ok = int(totals.get("ok", 0))
    counts = summary[summary.section == "predicted_genre"].set_index("name")["count"]
    thresholds = manifest.thresholds
    expected = manifest.expected_rates
    prevalence = manifest.train_prevalence
    n_val = (getattr(manifest, "decision_rule", None) or {}).get("n_posters")
    tested = [g for g in genres if expected.get(g) is not None and ok]
    p_values = dict(
        zip(
            tested,
            shift_p_values(
                [int(counts.get(g, 0)) for g in tested],
                [ok] * len(tested),
                [float(expected[g]) for g in tested],
                [n_val] * len(tested),
            ),
            strict=True,
        )
    )
    out = []
    for g in genres:
        n = int(counts.get(g, 0))
        row = _row("decision", g, n, thresholds.get(g), prevalence.get(g), expected.get(g), n, ok)
        out.append((*row, p_values.get(g)))
    total = int(counts.reindex(list(genres)).fillna(0).sum())
    # An older manifest's means are the sums of its rates (models.manifest fills them in).
    mean_expected = manifest.expected_genres_per_poster
    mean_train = manifest.train_genres_per_poster
    mean = _row("genres_per_poster", "mean", total, None, mean_train, mean_expected, total, ok)
    out.append((*mean, None))
    table = pd.DataFrame(
        out, columns=["section", "name", "count", *DECISION_COLUMNS[:-2], "p_value"]
    )
    table["p_value"] = table["p_value"].astype("float64")
    table["flagged"] = pd.array(
        [None if pd.isna(p) else bool(p < SHIFT_ALPHA) for p in table["p_value"]],
        dtype="boolean",
    )
    return table[["section", "name", "count", *DECISION_COLUMNS]].astype({"count": "int64"})


def _row(section, name, count, threshold, train_rate, expected, predicted, ok) -> tuple:
    observed = predicted / ok if ok else None
    ratio = None
    if expected is not None and observed is not None:
        if expected > 0:
            ratio = observed / expected
        elif observed > 0:
            ratio = float("inf")  # never predicted on validation, predicted here
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
    )


def shift_p_values(
    observed: Sequence[int],
    posters: Sequence[int],
    expected: Sequence[float],
    validation_posters: Sequence[int | None],
) -> list[float]:
    """Per genre, whether ``observed`` of ``posters`` differs from the ``expected`` rate:
    two-sided exact p-values, Holm-adjusted over the genres given (so a flag at 0.05 is
    wrong for at most 5% of runs, whatever the number of genres).

    With the number of validation posters the rate was measured on, Fisher's exact test of
    the two samples (the expected rate is an estimate too: on ~100 validation posters, a
    run of thousands would otherwise flag its noise); without it (older manifests), the
    exact binomial test against the rate as if it were known. Both as scipy computes them
    (tests/test_rough_edges_reports.py checks against it), in numpy alone."""
    raw = [
        _binomial_p(k, n, p) if not n_val else _fisher_p(k, n, round(p * n_val), int(n_val))
        for k, n, p, n_val in zip(observed, posters, expected, validation_posters, strict=True)
    ]
    return holm(raw)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment: the smallest p times m, the next times m - 1, ...,
    kept non-decreasing and at most 1."""
    m = len(p_values)
    out = [1.0] * m
    running = 0.0
    for rank, i in enumerate(np.argsort(p_values, kind="stable")):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        out[i] = running
    return out


# Outcomes as likely as the observed one, to this relative tolerance, count as "as
# extreme" (scipy's rule, against rounding in the log-probabilities).
_TIE = 1 + 1e-7


def _log_factorials(n: int) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, n + 1)))])


def _binomial_p(k: int, n: int, p: float) -> float:
    if p <= 0.0 or p >= 1.0:
        return 1.0 if k == (0 if p <= 0.0 else n) else 0.0
    lf = _log_factorials(n)
    i = np.arange(n + 1)
    log_pmf = lf[n] - lf[i] - lf[n - i] + i * np.log(p) + (n - i) * np.log1p(-p)
    return _as_extreme(log_pmf, k)


def _fisher_p(k: int, n: int, k_val: int, n_val: int) -> float:
    """Two-sided Fisher's exact test of k of n against k_val of n_val."""
    total = k + k_val
    lf = _log_factorials(n + n_val)
    x = np.arange(max(0, total - n_val), min(total, n) + 1)
    log_pmf = (
        lf[n] - lf[x] - lf[n - x]
        + lf[n_val] - lf[total - x] - lf[n_val - total + x]
        - (lf[n + n_val] - lf[total] - lf[n + n_val - total])
    )  # fmt: skip
    return _as_extreme(log_pmf, k - x[0])


def _as_extreme(log_pmf: np.ndarray, at: int) -> float:
    pmf = np.exp(log_pmf - log_pmf.max())
    return float(min(1.0, pmf[pmf <= pmf[at] * _TIE].sum() / pmf.sum()))
