"""Paired bootstrap over test studies: exact enumeration, analytic variance, scipy, and per-resample equality
with the point-estimate functions of every metric module."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import stats

from pipeline.metrics import Ranking, aurc, excess_aurc, expected_calibration_error, retrieval_metrics
from pipeline.metrics.bootstrap import (
    bootstrap_indices,
    ece_resampled,
    interval,
    intervals,
    percentile_interval,
    recall_resampled,
    retrieval_resampled,
    selective_resampled,
    two_sided_p_value,
    zero_shot_argmax_resampled,
    zero_shot_binary_resampled,
)
from pipeline.metrics.classification import per_label_metrics
from pipeline.metrics.selective import oracle_aurc, oracle_aurc_by_count
from pipeline.metrics.zeroshot import argmax_outcomes, zero_shot_argmax


def ranking(rank: np.ndarray) -> Ranking:
    rank = torch.as_tensor(rank)
    return Ranking(
        rank,
        torch.zeros(len(rank)),
        torch.zeros(len(rank), 1, dtype=torch.long),
        torch.zeros(len(rank), 1),
        1000,
    )


# ---- resample indices ------------------------------------------------------------------------------------


def test_indices_depend_only_on_n_resamples_and_seed():
    first = bootstrap_indices(7, 50, 3)
    assert first.shape == (50, 7) and first.dtype == np.int64 and first.min() >= 0 and first.max() < 7
    assert np.array_equal(first, bootstrap_indices(7, 50, 3))
    assert np.array_equal(first, np.random.Generator(np.random.PCG64(3)).integers(0, 7, size=(50, 7)))
    assert not np.array_equal(first, bootstrap_indices(7, 50, 4))
    with pytest.raises(ValueError, match="n_resamples"):
        bootstrap_indices(7, 0, 3)


# ---- the bootstrap distribution: exact enumeration, analytic variance, scipy --------------------------------


def test_monte_carlo_recall_matches_the_exact_bootstrap_distribution():
    """n = 5: all 5^5 = 3125 equally likely resamples give the exact bootstrap distribution of R@2."""
    rank = np.array([0, 1, 4, 7, 2])  # hits at K = 2: 1, 1, 0, 0, 0 -> p = 0.4
    n, k, p = len(rank), 2, 0.4
    every = np.array(list(itertools.product(range(n), repeat=n)))
    exact = recall_resampled(rank, every, [k])[k]
    # the bootstrap variance of a mean of Bernoulli outcomes is p̂(1 − p̂)/n (= s²/n · (n − 1)/n)
    assert exact.mean() == pytest.approx(100 * p)
    assert exact.var() == pytest.approx(100**2 * p * (1 - p) / n)
    mc = recall_resampled(rank, bootstrap_indices(n, 20_000, 0), [k])[k]
    assert mc.mean() == pytest.approx(exact.mean(), abs=1.0)
    assert mc.var() == pytest.approx(exact.var(), rel=0.05)
    for value in np.unique(exact):  # the CDF at every atom, within Monte-Carlo error
        assert (mc <= value).mean() == pytest.approx((exact <= value).mean(), abs=0.015)
    low, high = percentile_interval(mc, 0.9)
    assert (low, high) == (np.quantile(exact, 0.05), np.quantile(exact, 0.95))  # 0 and 80: on atoms


def test_percentile_interval_agrees_with_scipy():
    rng = np.random.default_rng(5)
    rank = rng.integers(0, 40, 200)
    hits = 100.0 * (rank < 10)
    ours = percentile_interval(recall_resampled(rank, bootstrap_indices(200, 8000, 1), [10])[10], 0.95)
    theirs = stats.bootstrap(
        (hits,), np.mean, n_resamples=8000, method="percentile", confidence_level=0.95, random_state=rng
    ).confidence_interval
    se = hits.std() / math.sqrt(200)
    assert ours[0] == pytest.approx(theirs.low, abs=0.15 * se)
    assert ours[1] == pytest.approx(theirs.high, abs=0.15 * se)
    assert ours[0] < hits.mean() < ours[1]


def test_interval_level_is_configurable_and_validated():
    values = np.random.default_rng(0).normal(size=4000)
    wide, narrow = percentile_interval(values, 0.95), percentile_interval(values, 0.5)
    assert wide[0] < narrow[0] < narrow[1] < wide[1]
    assert narrow == pytest.approx(tuple(np.quantile(values, [0.25, 0.75])))
    for level in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="level"):
            percentile_interval(values, level)


def test_undefined_resamples_are_skipped_and_counted():
    values = np.array([1.0, np.nan, 3.0, np.nan, 2.0])
    assert interval(values, 0.5, count_undefined=True) == {"low": 1.5, "high": 2.5, "n_undefined": 2}
    assert interval(values, 0.5) == {"low": 1.5, "high": 2.5}
    low, high = percentile_interval([np.nan, np.nan])
    assert math.isnan(low) and math.isnan(high)
    tree = intervals({"a": values, "b": {"c": values}}, 0.5, count_undefined=True)
    assert tree["b"]["c"] == tree["a"]


def test_two_sided_p_value():
    assert two_sided_p_value(np.zeros(99)) == 1.0
    assert two_sided_p_value(np.ones(99)) == pytest.approx(2 / 100)
    assert two_sided_p_value(-np.ones(99)) == pytest.approx(2 / 100)
    d = np.r_[np.full(10, -1.0), np.ones(89)]  # 10 of 99 at or below 0: p = 2 · 11/100
    assert two_sided_p_value(d) == pytest.approx(0.22)
    assert math.isnan(two_sided_p_value(np.array([np.nan])))


# ---- per-resample values equal the point-estimate functions on the resampled queries ----------------------


@pytest.fixture
def queries():
    rng = np.random.default_rng(11)
    n = 40
    rank = rng.integers(0, 30, n)
    confidence = np.round(rng.random(n), 1)  # coarse: ties, on top of the resamples' duplicates
    top1 = rng.random(n)
    return rank, confidence, top1, bootstrap_indices(n, 60, 2)


def test_retrieval_resamples_equal_retrieval_metrics(queries):
    rank, _, _, idx = queries
    other = np.roll(rank, 3)
    values = retrieval_resampled(rank, other, idx, (1, 5, 10, 100), (1, 5))
    for b in range(len(idx)):
        expected = retrieval_metrics(ranking(rank[idx[b]]), ranking(other[idx[b]]), (1, 5, 10, 100), (1, 5))
        for name in ("i2t_r1", "t2i_r10", "i2t_r100", "rsum", "rsum6"):
            assert values[name][b] == pytest.approx(expected[name], abs=1e-9)
    point = retrieval_resampled(rank, other, np.arange(len(rank))[None])
    assert point["rsum"][0] == pytest.approx(retrieval_metrics(ranking(rank), ranking(other))["rsum"])


def test_selective_resamples_equal_aurc_and_excess_aurc(queries):
    rank, confidence, _, idx = queries
    values = selective_resampled(rank, confidence, idx, (1, 10))
    for k in (1, 10):
        for b in range(len(idx)):
            correct, conf = torch.as_tensor(rank[idx[b]] < k), torch.as_tensor(confidence[idx[b]])
            assert values[f"aurc_r{k}"][b] == pytest.approx(aurc(correct, conf), abs=1e-12)
            assert values[f"eaurc_r{k}"][b] == pytest.approx(excess_aurc(correct, conf), abs=1e-12)


def test_oracle_aurc_table_is_oracle_aurc_by_hit_count():
    table = oracle_aurc_by_count(6)
    for c in range(7):
        correct = torch.tensor([True] * c + [False] * (6 - c))[torch.randperm(6)]
        assert table[c] == pytest.approx(oracle_aurc(correct), abs=1e-15)


def test_ece_resamples_equal_expected_calibration_error(queries):
    rank, _, top1, idx = queries
    values = ece_resampled(top1, rank == 0, idx, 15)
    for b in range(len(idx)):
        expected = expected_calibration_error(
            torch.as_tensor(top1[idx[b]]), torch.as_tensor(rank[idx[b]] == 0)
        )
        assert values[b] == pytest.approx(expected, abs=1e-12)


def test_zero_shot_resamples_equal_both_protocols_and_count_undefined_classes():
    rng = np.random.default_rng(3)
    n, names = 30, ["a", "b", "c", "d"]
    labels = rng.choice([1.0, 0.0, -1.0, np.nan], size=(n, 4), p=[0.3, 0.4, 0.2, 0.1])
    labels[:, 2] = 0.0
    labels[7, 2] = 1.0  # one positive study: undefined in resamples that miss it
    labels[:, 3] = 0.0  # no positive at all: undefined everywhere
    similarity = rng.random((n, 4))
    probability = rng.random((n, 4))
    thresholds = [0.5, 0.3, 0.7, 0.5]
    idx = bootstrap_indices(n, 80, 9)
    hits, positive = argmax_outcomes(similarity, labels, 4)
    argmax = zero_shot_argmax_resampled(hits, positive, idx, names)
    binary = zero_shot_binary_resampled(probability, positive, thresholds, idx, names)
    for b in range(len(idx)):
        expected = zero_shot_argmax(similarity[idx[b]], labels[idx[b]], names)
        np.testing.assert_allclose(argmax["mean_accuracy"][b], expected["mean_accuracy"], rtol=1e-12)
        for name in names:
            np.testing.assert_allclose(argmax["per_class"][name][b], expected["per_class"][name]["accuracy"])
        expected = per_label_metrics(probability[idx[b]], labels[idx[b]], thresholds, names)
        np.testing.assert_allclose(binary["macro_auroc"][b], expected["macro_auroc"], rtol=1e-12)
        np.testing.assert_allclose(binary["macro_accuracy"][b], expected["macro_accuracy"], rtol=1e-12)
        for name in names:
            for metric in ("auroc", "accuracy"):
                got, want = binary["per_label"][name][metric][b], expected["per_label"][name][metric]
                np.testing.assert_allclose(got, want, rtol=1e-12)
    missing = int((~(idx == 7).any(1)).sum())
    assert 0 < missing < len(idx)
    ci = intervals({"argmax": argmax, "binary": binary}, 0.95, count_undefined=True)
    assert ci["argmax"]["per_class"]["c"]["n_undefined"] == missing
    assert ci["binary"]["per_label"]["c"]["auroc"]["n_undefined"] == missing
    assert ci["binary"]["per_label"]["d"]["auroc"]["n_undefined"] == len(idx)
    assert math.isnan(ci["binary"]["per_label"]["d"]["auroc"]["low"])
    assert ci["binary"]["macro_auroc"]["n_undefined"] == 0  # macro: over the classes defined per resample


def test_bad_inputs_are_refused(queries):
    rank, confidence, _, idx = queries
    with pytest.raises(ValueError, match="indices"):
        recall_resampled(rank, idx + len(rank), [1])
    with pytest.raises(ValueError, match="indices"):
        recall_resampled(rank, idx[0], [1])
    with pytest.raises(ValueError, match="one length"):
        selective_resampled(rank, confidence[:-1], idx, [1])
    with pytest.raises(ValueError, match="ks"):
        recall_resampled(rank, idx, [0])
