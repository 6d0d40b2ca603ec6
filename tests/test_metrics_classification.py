"""AUROC, ROC curve, Youden threshold, accuracy and per-label metrics vs brute force and sklearn."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from pipeline.metrics.classification import (
    auroc,
    binary_accuracy,
    per_label_metrics,
    roc_curve,
    youden_threshold,
)


def brute_auroc(scores, targets):
    pos = [s for s, t in zip(scores, targets, strict=True) if t == 1]
    neg = [s for s, t in zip(scores, targets, strict=True) if t != 1]
    if not pos or not neg:
        return math.nan
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def brute_rates(scores, targets, threshold):
    pos = [s for s, t in zip(scores, targets, strict=True) if t == 1]
    neg = [s for s, t in zip(scores, targets, strict=True) if t != 1]
    tpr = sum(s >= threshold for s in pos) / len(pos)
    fpr = sum(s >= threshold for s in neg) / len(neg)
    return fpr, tpr


def brute_youden(scores, targets):
    candidates = [*sorted(set(scores), reverse=True), math.inf]
    best, best_j = None, -math.inf
    for t in candidates:
        fpr, tpr = brute_rates(scores, targets, t)
        j = tpr - fpr
        if j > best_j + 1e-12 or (abs(j - best_j) <= 1e-12 and t > best):
            best, best_j = t, j
    return best


def random_case(seed, n=40, levels=5):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, levels, size=n).astype(float) / levels
    targets = rng.choice([1.0, 0.0, -1.0, np.nan], size=n, p=[0.35, 0.35, 0.15, 0.15])
    targets[:2] = [1.0, 0.0]
    return scores, targets


def test_auroc_hand_computed():
    # positives 0.8, 0.4; negatives 0.4, 0.1: pairs (0.8>0.4, 0.8>0.1, 0.4=0.4 -> ½, 0.4>0.1) = 3.5 / 4
    assert auroc([0.8, 0.4, 0.4, 0.1], [1, 1, 0, 0]) == pytest.approx(0.875)
    assert auroc([0.1, 0.9], [1, 0]) == 0.0
    assert auroc([0.5, 0.5, 0.5], [1, 0, 0]) == 0.5


def test_uncertain_and_blank_count_as_negative():
    scores = [0.9, 0.7, 0.3, 0.2]
    assert auroc(scores, [1, -1, np.nan, 0]) == auroc(scores, [1, 0, 0, 0]) == 1.0
    assert binary_accuracy(scores, [1, -1, np.nan, 0], 0.5) == 0.75


@pytest.mark.parametrize("seed", range(8))
def test_auroc_vs_brute_force_and_sklearn_with_ties(seed):
    scores, targets = random_case(seed)
    expected = brute_auroc(scores.tolist(), targets.tolist())
    assert auroc(scores, targets) == pytest.approx(expected, abs=1e-12)
    assert auroc(scores, targets) == pytest.approx(roc_auc_score(targets == 1, scores), abs=1e-12)
    assert auroc(torch.tensor(scores, dtype=torch.float32), torch.tensor(targets)) == pytest.approx(
        expected, abs=1e-6
    )


def test_auroc_single_class_empty_and_single_item_are_nan():
    assert math.isnan(auroc([0.1, 0.2], [0, -1]))
    assert math.isnan(auroc([0.1, 0.2], [1, 1]))
    assert math.isnan(auroc([], []))
    assert math.isnan(auroc([0.3], [1]))


@pytest.mark.parametrize("seed", range(6))
def test_roc_curve_vs_sklearn_and_brute_force(seed):
    scores, targets = random_case(seed)
    fpr, tpr, thresholds = roc_curve(scores, targets)
    sk_fpr, sk_tpr, sk_thr = sk_roc_curve(targets == 1, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    np.testing.assert_array_equal(thresholds, sk_thr)
    assert thresholds[0] == np.inf and np.all(np.diff(thresholds) < 0)
    for f, t, thr in zip(fpr, tpr, thresholds, strict=True):
        assert (f, t) == pytest.approx(brute_rates(scores.tolist(), targets.tolist(), thr))
    assert np.trapezoid(tpr, fpr) == pytest.approx(auroc(scores, targets))


def test_roc_curve_hand_computed_and_missing_class():
    fpr, tpr, thr = roc_curve([0.8, 0.4, 0.4, 0.1], [1, 1, 0, 0])
    np.testing.assert_array_equal(thr, [np.inf, 0.8, 0.4, 0.1])
    np.testing.assert_allclose(tpr, [0, 0.5, 1, 1])
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 1])
    fpr, tpr, thr = roc_curve([0.3, 0.2], [0, 0])
    assert np.isnan(tpr).all() and fpr.tolist() == [0, 0.5, 1]
    fpr, tpr, thr = roc_curve([], [])
    assert thr.tolist() == [np.inf] and np.isnan(fpr).all() and np.isnan(tpr).all()


def test_youden_hand_computed_and_ties_take_largest_threshold():
    # J at thresholds inf/0.8/0.4/0.1 = 0, 0.5, 0.5, 0 -> tie between 0.8 and 0.4 -> 0.8
    assert youden_threshold([0.8, 0.4, 0.4, 0.1], [1, 1, 0, 0]) == 0.8
    assert youden_threshold([0.9, 0.6, 0.5, 0.2], [1, 1, 0, 0]) == 0.6
    # J ties that differ in floating point (1/3 - 0 vs 2/3 - 1/3) are still ties
    assert youden_threshold([6, 5, 4, 3, 2, 1], [1, 0, 1, 0, 1, 0]) == 6


@pytest.mark.parametrize("seed", range(8))
def test_youden_vs_brute_force(seed):
    scores, targets = random_case(seed, n=25, levels=7)
    assert youden_threshold(scores, targets) == brute_youden(scores.tolist(), targets.tolist())


def test_youden_fallback_when_a_class_is_absent():
    assert youden_threshold([0.2, 0.9], [0, np.nan]) == math.inf
    assert youden_threshold([0.2, 0.9], [1, 1]) == -math.inf
    assert youden_threshold([], []) == math.inf
    assert binary_accuracy([0.2, 0.9], [0, 0], math.inf) == 1.0
    assert binary_accuracy([0.2, 0.9], [1, 1], -math.inf) == 1.0


def test_binary_accuracy_vs_brute_force():
    scores, targets = random_case(3)
    for threshold in (0.0, 0.2, 0.4, 0.5, 1.0):
        expected = np.mean([(s >= threshold) == (t == 1) for s, t in zip(scores, targets, strict=True)])
        assert binary_accuracy(scores, targets, threshold) == pytest.approx(expected)
    assert binary_accuracy([0.5], [1], 0.5) == 1.0
    assert math.isnan(binary_accuracy([], [], 0.5))


def test_per_label_metrics_matches_columnwise_brute_force_and_skips_nan():
    scores = np.array([[0.9, 0.1, 0.5], [0.2, 0.8, 0.5], [0.6, 0.3, 0.5], [0.4, 0.7, 0.5]])
    targets = np.array([[1, 0, 0], [0, 1, -1], [1, np.nan, 0], [0, 1, 0]])
    out = per_label_metrics(scores, targets, [0.5, 0.75, 0.5], ["a", "b", "c"])
    assert out["per_label"]["a"] == {"auroc": 1.0, "accuracy": 1.0, "threshold": 0.5, "n_pos": 2, "n": 4}
    assert out["per_label"]["b"]["auroc"] == brute_auroc(scores[:, 1], targets[:, 1]) == 1.0
    assert out["per_label"]["b"]["accuracy"] == 0.75
    assert math.isnan(out["per_label"]["c"]["auroc"]) and out["per_label"]["c"]["accuracy"] == 0.0
    assert out["macro_auroc"] == 1.0 and out["n_labels_auroc"] == 2
    assert out["macro_accuracy"] == pytest.approx((1.0 + 0.75 + 0.0) / 3)


def test_per_label_all_nan_macro_is_nan():
    out = per_label_metrics(np.zeros((2, 1)), np.zeros((2, 1)), [0.5], ["a"])
    assert math.isnan(out["macro_auroc"]) and out["n_labels_auroc"] == 0


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: auroc([0.1, 0.2], [1]), "same length"),
        (lambda: auroc([[0.1, 0.2]], [[1, 0]]), "1 dimension"),
        (lambda: auroc([0.1, np.nan], [1, 0]), "finite"),
        (lambda: auroc([0.1, 0.2], [1, 0.5]), "1 / 0 / -1 / NaN"),
        (lambda: roc_curve([0.1], [1, 0]), "same length"),
        (lambda: youden_threshold([0.1, 0.2], [2, 0]), "1 / 0 / -1 / NaN"),
        (lambda: binary_accuracy([0.1], [1], math.nan), "NaN"),
        (lambda: per_label_metrics(np.zeros((3, 2)), np.zeros((3, 3)), [0, 0], ["a", "b"]), "same shape"),
        (lambda: per_label_metrics(np.zeros((3, 2)), np.zeros((3, 2)), [0], ["a", "b"]), "one threshold"),
        (lambda: per_label_metrics(np.zeros((3, 2)), np.zeros((3, 2)), [0, 0], ["a"]), "one name"),
        (lambda: per_label_metrics(np.zeros((3, 2)), np.zeros((3, 2)), [0, 0], ["a", "a"]), "unique"),
    ],
)
def test_bad_inputs_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()
