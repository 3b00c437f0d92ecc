"""Turn validation and test probabilities into the full report a model is judged by."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from core import metrics as m

# Genres with fewer validation positives than this use the global threshold instead of
# their own: see core.metrics.tune_thresholds.
MIN_POSITIVES = 5


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
) -> dict:
    """Thresholds are tuned on validation only; every figure is on test, beside the
    label-frequency prior (its thresholds tuned the same way) and top-k-most-frequent."""
    global_t = m.tune_global_threshold(P_val, Y_val)
    thresholds = m.tune_thresholds(P_val, Y_val, default=global_t, min_positives=MIN_POSITIVES)
    prior_val, prior_test = (
        m.prior_scores(Y_train, len(Y_val)),
        m.prior_scores(Y_train, len(Y_test)),
    )
    prior_global = m.tune_global_threshold(prior_val, Y_val)
    prior_t = m.tune_thresholds(prior_val, Y_val, default=prior_global, min_positives=MIN_POSITIVES)
    return {
        "thresholds": dict(zip(genres, thresholds.tolist(), strict=True)),
        "global_threshold": global_t,
        "val": {
            "macro_map": m.evaluate(P_val, Y_val, genres, thresholds)["macro_map"],
            "n": len(Y_val),
        },
        "test": m.evaluate(P_test, Y_test, genres, thresholds, global_t),
        "baselines": {
            "prior": m.evaluate(prior_test, Y_test, genres, prior_t, prior_global),
            "top_k_frequent": m.top_k_frequent(Y_train, Y_test),
        },
        "bootstrap_95": {
            "model": m.bootstrap_ci(P_test, Y_test, thresholds, n_boot=n_boot, seed=seed),
            "prior": m.bootstrap_ci(prior_test, Y_test, prior_t, n_boot=n_boot, seed=seed),
        },
    }


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
    }
