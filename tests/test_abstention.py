"""Learn-then-Test abstention (`pipeline.metrics.abstention`): hand-computed cases and the guarantee,
checked empirically over many random calibration/test draws of a synthetic selective-retrieval problem."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.metrics.abstention import (
    accepted_counts,
    binomial_p_value,
    learn_then_test,
    selective_outcome,
    split_halves,
    start_coverage,
    threshold_grid,
)


def binomial_cdf(errors: int, n: int, p: float) -> float:
    """Independent reference: Σ_{i<=e} C(n, i) p^i (1 − p)^(n − i)."""
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(errors + 1))


def test_binomial_p_value_matches_the_hand_formula():
    assert binomial_p_value(0, 11, 0.2) == pytest.approx(0.8**11)  # 0.0859: certifies risk 0.2 at δ 0.1
    assert binomial_p_value(0, 10, 0.2) == pytest.approx(0.8**10)  # 0.107: ten clean queries are not enough
    assert binomial_p_value(5, 22, 0.2) == pytest.approx(binomial_cdf(5, 22, 0.2))
    assert binomial_p_value(0, 0, 0.2) == 1.0  # nothing accepted: no evidence


def test_accepted_counts_treat_ties_as_accepted_together():
    confidence = np.array([0.9, 0.5, 0.5, 0.1])
    correct = np.array([True, False, True, False])
    accepted, errors = accepted_counts(confidence, correct, np.array([1.0, 0.9, 0.5, 0.1]))
    assert accepted.tolist() == [0, 1, 3, 4] and errors.tolist() == [0, 0, 1, 2]


def hand_case() -> tuple[np.ndarray, np.ndarray]:
    """12 queries at confidence 3 (all correct), 10 at 2 (5 wrong), 8 at 1 (all wrong)."""
    confidence = np.repeat([3.0, 2.0, 1.0], [12, 10, 8])
    correct = np.concatenate([np.ones(12, bool), np.arange(10) % 2 == 0, np.zeros(8, bool)])
    return confidence, correct


def test_learn_then_test_hand_computed_case():
    confidence, correct = hand_case()
    grid = np.array([3.0, 2.0, 1.0])
    # λ = 3: 12 accepted, 0 misses: p = 0.8^12 = 0.069 <= 0.1 → certified. λ = 2: 22 accepted, 5 misses:
    # p = P(Bin(22, 0.2) <= 5) = 0.73 > 0.1 → the sequence stops; λ̂ = 3.
    chosen = learn_then_test(confidence, correct, grid, target_risk=0.2, delta=0.1)
    assert chosen.threshold == 3.0 and chosen.n_accepted == 12 and chosen.errors == 0 and chosen.n_tested == 2
    assert chosen.p_value == pytest.approx(0.8**12) and chosen.coverage == pytest.approx(12 / 30)
    # At target 0.4: λ = 2 gives p = P(Bin(22, 0.4) <= 5) = 0.031 → certified; λ = 1: 30 accepted, 13 misses:
    # p = P(Bin(30, 0.4) <= 13) = 0.71 → stop; λ̂ = 2.
    assert binomial_cdf(5, 22, 0.4) < 0.1 < binomial_cdf(13, 30, 0.4)
    chosen = learn_then_test(confidence, correct, grid, target_risk=0.4, delta=0.1)
    assert chosen.threshold == 2.0 and (chosen.n_accepted, chosen.errors) == (22, 5)
    assert chosen.risk == pytest.approx(5 / 22)
    # Too strict: even the 12 clean queries cannot certify risk 0.1 (0.9^12 = 0.28) → abstain on everything.
    none = learn_then_test(confidence, correct, grid, target_risk=0.1, delta=0.1)
    assert none.threshold is None and none.n_accepted == 0 and none.coverage == 0.0 and none.risk is None


def test_fixed_sequence_stops_at_the_first_failure():
    """A first (most confident) threshold that fails ends the sequence even if a later one would pass:
    that is what makes the family-wise error δ without a multiplicity correction."""
    confidence, correct = hand_case()
    chosen = learn_then_test(confidence, correct, np.array([4.0, 3.0]), target_risk=0.2, delta=0.1)
    assert chosen.threshold is None and chosen.n_tested == 1


def test_selective_outcome_and_grid():
    confidence, correct = hand_case()
    outcome = selective_outcome(confidence, correct, 2.0)
    assert outcome == {"n_queries": 30, "n_accepted": 22, "coverage": 22 / 30, "risk": 5 / 22, "errors": 5}
    assert selective_outcome(confidence, correct, None)["coverage"] == 0.0
    grid = threshold_grid(np.arange(100.0), levels=5, min_coverage=0.2)
    assert grid.tolist() == sorted(grid.tolist(), reverse=True) and grid[-1] == 0.0 and len(grid) == 5
    assert (np.arange(100.0) >= grid[0]).mean() == pytest.approx(0.2, abs=0.011)


def test_start_coverage_and_halves():
    # n_min = ⌈log 0.1 / log 0.8⌉ = 11 clean queries certify risk 0.2 at δ 0.1: start with room for 22
    assert start_coverage(0.2, 0.1, 100) == pytest.approx(0.22)
    assert start_coverage(0.7, 0.1, 100) == pytest.approx(0.05)  # n_min = 2: the floor wins
    assert start_coverage(0.2, 0.1, 10) == 1.0
    mask = split_halves(np.array([50, 10, 40, 20, 30]))  # id order 10, 20, 30, 40, 50: 20 and 40 → grid
    assert mask.tolist() == [False, False, True, True, False]


@pytest.mark.parametrize(
    "args, message",
    [
        ((np.ones(3), np.ones(3), np.array([1.0]), 1.5, 0.1), "target_risk"),
        ((np.ones(3), np.ones(3), np.array([1.0]), 0.2, 0.0), "delta"),
        ((np.ones(3), np.ones(2), np.array([1.0]), 0.2, 0.1), "one length"),
        ((np.ones(3), np.ones(3), np.array([1.0, 2.0]), 0.2, 0.1), "strictly decreasing"),
        ((np.array([1.0, np.nan]), np.ones(2), np.array([1.0]), 0.2, 0.1), "finite"),
    ],
)
def test_bad_arguments_are_refused(args, message):
    with pytest.raises(ValueError, match=message):
        learn_then_test(*args)


# -- the guarantee, empirically -----------------------------------------------------------------------
# Confidence c ~ U(0, 1) and P(correct | c) = c, so the selective risk of accepting c >= λ is exactly
# R(λ) = (1 − λ) / 2 (the true risk of any chosen threshold is known in closed form).
TARGET, DELTA, TRIALS, N_CAL, N_TEST = 0.2, 0.1, 400, 300, 4000
GRID = np.linspace(0.9, 0.0, 46)  # fixed before any data is drawn; starts where ~30 queries are accepted
MC_TOLERANCE = 3 * math.sqrt(DELTA * (1 - DELTA) / TRIALS)  # 3 binomial sd of a frequency at δ: 0.045


def true_risk(threshold: float | None) -> float:
    return 0.0 if threshold is None else (1 - threshold) / 2


def draw(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    confidence = rng.random(n)
    return confidence, rng.random(n) < confidence


def naive_threshold(confidence: np.ndarray, correct: np.ndarray) -> float | None:
    """The least confident grid point whose *empirical* calibration risk is <= target (no guarantee)."""
    accepted, errors = accepted_counts(confidence, correct, GRID)
    ok = [g for g, a, e in zip(GRID, accepted, errors, strict=True) if a and e / a <= TARGET]
    return min(ok) if ok else None


def shipped_rule(confidence: np.ndarray, correct: np.ndarray):
    """What the gallery stage does: every second query places the candidates, the rest tests them."""
    grid_half = split_halves(np.arange(len(confidence)))
    first = start_coverage(TARGET, DELTA, int((~grid_half).sum()))
    grid = threshold_grid(confidence[grid_half], 50, first)
    return learn_then_test(confidence[~grid_half], correct[~grid_half], grid, TARGET, DELTA)


@pytest.mark.parametrize("rule", ["fixed grid", "shipped"])
def test_guarantee_holds_over_random_calibration_and_test_draws(rule):
    rng = np.random.default_rng(0)
    violations, realised_violations, naive_violations, coverage = 0, 0, 0, []
    for _ in range(TRIALS):
        cal_conf, cal_correct = draw(rng, N_CAL)
        if rule == "shipped":
            chosen = shipped_rule(cal_conf, cal_correct)
        else:
            chosen = learn_then_test(cal_conf, cal_correct, GRID, TARGET, DELTA)
        violations += true_risk(chosen.threshold) > TARGET
        test_conf, test_correct = draw(rng, N_TEST)
        outcome = selective_outcome(test_conf, test_correct, chosen.threshold)
        coverage.append(outcome["coverage"])
        realised_violations += (outcome["risk"] or 0.0) > TARGET
        naive_violations += true_risk(naive_threshold(cal_conf, cal_correct)) > TARGET
    # P(R(λ̂) > α) <= δ, up to Monte-Carlo error of the frequency over TRIALS draws.
    assert violations / TRIALS <= DELTA + MC_TOLERANCE
    # The realised risk of a 4,000-query test draw adds its own noise (sd ≈ 0.01 at coverage ~0.6), so
    # its exceedances are allowed the same tolerance.
    assert realised_violations / TRIALS <= DELTA + MC_TOLERANCE
    # Not trivially safe: it answers a useful share (the ideal threshold 0.6 covers 40 %) ...
    assert 0.1 < float(np.mean(coverage)) <= 0.4
    # ... and the check has power: picking by empirical risk alone breaks the bound about half the time.
    assert naive_violations / TRIALS > 3 * DELTA
