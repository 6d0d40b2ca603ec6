"""Calibrated abstention: choose a confidence threshold whose selective risk is provably below a target.

Learn-then-Test (Angelopoulos, Bates, Candès, Jordan, Lei 2021, "Learn then Test: Calibrating predictive
algorithms to achieve risk control"), specialised to selective retrieval:

* A query is *accepted* when its confidence is >= λ; its loss is 1 when the positive is not in the top k
  (so the selective risk R(λ) = P(miss | confidence >= λ) = 1 − R@k of the accepted queries).
* The candidate thresholds λ_1 > λ_2 > … > λ_m are fixed *before* the calibration data is seen (here:
  quantiles of the confidences of a disjoint half of the validation queries, `threshold_grid`), ordered
  from most to least confident.
* For each λ_j the null H_j: R(λ_j) > α is tested with the exact binomial p-value
  p_j = P(Binomial(n_j, α) <= e_j) of the e_j misses among the n_j accepted calibration queries (given n_j,
  the misses of the accepted queries are i.i.d. Bernoulli(R(λ_j))).
* Fixed-sequence testing rejects H_1, H_2, … while p_j <= δ and stops at the first failure; it controls the
  family-wise error rate at δ without a multiplicity correction. The chosen λ is the last rejected one
  (the largest coverage); none rejected → abstain on every query. The first candidate must accept
  enough queries to certify anything (n >= log δ / log(1 − α) with no miss: 11 at α = 0.2, δ = 0.1),
  else the sequence stops at once; hence the grid starts at a coverage that leaves twice that many
  (`start_coverage`). The grid comes from queries exchangeable with the calibration ones: quantiles of
  another split (the training split, say) sit elsewhere — a model is surer on what it was trained on —
  and their first candidates then accept a handful of calibration queries and end the sequence.

Guarantee: with probability >= 1 − δ over the draw of the calibration queries, R(λ̂) <= α. Assumptions:
calibration and test queries are exchangeable (i.i.d. draws of the same query distribution, scored
against the same gallery in the same way); the grid does not depend on the calibration data; the
statement is marginal over calibration draws and finite-sample (no asymptotics), and it is about the
*expected* selective risk of future queries — the realised risk of one finite test set fluctuates around
it. Numeric core: numpy and scipy only, shared by the gallery stage and the evaluation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import binom

GUARANTEE = (
    "Learn-then-Test (Angelopoulos et al. 2021) with fixed-sequence testing from the most to the least "
    "confident threshold and exact binomial p-values: with probability >= 1 - delta over the calibration "
    "queries, the risk of missing the true match in the top k among accepted queries is <= target_risk, "
    "for queries exchangeable with the calibration (validation) queries."
)


@dataclass(frozen=True)
class Calibration:
    """What `learn_then_test` chose and why (every number a report or a bundle needs)."""

    threshold: float | None  # accept a query when confidence >= threshold; None: abstain on every query
    target_risk: float
    delta: float
    n_calibration: int
    n_accepted: int  # calibration queries accepted at the threshold
    errors: int  # misses among them
    p_value: float | None  # of the chosen threshold
    n_tested: int  # grid points tested before the sequence stopped

    @property
    def coverage(self) -> float:
        return self.n_accepted / self.n_calibration if self.n_calibration else 0.0

    @property
    def risk(self) -> float | None:
        """Empirical selective risk on the calibration queries (None when nothing is accepted)."""
        return self.errors / self.n_accepted if self.n_accepted else None

    def as_dict(self) -> dict:
        return {
            "threshold": self.threshold,
            "target_risk": self.target_risk,
            "delta": self.delta,
            "n_calibration": self.n_calibration,
            "n_accepted": self.n_accepted,
            "errors": self.errors,
            "coverage": self.coverage,
            "risk": self.risk,
            "p_value": self.p_value,
            "n_tested": self.n_tested,
        }


def check_level(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        raise ValueError(f"{name} must lie in (0, 1), got {value!r}")
    return float(value)


def binomial_p_value(errors: int, n: int, target_risk: float) -> float:
    """P(Binomial(n, target) <= errors): small when so few misses would be unlikely at risk > target.
    No accepted query (n = 0) is no evidence: p = 1."""
    if n == 0:
        return 1.0
    return float(binom.cdf(errors, n, target_risk))


def threshold_grid(reference: np.ndarray, levels: int = 50, min_coverage: float = 0.05) -> np.ndarray:
    """Candidate thresholds, most confident first: the reference confidences' quantiles at coverages
    min_coverage … 1 (`levels` evenly spaced). The reference must be independent of the calibration
    queries (another split), or the guarantee no longer holds."""
    reference = np.asarray(reference, dtype=np.float64).ravel()
    if reference.size == 0 or not np.isfinite(reference).all():
        raise ValueError("the threshold grid needs a non-empty, finite reference confidence")
    if levels < 1 or not 0 < min_coverage <= 1:
        raise ValueError(f"need levels >= 1 and 0 < min_coverage <= 1, got {levels}, {min_coverage}")
    coverage = np.linspace(min_coverage, 1.0, levels)
    grid = np.quantile(reference, 1.0 - coverage, method="lower")
    return np.unique(grid)[::-1].copy()  # descending, no repeats


def start_coverage(target_risk: float, delta: float, n_calibration: int, floor: float = 0.05) -> float:
    """Coverage of the first candidate: room for twice the smallest sample that can certify the target
    with no miss (n_min = ⌈log δ / log(1 − α)⌉), and at least ``floor``."""
    target_risk, delta = check_level("target_risk", target_risk), check_level("delta", delta)
    n_min = math.ceil(math.log(delta) / math.log(1.0 - target_risk))
    return float(min(1.0, max(floor, 2 * n_min / max(n_calibration, 1))))


def split_halves(study_ids: np.ndarray) -> np.ndarray:
    """Boolean mask of the grid half: every second query in study-id order (fixed by the ids alone, so
    independent of any outcome); the rest is the calibration half."""
    order = np.argsort(np.asarray(study_ids), kind="stable")
    mask = np.zeros(len(order), dtype=bool)
    mask[order[1::2]] = True
    return mask


def accepted_counts(
    confidence: np.ndarray, correct: np.ndarray, grid: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(accepted, errors) per grid threshold: queries with confidence >= λ and the misses among them."""
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    order = np.argsort(-confidence, kind="stable")
    ordered = confidence[order]
    misses = np.concatenate([[0], np.cumsum(~correct[order])])
    # number of queries with confidence >= λ: searchsorted on the ascending negated values
    accepted = np.searchsorted(-ordered, -np.asarray(grid, dtype=np.float64), side="right")
    return accepted, misses[accepted]


