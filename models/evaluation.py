"""Turn validation and test probabilities into the full report a model is judged by."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from anigenre.core import metrics as m
from anigenre.models.manifest import Manifest

# The prior baseline's genres with fewer validation positives than this use its global
# threshold instead of their own: see core.metrics.tune_thresholds.
MIN_POSITIVES = 5

# The decision rule of the `predicted` column: one micro-F1 threshold for all genres, tuned
# on validation, raised for a genre where needed so that it is predicted on no more than
# RATE_CAP times its training prevalence of the validation posters. Per-genre F1 thresholds
# from ~100 validation posters put 1.5x the true number of genres on unseen posters and one
# genre at up to 11x its rate; see bench/decisions.py for the rules measured.
RATE_CAP = 1.25
DECISION_RULE = (
    "one micro-F1-optimal threshold for all genres, tuned on validation, raised for a "
    f"genre where needed so that it is predicted on at most {RATE_CAP}x its training "
    "prevalence of the validation posters"
)


def evaluation_report(
    P_val: np.ndarray,
    Y_val: np.ndarray,
    P_test: np.ndarray,
    Y_test: np.ndarray,
    Y_train: np.ndarray,
    genres: Sequence[str],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    sources: Sequence[str | None] | None = None,
) -> dict:
    """Thresholds are tuned on validation only; every figure is on test, beside the
    label-frequency prior (its thresholds tuned the same way) and top-k-most-frequent.
    ``sources``: each test poster's label source, for the figures per source."""
    rule = decision_rule(P_val, Y_val, Y_train, genres)
    prevalence = np.asarray(Y_train, dtype=np.float64).mean(axis=0)
    thresholds = np.array([rule["thresholds"][g] for g in genres], dtype=np.float64)
    prior_val = m.prior_scores(prevalence[None, :], len(Y_val))
    prior_global = m.tune_global_threshold(prior_val, Y_val)
    prior_t = m.tune_thresholds(prior_val, Y_val, default=prior_global, min_positives=MIN_POSITIVES)
    decisions = {
        "thresholds": thresholds,
        "global_threshold": rule["global_threshold"],
        "train_prevalence": prevalence,
        "prior_thresholds": prior_t,
        "prior_global_threshold": prior_global,
    }
    return {
        **rule,
        "prior_thresholds": dict(zip(genres, prior_t.tolist(), strict=True)),
        "prior_global_threshold": prior_global,
        "val": {
            "macro_map": m.evaluate(P_val, Y_val, genres, thresholds)["macro_map"],
            "n": len(Y_val),
        },
        **score(P_test, Y_test, genres, decisions, n_boot=n_boot, seed=seed, sources=sources),
    }


def decision_rule(
    P_val: np.ndarray, Y_val: np.ndarray, Y_train: np.ndarray, genres: Sequence[str]
) -> dict:
    """The ``predicted`` column's rule as the manifest records it: its name and parameters,
    each genre's threshold, and what it is expected to do to posters like the validation
    ones (each genre's predicted rate, genres per poster) beside what the training labels
    show (each genre's prevalence, true genres per poster). Pure: arrays in, JSON out."""
    Y_train = np.asarray(Y_train, dtype=np.float64)
    prevalence = Y_train.mean(axis=0)
    global_t = m.tune_global_threshold(P_val, Y_val)
    thresholds = m.rate_capped_thresholds(
        np.full(len(genres), global_t), P_val, prevalence, RATE_CAP
    )
    rates = m.predicted_rates(P_val, thresholds)
    return {
        "thresholds": dict(zip(genres, thresholds.tolist(), strict=True)),
        "global_threshold": global_t,
        "decision_rule": {
            "rule": "global-rate-capped",
            "cap": RATE_CAP,
            "global_threshold": global_t,
            "tuned_on": "validation",
            "n_posters": len(P_val),
            "text": DECISION_RULE,
        },
        # The share of posters each genre is predicted on, as measured on validation.
        "expected_rates": dict(zip(genres, rates.tolist(), strict=True)),
        "expected_genres_per_poster": float(rates.sum()),
        "train_prevalence": dict(zip(genres, prevalence.tolist(), strict=True)),
        "train_genres_per_poster": float(Y_train.sum(axis=1).mean()) if len(Y_train) else None,
    }


