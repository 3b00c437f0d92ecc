"""The decision rule on synthetic scores: the cap holds genre rates to what labels show."""

from __future__ import annotations

import numpy as np

from core import metrics as m


def scores(n: int, prevalence: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels at ``prevalence`` and weakly informative scores: the kind F1 over-predicts on."""
    rng = np.random.default_rng(seed)
    Y = (rng.random((n, len(prevalence))) < prevalence).astype(int)
    P = np.clip(0.25 + 0.15 * Y + rng.normal(0, 0.12, Y.shape), 0, 1)
    return P, Y


def test_cap_holds_each_genre_to_its_rate_and_never_lowers_a_threshold():
    prevalence = np.array([0.07, 0.2, 0.5, 0.02])
    P, Y = scores(120, prevalence, seed=0)
    tuned = m.tune_thresholds(P, Y)
    assert (m.predicted_rates(P, tuned) > 1.5 * prevalence).any()  # F1 alone over-predicts
    capped = m.rate_capped_thresholds(tuned, P, prevalence, cap=1.25)
    assert (capped >= tuned).all()
    assert (m.predicted_rates(P, capped) <= 1.25 * prevalence + 1e-12).all()
    # A genre already under its cap keeps its F1 threshold.
    under = m.predicted_rates(P, tuned) <= 1.25 * prevalence
    assert np.array_equal(capped[under], tuned[under])

    # On fresh posters from the same distribution the rates stay near the cap.
    P_new, _ = scores(4000, prevalence, seed=1)
    assert (m.predicted_rates(P_new, capped) <= 2.5 * prevalence).all()


def test_cap_with_ties_predicts_at_most_the_allowed_count():
    P = np.array([[0.9], [0.5], [0.5], [0.5], [0.1]])
    t = m.rate_capped_thresholds(np.array([0.2]), P, np.array([0.4]), cap=1.0)  # 2 allowed
    assert (t <= P).sum() == 1  # the three tied posters go together or not at all
