"""Calibration of top-1 retrieval confidence: does a confidence of p mean the top match is right with
probability p? Expected calibration error and reliability diagram over equal-width bins.
"""

from __future__ import annotations

import torch
from torch import Tensor

from pipeline.metrics.ranking import Ranking
from pipeline.metrics.selective import correct_and_confidence

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


def bin_statistics(confidence: Tensor, correct: Tensor, bins: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per equal-width bin of [0, 1]: count, summed correctness, summed confidence (float64).

    Bin b holds confidences in [b/B, (b+1)/B), except that 1.0 falls in the last bin: b = min(⌊c·B⌋, B − 1).
    """
    if not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins must be a positive int, got {bins!r}")
    correct, confidence = correct_and_confidence(correct, confidence)
    if not ((confidence >= 0) & (confidence <= 1)).all():
        raise ValueError("confidence must lie in [0, 1] (and not be NaN)")
    index = (confidence * bins).floor().long().clamp(max=bins - 1)
    count = torch.zeros(bins, dtype=torch.float64).index_add_(0, index, torch.ones_like(confidence))
    hits = torch.zeros(bins, dtype=torch.float64).index_add_(0, index, correct.cpu().double())
    mass = torch.zeros(bins, dtype=torch.float64).index_add_(0, index, confidence)
    return count, hits, mass


def expected_calibration_error(confidence: Tensor, correct: Tensor, bins: int = ECE_BINS) -> float:
    """ECE = Σ_b |B_b| / N · |acc_b − conf_b| over equal-width bins (see ``bin_statistics``); acc_b and
    conf_b are the mean correctness and mean confidence in bin b, so each term is |Σ correct − Σ conf| / N."""
    count, hits, mass = bin_statistics(confidence, correct, bins)
    return ((hits - mass).abs().sum() / count.sum()).item()


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
