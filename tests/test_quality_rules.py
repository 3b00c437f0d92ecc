"""The decision rule on synthetic scores: the cap holds genre rates to what labels show,
and the record of the rule says what it will do."""

from __future__ import annotations

import numpy as np
import pytest
from anigenre.core import metrics as m
from anigenre.models.evaluation import RATE_CAP, decision_rule


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


def test_the_shipped_rule_records_rates_it_keeps_and_genres_per_poster_near_the_truth():
    prevalence = np.array([0.07, 0.2, 0.5, 0.02, 0.35, 0.12])
    genres = [f"g{j}" for j in range(len(prevalence))]
    P_val, Y_val = scores(150, prevalence, seed=1)
    _, Y_train = scores(600, prevalence, seed=11)
    rule = decision_rule(P_val, Y_val, Y_train, genres)

    assert rule["decision_rule"]["rule"] == "global-rate-capped"
    assert rule["decision_rule"]["cap"] == RATE_CAP and rule["decision_rule"]["n_posters"] == 150
    thresholds = np.array([rule["thresholds"][g] for g in genres])
    assert (thresholds >= rule["global_threshold"]).all()  # the cap only ever raises
    train_rate = Y_train.mean(axis=0)
    rates = np.array([rule["expected_rates"][g] for g in genres])
    # Expected rates are what the thresholds do to the validation posters, within the cap.
    assert np.allclose(rates, m.predicted_rates(P_val, thresholds))
    assert (rates <= RATE_CAP * train_rate + 1e-12).all()
    assert rule["expected_genres_per_poster"] == pytest.approx(rates.sum())
    assert rule["train_genres_per_poster"] == pytest.approx(Y_train.sum(axis=1).mean())
    assert [rule["train_prevalence"][g] for g in genres] == pytest.approx(train_rate)

    # On fresh posters the capped rule puts about the true number of genres on a poster,
    # where the plain global threshold over-predicts.
    P_new, Y_new = scores(4000, prevalence, seed=21)
    true_mean = Y_new.sum(axis=1).mean()
    assert 0.8 * true_mean <= (thresholds <= P_new).sum(axis=1).mean() <= 1.25 * true_mean
    assert (rule["global_threshold"] <= P_new).sum(axis=1).mean() > 1.25 * true_mean
