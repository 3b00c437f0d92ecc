"""core.metrics against scikit-learn, and the behaviours sklearn does not define for us."""

import numpy as np
import pytest
from anigenre.core import metrics as m
from sklearn import metrics as skm


def _data(seed=0, n=300, g=6):
    rng = np.random.default_rng(seed)
    Y = (rng.random((n, g)) < rng.uniform(0.05, 0.5, g)).astype(int)
    P = np.clip(Y * 0.3 + rng.random((n, g)) * 0.7, 0, 1)
    P[:40] = np.round(P[:40], 1)  # ties, which AP and AUC must handle like sklearn
    return P, Y


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ranking_metrics_match_sklearn(seed):
    P, Y = _data(seed)
    for j in range(Y.shape[1]):
        assert m.average_precision(Y[:, j], P[:, j]) == pytest.approx(
            skm.average_precision_score(Y[:, j], P[:, j])
        )
        assert m.roc_auc(Y[:, j], P[:, j]) == pytest.approx(skm.roc_auc_score(Y[:, j], P[:, j]))
    assert m.average_precision(Y.ravel(), P.ravel()) == pytest.approx(
        skm.average_precision_score(Y, P, average="micro")
    )


def test_f1_hamming_subset_match_sklearn():
    P, Y = _data(3)
    Yhat = P >= 0.5
    f1 = m.f1_scores(Y, Yhat)
    assert f1["micro"] == pytest.approx(skm.f1_score(Y, Yhat, average="micro"))
    assert f1["macro"] == pytest.approx(skm.f1_score(Y, Yhat, average="macro"))
    assert f1["samples"] == pytest.approx(
        skm.f1_score(Y, Yhat, average="samples", zero_division=1.0)
    )
    thresholds = np.full(Y.shape[1], 0.5)
    report = m.evaluate(P, Y, list("abcdef"), thresholds)
    assert report["hamming_loss"] == pytest.approx(skm.hamming_loss(Y, Yhat))
    assert report["subset_accuracy"] == pytest.approx(skm.accuracy_score(Y, Yhat))


def test_absent_genres_are_reported_not_averaged_as_zero():
    P, Y = _data(4)
    Y[:, 2] = 0
    report = m.evaluate(P, Y, list("abcdef"), np.full(6, 0.5))
    assert report["absent"] == ["c"]
    assert report["per_genre"][2]["ap"] is None and report["per_genre"][2]["f1"] is None
    present = [j for j in range(6) if j != 2]
    assert report["macro_map"] == pytest.approx(
        np.mean([skm.average_precision_score(Y[:, j], P[:, j]) for j in present])
    )
    assert report["f1_tuned"]["macro"] == pytest.approx(
        skm.f1_score(Y, P >= 0.5, average="macro", labels=present)
    )


def test_keras_accuracy_flatters_an_all_zeros_predictor():
    rng = np.random.default_rng(5)
    Y = (rng.random((500, 18)) < 0.15).astype(int)  # ~2.7 genres a poster, like the data
    zeros = np.zeros_like(Y, dtype=float)
    report = m.evaluate(zeros, Y, [str(i) for i in range(18)], np.full(18, 0.5))
    assert report["keras_binary_accuracy"] > 0.8
    assert report["f1_tuned"]["micro"] == 0.0


def test_precision_and_recall_at_k():
    P = np.array([[0.9, 0.8, 0.1, 0.0], [0.1, 0.2, 0.3, 0.4]])
    Y = np.array([[1, 0, 1, 0], [0, 0, 0, 1]])
    p1, r1 = m.precision_recall_at_k(P, Y, 1)
    assert (p1, r1) == (pytest.approx(1.0), pytest.approx(0.75))
    p3, r3 = m.precision_recall_at_k(P, Y, 3)
    assert p3 == pytest.approx((2 / 3 + 1 / 3) / 2) and r3 == pytest.approx(1.0)


def test_tuned_thresholds_maximise_f1_on_the_tuning_data():
    P, Y = _data(6)
    t = m.tune_thresholds(P, Y)
    for j in range(Y.shape[1]):
        best = skm.f1_score(Y[:, j], P[:, j] >= t[j])
        for other in np.unique(P[:, j]):
            assert skm.f1_score(Y[:, j], P[:, j] >= other) <= best + 1e-12
    g = m.tune_global_threshold(P, Y)
    assert 0 < g < 1


def test_baselines_and_bootstrap():
    P, Y = _data(7)
    prior = m.prior_scores(Y[:200], len(Y) - 200)
    report = m.evaluate(prior, Y[200:], list("abcdef"), np.full(6, 0.5))
    # Constant scores rank nothing: AP equals prevalence.
    assert report["per_genre"][0]["ap"] == pytest.approx(Y[200:, 0].mean())
    top = m.top_k_frequent(Y[:200], Y[200:])
    assert set(top) == {"top1", "top3", "top4"}
    ci = m.bootstrap_ci(P, Y, np.full(6, 0.5), n_boot=200, seed=1)
    point = m.evaluate(P, Y, list("abcdef"), np.full(6, 0.5))
    for name, key in [("macro_map", "macro_map"), ("micro_map", "micro_map"), ("p@3", "p@3")]:
        lo, hi = ci[name]
        assert lo < point[key] < hi and hi - lo < 0.2
    assert m.bootstrap_ci(P, Y, np.full(6, 0.5), n_boot=50, seed=1) == m.bootstrap_ci(
        P, Y, np.full(6, 0.5), n_boot=50, seed=1
    )


def test_paired_difference_detects_a_real_gap_and_not_a_fake_one():
    P, Y = _data(8)
    t = np.full(6, 0.5)
    worse = 0.5 * P + 0.5 * np.random.default_rng(1).random(P.shape)
    diff = m.paired_bootstrap_diff(P, worse, Y, t, t, n_boot=300)
    point, lo, hi = diff["macro_map"]
    assert lo > 0 and lo <= point <= hi
    same = m.paired_bootstrap_diff(P, P, Y, t, t, n_boot=50)
    assert same["micro_map"] == (0.0, 0.0, 0.0)


def test_thresholds_need_enough_positives_to_be_tuned():
    rng = np.random.default_rng(9)
    P = rng.random((100, 2))
    Y = np.zeros((100, 2), dtype=int)
    Y[:30, 0] = 1
    Y[0, 1] = 1  # one positive: an F1-optimal threshold would be P[0, 1], maybe tiny
    t = m.tune_thresholds(P, Y, default=0.4, min_positives=5)
    assert t[1] == 0.4 and t[0] != 0.4
