"""Selective retrieval (Geifman & El-Yaniv): answer only the most confident queries and trace the error
rate among the answered ones (risk) against the fraction answered (coverage).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from pipeline.metrics.ranking import Ranking
from pipeline.metrics.retrieval import RECALL_KS, check_ks

CONFIDENCE_KINDS = ("variance", "top1", "margin")
CURVE_POINTS = 200


def confidence_score(kind: str, ranking: Ranking, query: Mapping[str, Tensor] | None = None) -> Tensor:
    """Per-query confidence [Q], higher = more confident.

    ``variance``: −Σ_d exp(logvar_d) of the Gaussian query embedding (low total variance = confident);
    ``top1``: the best gallery score; ``margin``: best minus second-best gallery score.
    """
    if kind == "variance":
        if query is None or "logvar" not in query:
            have = sorted(query) if query is not None else None
            raise ValueError(f"confidence 'variance' needs a Gaussian query dict with 'logvar', got {have}")
        logvar = query["logvar"]
        if logvar.dim() != 2 or logvar.shape[0] != ranking.n_queries:
            raise ValueError(f"query logvar must be [Q={ranking.n_queries}, D], got {tuple(logvar.shape)}")
        return -logvar.detach().double().exp().sum(-1)
    if kind == "top1":
        return ranking.topk_score[:, 0].clone()
    if kind == "margin":
        if ranking.topk_score.shape[1] < 2:
            raise ValueError("confidence 'margin' needs a ranking with k >= 2 (and a gallery of >= 2 items)")
        return ranking.topk_score[:, 0] - ranking.topk_score[:, 1]
    raise ValueError(f"unknown confidence kind {kind!r}; expected one of {CONFIDENCE_KINDS}")


def as_correct(correct: Tensor) -> Tensor:
    """Boolean view of a correctness vector given as bool or 0/1 values."""
    correct = torch.as_tensor(correct)
    if correct.dtype != torch.bool:
        if not ((correct == 0) | (correct == 1)).all():
            raise ValueError("correct must be boolean or contain only 0 and 1")
        correct = correct != 0
    return correct


def correct_and_confidence(correct: Tensor, confidence: Tensor) -> tuple[Tensor, Tensor]:
    """Validated (bool correctness, float64 CPU confidence), both non-empty 1-D of equal length."""
    correct, confidence = as_correct(correct), torch.as_tensor(confidence)
    if correct.dim() != 1 or confidence.shape != correct.shape or correct.numel() == 0:
        raise ValueError(
            f"correct and confidence must be non-empty 1-D of equal length, got "
            f"{tuple(correct.shape)} and {tuple(confidence.shape)}"
        )
    return correct, confidence.detach().double().cpu()


def risk_coverage(correct: Tensor, confidence: Tensor) -> tuple[Tensor, Tensor]:
    """Risk–coverage curve at the Q coverages i/Q, i = 1..Q (float64).

    Queries enter in order of decreasing confidence. Queries of equal confidence form a group that enters
    together: at a coverage i inside a group that starts after s queries, risk(i) = (errors before the
    group + (i − s) · group error rate) / i, the expected risk over random tie-breaks. It is exact at group
    boundaries and does not depend on the input order.
    """
    correct, confidence = correct_and_confidence(correct, confidence)
    if confidence.isnan().any():
        raise ValueError("confidence contains NaN")
    order = confidence.argsort(descending=True, stable=True)
    errors = (~correct.cpu()[order]).double()
    _, sizes = torch.unique_consecutive(confidence[order], return_counts=True)
    ends = sizes.cumsum(0)
    starts = ends - sizes
    errors_through = errors.cumsum(0)[ends - 1]
    errors_before = torch.cat([errors_through.new_zeros(1), errors_through[:-1]])
    group = torch.repeat_interleave(torch.arange(len(sizes)), sizes)
    rate = (errors_through - errors_before) / sizes
    n = len(correct)
    answered = torch.arange(1, n + 1, dtype=torch.float64)
    risk = (errors_before[group] + (answered - starts[group]) * rate[group]) / answered
    return answered / n, risk


def aurc(correct: Tensor, confidence: Tensor) -> float:
    """Area under the risk–coverage curve: the mean risk over the Q coverage points i/Q."""
    return risk_coverage(correct, confidence)[1].mean().item()


def oracle_aurc(correct: Tensor) -> float:
    """AURC of the ideal confidence (every correct query before every wrong one)."""
    correct = as_correct(correct)
    return aurc(correct, correct.double())


def excess_aurc(correct: Tensor, confidence: Tensor) -> float:
    """E-AURC = AURC − oracle AURC: the part of the area due to the confidence ordering, not the accuracy."""
    return aurc(correct, confidence) - oracle_aurc(correct)


def downsample(n: int, points: int = CURVE_POINTS) -> Tensor:
    """At most ``points`` evenly spread indices into 0..n−1, always including the first and last."""
    return torch.linspace(0, n - 1, min(n, points), dtype=torch.float64).round().long().unique()


def selective_metrics(ranking: Ranking, confidence: Tensor, ks: Sequence[int] = RECALL_KS) -> dict[str, Any]:
    """Per K, where a query is correct when its positive ranks < K (risk = 1 − R@K of the answered
    queries): ``aurc_r{k}``, ``eaurc_r{k}`` and ``curves["r{k}"]`` = {"coverage", "risk"} lists of at most
    200 evenly spaced points (for plotting; the AURC uses every point)."""
    ks = check_ks(ks)
    out: dict[str, Any] = {"curves": {}}
    keep = downsample(ranking.n_queries)
    for k in ks:
        correct = ranking.positive_rank < k
        coverage, risk = risk_coverage(correct, confidence)
        out[f"aurc_r{k}"] = risk.mean().item()
        out[f"eaurc_r{k}"] = out[f"aurc_r{k}"] - oracle_aurc(correct)
        out["curves"][f"r{k}"] = {"coverage": coverage[keep].tolist(), "risk": risk[keep].tolist()}
    return out
