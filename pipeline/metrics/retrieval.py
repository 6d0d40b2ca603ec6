"""Recall@K, RSUM and class-based Precision@K, with the expected value of a random ranking for each."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from pipeline.metrics.ranking import Ranking

RECALL_KS = (1, 5, 10, 100)
RSUM_SHORT_KS = (1, 5, 10)
PRECISION_KS = (1, 5, 10)


def check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    ks = tuple(ks)
    if not ks or any(not isinstance(k, int) or isinstance(k, bool) or k < 1 for k in ks):
        raise ValueError(f"ks must be a non-empty sequence of positive ints, got {ks}")
    return ks


def recall_at_k(positive_rank: Tensor, ks: Sequence[int] = RECALL_KS) -> dict[int, float]:
    """R@K = 100 · fraction of queries whose positive has 0-based rank < K (one positive per query)."""
    ks = check_ks(ks)
    positive_rank = torch.as_tensor(positive_rank)
    if positive_rank.dim() != 1 or positive_rank.numel() == 0:
        raise ValueError(
            f"positive_rank must be a non-empty 1-D tensor, got shape {tuple(positive_rank.shape)}"
        )
    return {k: 100.0 * (positive_rank < k).double().mean().item() for k in ks}


def random_recall(k: int, gallery_size: int) -> float:
    """Expected R@K of a uniformly random ranking with one positive: min(K, G) / G · 100."""
    return 100.0 * min(k, gallery_size) / gallery_size


def retrieval_metrics(
    i2t: Ranking,
    t2i: Ranking,
    ks: Sequence[int] = RECALL_KS,
    rsum_short_ks: Sequence[int] = RSUM_SHORT_KS,
) -> dict[str, float]:
    """R@K both ways, ``rsum`` (all ``ks`` both ways: the paper's 8-term RSUM), ``rsum6`` (``rsum_short_ks``
    both ways) and the random-ranking row.

    ``random_r{k}`` is the mean of the two directions' random recall (equal when both galleries have the
    same size, as in the one-query-per-study protocol); ``random_rsum*`` sum each direction's own value.
    ``n_queries`` counts the image→text queries.
    """
    ks, short = check_ks(ks), check_ks(rsum_short_ks)
    out: dict[str, float] = {}
    every = sorted(set(ks + short))
    recalls = {"i2t": recall_at_k(i2t.positive_rank, every), "t2i": recall_at_k(t2i.positive_rank, every)}
    sizes = {"i2t": i2t.gallery_size, "t2i": t2i.gallery_size}
    for direction in ("i2t", "t2i"):
        for k in ks:
            out[f"{direction}_r{k}"] = recalls[direction][k]
    for k in ks:
        out[f"random_r{k}"] = sum(random_recall(k, g) for g in sizes.values()) / 2
    for name, subset in (("rsum", ks), ("rsum6", short)):
        out[name] = sum(recalls[d][k] for d in recalls for k in subset)
        out[f"random_{name}"] = sum(random_recall(k, sizes[d]) for d in sizes for k in subset)
    out["n_queries"] = i2t.n_queries
    return out


def precision_at_k(
    topk_index: Tensor,
    query_labels: Tensor,
    gallery_labels: Tensor,
    ks: Sequence[int] = PRECISION_KS,
) -> dict[str, float]:
    """Class-based P@K (CLIP-XRad): a retrieved item is relevant when it shares at least one positive label
    (value 1; 0, −1 and NaN are not positive) with the query; P@K = 100 · mean over queries of
    (#relevant in the top K) / K.

    Queries without a positive label are excluded (``p_at_k_excluded``; ``p_at_k_queries`` are kept; all
    P@K are NaN when none is kept). ``random_p_at_{k}`` is the expected P@K of a uniformly random ranking:
    100 · mean over kept queries of the fraction of relevant gallery items (the same for every K).
    """
    ks = check_ks(ks)
    topk_index, query_labels, gallery_labels = (
        torch.as_tensor(t) for t in (topk_index, query_labels, gallery_labels)
    )
    if (
        query_labels.dim() != 2
        or gallery_labels.dim() != 2
        or query_labels.shape[1] != gallery_labels.shape[1]
    ):
        raise ValueError(
            f"labels must be [Q, C] and [G, C], got {tuple(query_labels.shape)} and "
            f"{tuple(gallery_labels.shape)}"
        )
    if topk_index.dim() != 2 or topk_index.shape[0] != query_labels.shape[0]:
        raise ValueError(f"topk_index must be [Q={query_labels.shape[0]}, k], got {tuple(topk_index.shape)}")
    if max(ks) > topk_index.shape[1]:
        raise ValueError(
            f"P@{max(ks)} needs at least {max(ks)} ranked items per query, got {topk_index.shape[1]}"
        )
    n_gallery = gallery_labels.shape[0]
    if n_gallery == 0:
        raise ValueError("gallery_labels is empty")
    if topk_index.numel() and (topk_index.min() < 0 or topk_index.max() >= n_gallery):
        raise ValueError(f"topk_index must index the gallery [0, {n_gallery})")
    query_pos, gallery_pos = query_labels == 1, gallery_labels == 1
    kept = query_pos.any(1)
    query_pos, topk_index = query_pos[kept], topk_index[kept].long()
    out: dict[str, float] = {}
    relevant = (query_pos[:, None, :] & gallery_pos[topk_index]).any(-1).double()
    patterns, counts = torch.unique(gallery_pos, dim=0, return_counts=True)
    shares = (query_pos.double() @ patterns.double().T) > 0
    expected = 100.0 * (shares.double() @ counts.double()).mean().item() / n_gallery
    for k in ks:
        out[f"p_at_{k}"] = 100.0 * relevant[:, :k].mean().item() if len(relevant) else float("nan")
        out[f"random_p_at_{k}"] = expected if len(relevant) else float("nan")
    out["p_at_k_queries"] = int(kept.sum())
    out["p_at_k_excluded"] = int((~kept).sum())
    return out