def learn_then_test(
    confidence: np.ndarray, correct: np.ndarray, grid: np.ndarray, target_risk: float, delta: float
) -> Calibration:
    """The least confident grid threshold that fixed-sequence testing certifies (see the module doc)."""
    target_risk, delta = check_level("target_risk", target_risk), check_level("delta", delta)
    confidence = np.asarray(confidence, dtype=np.float64).ravel()
    correct = np.asarray(correct).ravel()
    if confidence.shape != correct.shape or confidence.size == 0:
        raise ValueError(
            f"need non-empty confidence and correct of one length, got {confidence.shape}, {correct.shape}"
        )
    if not np.isfinite(confidence).all():
        raise ValueError("confidence must be finite")
    grid = np.asarray(grid, dtype=np.float64).ravel()
    if grid.size == 0 or (np.diff(grid) >= 0).any():
        raise ValueError("the grid must be non-empty and strictly decreasing (most confident first)")
    accepted, errors = accepted_counts(confidence, correct.astype(bool), grid)
    chosen, tested = None, 0
    for j in range(grid.size):
        tested += 1
        p = binomial_p_value(int(errors[j]), int(accepted[j]), target_risk)
        if p > delta:
            break
        chosen = (j, p)
    if chosen is None:
        return Calibration(None, target_risk, delta, confidence.size, 0, 0, None, tested)
    j, p = chosen
    return Calibration(
        float(grid[j]), target_risk, delta, confidence.size, int(accepted[j]), int(errors[j]), p, tested
    )


def selective_outcome(confidence: np.ndarray, correct: np.ndarray, threshold: float | None) -> dict:
    """Realised coverage and selective risk of a threshold on (test) queries."""
    confidence = np.asarray(confidence, dtype=np.float64).ravel()
    correct = np.asarray(correct, dtype=bool).ravel()
    accept = np.zeros_like(correct) if threshold is None else confidence >= threshold
    n_accepted = int(accept.sum())
    errors = int((~correct[accept]).sum())
    return {
        "n_queries": int(correct.size),
        "n_accepted": n_accepted,
        "coverage": n_accepted / correct.size if correct.size else 0.0,
        "risk": errors / n_accepted if n_accepted else None,
        "errors": errors,
    }
