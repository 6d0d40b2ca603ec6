"""Calibration of top-1 retrieval confidence: does a confidence of p mean the top match is right with
probability p? Expected calibration error and reliability diagram over equal-width bins.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from pipeline.metrics.ranking import Ranking
from pipeline.metrics.selective import bool_rows, correct_and_confidence

ECE_BINS = 15


def softmax_top1_confidence(ranking: Ranking) -> Tensor:
    """Softmax probability of the top match over the whole gallery, exp(top1 / τ − logsumexp(score / τ)):
    the confidence of deterministic (cosine) methods. Needs a ranking made with ``temperature=τ``."""
    if ranking.logsumexp is None or ranking.temperature is None:
        raise ValueError(
            "softmax confidence needs a ranking computed with a temperature (rank_queries(..., "
            "temperature=τ))"
        )
    return (ranking.topk_score[:, 0] / ranking.temperature - ranking.logsumexp).exp().clamp(0.0, 1.0)


def sigmoid_top1_confidence(ranking: Ranking, a: float | Tensor, b: float | Tensor) -> Tensor:
    """Match probability of the top match for probabilistic methods, sigmoid(−a·d + b). Their retrieval
    score is −d, so this is sigmoid(a·score + b) on the ranking's top-1 score."""
    score = ranking.topk_score[:, 0]
    a, b = (torch.as_tensor(x).detach().to(score) for x in (a, b))
    return torch.sigmoid(a * score + b)


def check_bins(bins: int) -> None:
    if not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins must be a positive int, got {bins!r}")


def bin_statistics(confidence: Tensor, correct: Tensor, bins: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per equal-width bin of [0, 1]: count, summed correctness, summed confidence (float64).

    Bin b holds confidences in [b/B, (b+1)/B), except that 1.0 falls in the last bin: b = min(⌊c·B⌋, B − 1).
    One row of `bin_statistics_batch`.
    """
    check_bins(bins)
    correct, confidence = correct_and_confidence(correct, confidence)
    stats = bin_statistics_batch(confidence.numpy()[None], correct.cpu().numpy()[None], bins)
    count, hits, mass = (torch.from_numpy(s[0]) for s in stats)
    return count, hits, mass


def bin_statistics_batch(
    confidence: np.ndarray, correct: np.ndarray, bins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`bin_statistics` of each row of [R, N] confidence / correctness, as three float64 [R, bins] arrays:
    the one definition of the binning, batched (numpy) so bootstrap resamples need no Python loop."""
    check_bins(bins)
    correct = bool_rows(correct, "correct")
    confidence = np.asarray(confidence, dtype=np.float64)
    if confidence.shape != correct.shape or correct.shape[1] == 0:
        raise ValueError(
            f"confidence and correct must be [R, N] with N >= 1, got {confidence.shape} and {correct.shape}"
        )
    if not ((confidence >= 0) & (confidence <= 1)).all():
        raise ValueError("confidence must lie in [0, 1] (and not be NaN)")
    rows = confidence.shape[0]
    index = np.minimum(np.floor(confidence * bins).astype(np.int64), bins - 1)
    index = (index + bins * np.arange(rows)[:, None]).ravel()
    size = rows * bins
    count = np.bincount(index, minlength=size).astype(np.float64)
    hits = np.bincount(index, weights=correct.ravel().astype(np.float64), minlength=size)
    mass = np.bincount(index, weights=confidence.ravel(), minlength=size)
    return count.reshape(rows, bins), hits.reshape(rows, bins), mass.reshape(rows, bins)


def expected_calibration_error(confidence: Tensor, correct: Tensor, bins: int = ECE_BINS) -> float:
    """ECE = Σ_b |B_b| / N · |acc_b − conf_b| over equal-width bins (see ``bin_statistics``); acc_b and
    conf_b are the mean correctness and mean confidence in bin b, so each term is |Σ correct − Σ conf| / N."""
    count, hits, mass = bin_statistics(confidence, correct, bins)
    return ((hits - mass).abs().sum() / count.sum()).item()


def ece_batch(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> np.ndarray:
    """ECE [R] of each row of [R, N] confidence / correctness (see `expected_calibration_error`; equal
    to it up to the summation order of the bins' terms)."""
    count, hits, mass = bin_statistics_batch(confidence, correct, bins)
    return np.abs(hits - mass).sum(1) / count.sum(1)


def reliability_diagram(confidence: Tensor, correct: Tensor, bins: int = ECE_BINS) -> dict[str, list]:
    """Per bin: ``bin_lower``, ``bin_upper``, ``count``, ``accuracy`` (mean correctness) and ``confidence``
    (mean confidence). Empty bins have count 0 and accuracy = confidence = 0, so the lists are NaN-free."""
    count, hits, mass = bin_statistics(confidence, correct, bins)
    safe = count.clamp(min=1)
    edges = torch.arange(bins + 1, dtype=torch.float64) / bins
    return {
        "bin_lower": edges[:-1].tolist(),
        "bin_upper": edges[1:].tolist(),
        "count": count.long().tolist(),
        "accuracy": (hits / safe).tolist(),
        "confidence": (mass / safe).tolist(),
    }