def score(
    P: np.ndarray,
    Y: np.ndarray,
    genres: Sequence[str],
    decisions: dict,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    sources: Sequence[str | None] | None = None,
) -> dict:
    """Every figure of the model and its baselines on (P, Y): the one definition that
    ``train`` (on its test split) and ``evaluate`` (on any labelled posters) both print.
    Where ``sources`` (each poster's label source) names any, ``by_label_source`` holds
    the headline figures pooled and per source (``core.metrics.by_label_source``).

    ``decisions`` holds what was fixed before these posters were seen: the model's
    ``thresholds`` and ``global_threshold``, the training ``train_prevalence`` and the
    prior's ``prior_thresholds`` and ``prior_global_threshold`` (arrays in genre order).
    """
    # Labels as integers whatever their source (training keeps them float32): bootstrap
    # figures would otherwise differ in the last digits between `train` and `evaluate`.
    P, Y = np.asarray(P, dtype=np.float64), np.asarray(Y, dtype=np.int64)
    thresholds = np.asarray(decisions["thresholds"], dtype=np.float64)
    prevalence = np.asarray(decisions["train_prevalence"], dtype=np.float64)
    prior_t = np.asarray(decisions["prior_thresholds"], dtype=np.float64)
    prior = m.prior_scores(prevalence[None, :], len(Y))
    known = sources is not None and any(isinstance(s, str) and s for s in sources)
    return {
        **({"by_label_source": m.by_label_source(P, Y, sources, thresholds)} if known else {}),
        "test": m.evaluate(P, Y, genres, thresholds, decisions["global_threshold"]),
        "baselines": {
            "prior": m.evaluate(prior, Y, genres, prior_t, decisions["prior_global_threshold"]),
            "top_k_frequent": m.top_k_frequent(prevalence[None, :], Y),
        },
        "bootstrap_95": {
            "model": m.bootstrap_ci(P, Y, thresholds, n_boot=n_boot, seed=seed),
            "prior": m.bootstrap_ci(prior, Y, prior_t, n_boot=n_boot, seed=seed),
            "per_genre_ap": per_genre_ap_ci(P, Y, genres, n_boot=n_boot, seed=seed),
        },
    }


def per_genre_ap_ci(
    P: np.ndarray, Y: np.ndarray, genres: Sequence[str], *, n_boot: int, seed: int
) -> dict[str, list[float]]:
    """95% bootstrap interval of each genre's AP (genres whose positives no resample keeps
    are left out), by the same resampling as the headline intervals."""
    aps = {
        g: lambda P_, Y_, _t, j=j: m.average_precision(Y_[:, j], P_[:, j])
        for j, g in enumerate(genres)
    }
    cis = m.bootstrap_ci(P, Y, np.zeros(len(genres)), n_boot=n_boot, seed=seed, metrics=aps)
    return {g: list(ci) for g, ci in cis.items()}


def decisions_of(manifest: Manifest, genres: Sequence[str]) -> tuple[dict, bool]:
    """The manifest's recorded decisions for :func:`score`, and whether the prior's own
    thresholds were recorded (models trained before they were lack them)."""

    def arr(values: Mapping[str, float]) -> np.ndarray:
        return np.array([values[g] for g in genres], dtype=np.float64)

    prior = manifest.prior_thresholds
    return {
        "thresholds": arr(manifest.thresholds),
        "global_threshold": manifest.global_threshold,
        "train_prevalence": arr(manifest.train_prevalence),
        "prior_thresholds": arr(prior) if prior is not None else None,
        "prior_global_threshold": manifest.prior_global_threshold,
    }, prior is not None


HEADLINE = ("macro_map", "micro_map", "p@3", "micro_f1")


def summary(report: dict) -> dict:
    """The figures a listing shows: test headline numbers with intervals, and the prior's."""
    test, prior = report["test"], report["baselines"]["prior"]

    def pick(r: dict) -> dict:
        return {
            "macro_map": r["macro_map"],
            "micro_map": r["micro_map"],
            "p@3": r["p@3"],
            "micro_f1": r["f1_tuned"]["micro"],
            "keras_binary_accuracy": r["keras_binary_accuracy"],
        }

    return {
        "test": pick(test),
        "prior": pick(prior),
        "test_ci95": report["bootstrap_95"]["model"],
        "prior_ci95": report["bootstrap_95"]["prior"],
        "n_test": test["n"],
        **({"by_label_source": by_source} if (by_source := report.get("by_label_source")) else {}),
    }
