"""Multi-label metrics that tell the truth about a genre classifier. Pure numpy.

``P`` is (n, g) probabilities, ``Y`` is (n, g) 0/1 labels. A genre with no positive
example in the evaluation set has no AP, AUC or F1: it is reported as absent and left
out of macro averages instead of being averaged in as zero.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

KS = (1, 3, 4)  # the paper shows the top 4


# --- ranking metrics, one genre at a time ---------------------------------------------


def average_precision(y: np.ndarray, p: np.ndarray) -> float | None:
    """Area under the step precision-recall curve (scikit-learn's definition)."""
    y = np.asarray(y, dtype=np.float64)
    if y.sum() == 0:
        return None
    tp, fp = _cumulative_counts(y, p)
    precision = tp / (tp + fp)
    recall = tp / tp[-1]
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def roc_auc(y: np.ndarray, p: np.ndarray) -> float | None:
    """Probability that a random positive outranks a random negative (ties count half)."""
    y = np.asarray(y, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = _average_ranks(np.asarray(p, dtype=np.float64))
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _cumulative_counts(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True/false positives when thresholding at each distinct score, highest first."""
    order = np.argsort(-np.asarray(p, dtype=np.float64), kind="mergesort")
    p_sorted, y_sorted = np.asarray(p)[order], y[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(p_sorted)), len(y_sorted) - 1]
    tp = np.cumsum(y_sorted)[last_of_tie]
    return tp, (last_of_tie + 1) - tp


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    sorted_vals = values[order]
    ranks = np.empty(len(values), dtype=np.float64)
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_vals)) + 1]
    ends = np.r_[starts[1:], len(values)]
    for s, e in zip(starts, ends, strict=True):
        ranks[order[s:e]] = (s + e + 1) / 2.0  # mean of 1-based ranks s+1 .. e
    return ranks


# --- thresholds ---------------------------------------------------------------------


def tune_thresholds(
    P: np.ndarray, Y: np.ndarray, default: float = 0.5, min_positives: int = 1
) -> np.ndarray:
    """Per genre, the score threshold (predict p >= t) that maximises F1 on (P, Y).

    Genres with fewer than ``min_positives`` positive examples keep ``default``: an
    F1-optimal threshold fitted to one or two positives is usually near zero, and would
    then put that genre on almost every poster.
    """
    out = np.full(P.shape[1], default, dtype=np.float64)
    for j in range(P.shape[1]):
        y = Y[:, j].astype(np.float64)
        if y.sum() < max(min_positives, 1):
            continue
        order = np.argsort(-P[:, j], kind="mergesort")
        p_sorted = P[order, j]
        tp, fp = _cumulative_counts(y, P[:, j])
        f1 = 2 * tp / (tp + fp + y.sum())
        cut = np.r_[np.flatnonzero(np.diff(p_sorted)), len(y) - 1][int(np.argmax(f1))]
        out[j] = float(p_sorted[cut])
    return out


def tune_global_threshold(P: np.ndarray, Y: np.ndarray) -> float:
    """One threshold for all genres, maximising micro-F1 on a 0.01 grid."""
    grid = np.round(np.arange(0.01, 1.0, 0.01), 2)
    scores = [f1_scores(Y, t <= P)["micro"] for t in grid]
    return float(grid[int(np.argmax(scores))])


def rate_capped_thresholds(
    thresholds: np.ndarray, P: np.ndarray, prevalence: np.ndarray, cap: float
) -> np.ndarray:
    """``thresholds`` raised where needed so that, on the posters of ``P``, no genre is
    predicted on more than ``cap`` times its ``prevalence`` (a share of posters).

    F1-optimal thresholds from a few dozen validation posters sit low for genres the model
    ranks poorly: F1 then rewards predicting them nearly everywhere. The cap bounds each
    genre's rate, and so the number of genres per poster, by what the labels show.
    """
    out = np.asarray(thresholds, dtype=np.float64).copy()
    n = len(P)
    for j in range(P.shape[1]):
        allowed = int(np.floor(cap * prevalence[j] * n))
        if allowed >= n:
            continue
        highest = np.sort(P[:, j])[::-1]
        # Above the (allowed+1)-th highest score: at most ``allowed`` posters reach it.
        out[j] = max(out[j], float(np.nextafter(highest[allowed], np.inf)))
    return out


def predicted_rates(P: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Share of posters each genre is predicted on."""
    return (np.asarray(thresholds) <= P).mean(axis=0) if len(P) else np.zeros(P.shape[1])


# --- set metrics ----------------------------------------------------------------------


def f1_scores(Y: np.ndarray, Yhat: np.ndarray) -> dict[str, float | None]:
    Y, Yhat = Y.astype(bool), np.asarray(Yhat, dtype=bool)
    tp = (Y & Yhat).sum(axis=0).astype(np.float64)
    fp = (~Y & Yhat).sum(axis=0)
    fn = (Y & ~Yhat).sum(axis=0)
    present = Y.sum(axis=0) > 0
    per_genre = np.divide(
        2 * tp, 2 * tp + fp + fn, out=np.zeros_like(tp), where=(2 * tp + fp + fn) > 0
    )
    denom = 2 * tp.sum() + fp.sum() + fn.sum()
    inter = (Y & Yhat).sum(axis=1)
    sizes = Y.sum(axis=1) + Yhat.sum(axis=1)
    # A poster with no true and no predicted genre is a perfect answer, not 0/0.
    samples = np.where(sizes > 0, 2 * inter / np.maximum(sizes, 1), 1.0)
    return {
        "micro": float(2 * tp.sum() / denom) if denom else None,
        "macro": float(per_genre[present].mean()) if present.any() else None,
        "samples": float(samples.mean()) if len(Y) else None,
        "per_genre": [float(v) if ok else None for v, ok in zip(per_genre, present, strict=True)],
    }


def precision_recall_at_k(
    P: np.ndarray, Y: np.ndarray, k: int
) -> tuple[float | None, float | None]:
    """Over posters with at least one true genre: share of the top k that are true, and
    share of the true genres found in the top k."""
    has = Y.sum(axis=1) > 0
    if not has.any():
        return None, None
    top = np.argsort(-P[has], axis=1, kind="mergesort")[:, :k]
    hits = np.take_along_axis(Y[has], top, axis=1).sum(axis=1)
    return float((hits / k).mean()), float((hits / Y[has].sum(axis=1)).mean())


# --- the report ------------------------------------------------------------------------


def evaluate(
    P: np.ndarray,
    Y: np.ndarray,
    genres: Sequence[str],
    thresholds: np.ndarray,
    global_threshold: float = 0.5,
) -> dict:
    """Every figure for one (P, Y) pair; ``thresholds`` should come from validation data."""
    P, Y = np.asarray(P, dtype=np.float64), np.asarray(Y, dtype=np.int64)
    aps = [average_precision(Y[:, j], P[:, j]) for j in range(Y.shape[1])]
    aucs = [roc_auc(Y[:, j], P[:, j]) for j in range(Y.shape[1])]
    tuned = f1_scores(Y, thresholds <= P)
    flat = f1_scores(Y, global_threshold <= P)
    report = {
        "n": len(Y),
        "per_genre": [
            {
                "genre": g,
                "support": int(Y[:, j].sum()),
                "ap": aps[j],
                "roc_auc": aucs[j],
                "f1": tuned["per_genre"][j],
                "threshold": float(thresholds[j]),
            }
            for j, g in enumerate(genres)
        ],
        "absent": [g for j, g in enumerate(genres) if Y[:, j].sum() == 0],
        "macro_map": _mean(aps),
        "micro_map": average_precision(Y.ravel(), P.ravel()),
        "macro_roc_auc": _mean(aucs),
        "f1_tuned": {k: tuned[k] for k in ("micro", "macro", "samples")},
        "f1_global": {k: flat[k] for k in ("micro", "macro", "samples")},
        "global_threshold": float(global_threshold),
        "hamming_loss": float(((thresholds <= P) != Y).mean()) if len(Y) else None,
        "subset_accuracy": float(((thresholds <= P) == Y).all(axis=1).mean()) if len(Y) else None,
        # The paper's figure: Keras 'accuracy' on sigmoid outputs is element-wise binary
        # accuracy at 0.5, which an all-zeros predictor already scores highly on.
        "keras_binary_accuracy": float(((P > 0.5) == Y).mean()) if len(Y) else None,
    }
    for k in KS:
        report[f"p@{k}"], report[f"r@{k}"] = precision_recall_at_k(P, Y, k)
    return report


def prior_scores(Y_train: np.ndarray, n: int) -> np.ndarray:
    """The label-frequency baseline: every poster gets the training prevalence of each genre."""
    return np.tile(Y_train.mean(axis=0), (n, 1))


def top_k_frequent(Y_train: np.ndarray, Y: np.ndarray, ks: Sequence[int] = KS) -> dict:
    """The top-k-most-frequent baseline: predict the k commonest training genres for all."""
    order = np.argsort(-Y_train.sum(axis=0), kind="mergesort")
    out = {}
    for k in ks:
        Yhat = np.zeros_like(Y, dtype=bool)
        Yhat[:, order[:k]] = True
        f1 = f1_scores(Y, Yhat)
        out[f"top{k}"] = {
            "micro_f1": f1["micro"],
            "macro_f1": f1["macro"],
            "samples_f1": f1["samples"],
        }
    return out


HEADLINE: Mapping[str, Callable[[np.ndarray, np.ndarray, np.ndarray], float | None]] = {
    "macro_map": lambda P, Y, t: _mean(
        [average_precision(Y[:, j], P[:, j]) for j in range(Y.shape[1])]
    ),
    "micro_map": lambda P, Y, t: average_precision(Y.ravel(), P.ravel()),
    "p@3": lambda P, Y, t: precision_recall_at_k(P, Y, 3)[0],
    "micro_f1": lambda P, Y, t: f1_scores(Y, t <= P)["micro"],
}


# Fewer posters than this get no interval: their resamples hold a handful of distinct
# posters, so no bootstrap (BCa included) says much about the next few hundred.
MIN_INTERVAL_POSTERS = 20


def bootstrap_ci(
    P: np.ndarray,
    Y: np.ndarray,
    thresholds: np.ndarray,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    metrics: Mapping[str, Callable] = HEADLINE,
) -> dict[str, tuple[float, float]]:
    """95% BCa intervals (bias-corrected and accelerated; Efron 1987) of the headline
    figures, resampling posters. A figure is left out when there are fewer than
    :data:`MIN_INTERVAL_POSTERS` posters, or when the bootstrap cannot place its interval
    (:func:`bca_interval`).

    Not percentile intervals: on a few dozen posters a resample repeats posters and drops
    rare genres, so ranking figures such as macro mAP score higher on resamples than on the
    posters themselves, and a percentile interval sat above its own figure ("0.417 [0.415,
    0.700]"). BCa moves the percentiles by that bias (the share of resamples below the
    figure) and by the skew the jackknife measures.
    """
    n = len(Y)
    if n < MIN_INTERVAL_POSTERS:
        return {}
    draws = _bootstrap(n, n_boot, seed, metrics, lambda fn, idx: fn(P[idx], Y[idx], thresholds))
    out = {}
    for name, fn in metrics.items():
        point = fn(P, Y, thresholds)
        if point is None or not draws[name]:
            continue
        keep = np.ones(n, dtype=bool)
        jack = []
        for i in range(n):
            keep[i] = False
            value = fn(P[keep], Y[keep], thresholds)
            keep[i] = True
            if value is not None:
                jack.append(value)
        interval = bca_interval(np.asarray(draws[name]), point, np.asarray(jack))
        if interval is not None:
            out[name] = interval
    return out


def bca_interval(
    draws: np.ndarray, point: float, jackknife: np.ndarray, level: float = 0.95
) -> tuple[float, float] | None:
    """The BCa interval from bootstrap ``draws`` of a figure, its value ``point`` on the
    whole set and its leave-one-out values ``jackknife``. None where the bootstrap cannot
    place it: the figure lies outside the resamples' values (no bias correction exists),
    or the corrected percentiles fall among the few most extreme draws, where the interval
    would be a few resamples' accident."""
    from statistics import NormalDist

    normal = NormalDist()
    below = (np.sum(draws < point) + 0.5 * np.sum(draws == point)) / len(draws)
    if not 0.0 < below < 1.0:
        return None
    z0 = normal.inv_cdf(below)
    d = jackknife.mean() - jackknife if len(jackknife) else np.zeros(1)
    spread = float(np.sum(d**2))
    accel = float(np.sum(d**3)) / (6.0 * spread**1.5) if spread > 0 else 0.0
    quantiles = []
    for q in ((1 - level) / 2, (1 + level) / 2):
        z = z0 + normal.inv_cdf(q)
        quantiles.append(normal.cdf(z0 + z / (1 - accel * z)))
    # A corrected tail under a fifth of the nominal one (the figure's bias is as large as
    # the interval's spread) or beyond the draws rests on a few resamples' accidents.
    tail = min(quantiles[0], 1 - quantiles[1])
    if tail < (1 - level) / 10 or tail * len(draws) < 1:
        return None
    lo, hi = np.quantile(draws, quantiles)
    return float(lo), float(hi)


def _bootstrap(
    n: int, n_boot: int, seed: int, metrics: Mapping[str, Callable], score: Callable
) -> dict[str, list[float]]:
    """``score(metric, row_indices)`` on ``n_boot`` resamples of ``n`` rows; Nones dropped
    (a resample can miss every positive of a genre)."""
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {name: [] for name in metrics}
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        for name, fn in metrics.items():
            value = score(fn, idx)
            if value is not None:
                draws[name].append(value)
    return draws


def _mean(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def paired_bootstrap_diff(
    P_a: np.ndarray,
    P_b: np.ndarray,
    Y: np.ndarray,
    thresholds_a: np.ndarray,
    thresholds_b: np.ndarray,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    metrics: Mapping[str, Callable] = HEADLINE,
) -> dict[str, tuple[float, float, float]]:
    """95% interval of (a - b) for each headline figure, both scored on the same resamples.

    Two separate intervals can overlap while the paired difference is clearly positive:
    posters that are hard for one model are hard for the other, and pairing cancels that.
    Returns (point difference, low, high).
    """

    def diff(fn, idx):
        a, b = fn(P_a[idx], Y[idx], thresholds_a), fn(P_b[idx], Y[idx], thresholds_b)
        return None if a is None or b is None else a - b

    draws = _bootstrap(len(Y), n_boot, seed, metrics, diff)
    out = {}
    for name, fn in metrics.items():
        a, b = fn(P_a, Y, thresholds_a), fn(P_b, Y, thresholds_b)
        if draws[name] and a is not None and b is not None:
            lo, hi = np.percentile(draws[name], [2.5, 97.5])
            out[name] = (float(a - b), float(lo), float(hi))
    return out


POOLED = "pooled"


def by_label_source(
    P: np.ndarray,
    Y: np.ndarray,
    sources: Sequence[str | None],
    thresholds: np.ndarray,
    figures: Mapping[str, Callable[[np.ndarray, np.ndarray, np.ndarray], float | None]] = HEADLINE,
) -> dict[str, dict]:
    """``figures`` on all posters (``"pooled"``) and on each label source's own: the two
    label conventions (AniList's ~3.9 genres a poster, MAL-mapped ~2.4) score differently
    enough that a pooled figure says little about posters of one convention. Each entry
    also has ``n`` and the predicted and true genres per poster. Posters of no known source
    count in the pooled figures only. Genres absent from a subset drop out of its macro
    figure (``average_precision`` gives None there)."""
    P, Y = np.asarray(P, dtype=np.float64), np.asarray(Y, dtype=np.int64)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    labels = np.array([s if isinstance(s, str) and s else "" for s in sources], dtype=object)
    if len(labels) != len(Y):
        raise ValueError("sources must have one entry per poster")
    subsets = {POOLED: np.ones(len(Y), dtype=bool)}
    for name in sorted(set(labels) - {""}):
        subsets[name] = labels == name
    out = {}
    for name, rows in subsets.items():
        if not rows.any():
            continue
        p, y = P[rows], Y[rows]
        out[name] = {
            "n": int(rows.sum()),
            **{k: f(p, y, thresholds) for k, f in figures.items()},
            "predicted_per_poster": float((thresholds <= p).sum(axis=1).mean()),
            "true_per_poster": float(y.sum(axis=1).mean()),
        }
    return out
