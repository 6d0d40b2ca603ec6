"""Selective retrieval (Geifman & El-Yaniv): answer only the most confident queries and trace the error
rate among the answered ones (risk) against the fraction answered (coverage).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from pipeline.metrics.ranking import Ranking
from pipeline.metrics.retrieval import RECALL_KS, check_ks

CONFIDENCE_KINDS = ("variance", "top1", "margin")
CURVE_POINTS = 200


def resolve_confidence(kind: str, probabilistic: bool) -> str:
    """`evaluate.confidence`'s rule, one home for the evaluation and the gallery: auto = variance for
    Gaussian heads, top-1 score otherwise; anything else must be a `CONFIDENCE_KINDS` entry."""
    if kind == "auto":
        return "variance" if probabilistic else "top1"
    if kind not in CONFIDENCE_KINDS:
        raise ValueError(f"confidence must be auto or one of {CONFIDENCE_KINDS}, got {kind!r}")
    return kind


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
    boundaries and does not depend on the input order. One row of `risk_coverage_batch`.
    """
    correct, confidence = correct_and_confidence(correct, confidence)
    n = len(correct)
    risk = risk_coverage_batch(correct.cpu().numpy()[None], confidence.numpy()[None])[0]
    return torch.arange(1, n + 1, dtype=torch.float64) / n, torch.from_numpy(risk)


def risk_coverage_batch(correct: np.ndarray, confidence: np.ndarray) -> np.ndarray:
    """Risks [B, Q] (float64) of B independent query sets given as rows of [B, Q] correctness and
    confidence: the one definition of the curve (see `risk_coverage`). Batched, in numpy, so bootstrap
    resamples — whose duplicated queries are exactly the ties this rule averages over — cost one sort
    instead of B Python calls (and no torch intra-op threads, which cost more than they save here)."""
    correct = bool_rows(correct, "correct")
    confidence = np.asarray(confidence, dtype=np.float64)
    if confidence.shape != correct.shape or correct.shape[1] == 0:
        raise ValueError(
            f"correct and confidence must be [B, Q] with Q >= 1, got {correct.shape} and {confidence.shape}"
        )
    if np.isnan(confidence).any():
        raise ValueError("confidence contains NaN")
    n = correct.shape[1]
    order = np.argsort(-confidence, axis=1, kind="stable")  # descending; ties keep input order
    starts, ends = tie_groups(np.take_along_axis(confidence, order, 1))
    cumulative = np.cumsum(~np.take_along_axis(correct, order, 1), axis=1, dtype=np.float64)
    errors_through = np.take_along_axis(cumulative, ends, 1)
    errors_before = np.where(starts > 0, np.take_along_axis(cumulative, np.maximum(starts - 1, 0), 1), 0.0)
    rate = (errors_through - errors_before) / (ends - starts + 1)
    answered = np.arange(1, n + 1, dtype=np.float64)
    return (errors_before + (answered - starts) * rate) / answered


def tie_groups(ordered: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each position of rows sorted by value, the first and last position of its run of equal
    values ([R, N] int64 each)."""
    rows, n = ordered.shape
    position = np.broadcast_to(np.arange(n), (rows, n))
    new_group = np.ones((rows, n), dtype=bool)
    new_group[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    last_of_group = np.ones((rows, n), dtype=bool)
    last_of_group[:, :-1] = new_group[:, 1:]
    starts = np.maximum.accumulate(np.where(new_group, position, 0), axis=1)
    ends = np.minimum.accumulate(np.where(last_of_group, position, n - 1)[:, ::-1], axis=1)[:, ::-1]
    return starts, np.ascontiguousarray(ends)


def bool_rows(correct: np.ndarray, name: str) -> np.ndarray:
    """[B, Q] boolean view of rows given as bool or 0/1 values (as `as_correct`)."""
    correct = np.asarray(correct)
    if correct.ndim != 2:
        raise ValueError(f"{name} must be [B, Q], got shape {correct.shape}")
    if correct.dtype != bool:
        if not ((correct == 0) | (correct == 1)).all():
            raise ValueError(f"{name} must be boolean or contain only 0 and 1")
        correct = correct != 0
    return correct


def aurc_batch(correct: np.ndarray, confidence: np.ndarray) -> np.ndarray:
    """AURC [B] of each row of [B, Q] correctness / confidence (see `aurc`)."""
    return risk_coverage_batch(correct, confidence).mean(1)


def oracle_aurc_by_count(n: int) -> np.ndarray:
    """[n + 1] oracle AURC of Q = n queries of which c = 0..n are correct. The oracle curve depends only on
    c (every correct query first), so a bootstrap needs n + 1 evaluations of `aurc_batch`, not one per
    resample: row c is `oracle_aurc` of any correctness vector with c hits."""
    if n < 1:
        raise ValueError(f"need n >= 1 queries, got {n}")
    correct = np.arange(n)[None, :] < np.arange(n + 1)[:, None]
    return aurc_batch(correct, correct.astype(np.float64))


def excess_aurc_batch(correct: np.ndarray, confidence: np.ndarray) -> np.ndarray:
    """E-AURC [B] of each row (see `excess_aurc`): AURC minus the AURC of the oracle ordering."""
    correct = bool_rows(correct, "correct")
    return aurc_batch(correct, confidence) - oracle_aurc_by_count(correct.shape[1])[correct.sum(1)]


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
