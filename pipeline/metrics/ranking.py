"""Rank a gallery for every query, one chunk of queries at a time.

Everything the retrieval, selective and calibration metrics need is reduced per chunk to O(k) numbers per
query, so evaluation memory is O(Q·k + chunk·G) and the full [Q, G] score matrix never exists.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

Embeddings = Mapping[str, Tensor]
ScoreFn = Callable[[Embeddings, Embeddings], Tensor]
DIAGONAL_BLOCK = 64


@dataclass(frozen=True, eq=False)
class Ranking:
    """One retrieval direction.

    ``positive_rank`` is the 0-based rank of the positive with ties counted against the query: the number
    of gallery items scoring >= the positive, minus one (a constant score ranks every positive last, so a
    constant model gets R@K = 0 for every K < G). ``topk_index``/``topk_score`` list the k best items
    by descending score, lower gallery index first among equal scores; a positive tied with other items may
    therefore appear in the top k before its ``positive_rank``. ``logsumexp`` is logsumexp(score / τ) over
    the whole gallery when a temperature τ was given.
    """

    positive_rank: Tensor
    positive_score: Tensor
    topk_index: Tensor
    topk_score: Tensor
    gallery_size: int
    logsumexp: Tensor | None = None
    temperature: float | None = None

    @property
    def n_queries(self) -> int:
        return int(self.positive_rank.shape[0])


def num_rows(embeddings: Embeddings, name: str) -> int:
    """Common leading dimension of every tensor in an embedding dict."""
    if not isinstance(embeddings, Mapping) or not embeddings:
        raise ValueError(f"{name} must be a non-empty mapping of tensors, got {type(embeddings).__name__}")
    sizes = {
        key: t.shape[0] if isinstance(t, Tensor) and t.dim() >= 1 else None for key, t in embeddings.items()
    }
    if None in sizes.values() or len(set(sizes.values())) != 1:
        shapes = {key: tuple(getattr(t, "shape", ())) for key, t in embeddings.items()}
        raise ValueError(f"{name} tensors must share a leading dimension, got shapes {shapes}")
    return next(iter(sizes.values()))


def take_rows(embeddings: Embeddings, rows: slice | Tensor) -> dict[str, Tensor]:
    """The same rows of every tensor in an embedding dict."""
    return {key: t[rows] for key, t in embeddings.items()}


def stable_topk(scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Row-wise top k by descending score, lower column first on ties (``torch.topk`` promises neither).

    Rows whose k-th value is tied with a column outside the top k fall back to a full stable sort.
    """
    values, index = scores.topk(k, dim=1)
    order = index.argsort(dim=1)
    values, index = values.gather(1, order), index.gather(1, order)
    order = values.argsort(dim=1, descending=True, stable=True)
    values, index = values.gather(1, order), index.gather(1, order)
    kth = values[:, -1:]
    spill = (scores == kth).sum(1) > (values == kth).sum(1)
    if spill.any():
        rows = spill.nonzero().squeeze(1)
        full_values, full_index = scores[rows].sort(dim=1, descending=True, stable=True)
        values[rows], index[rows] = full_values[:, :k], full_index[:, :k]
    return values, index


def rank_queries(
    score_fn: ScoreFn,
    queries: Embeddings,
    gallery: Embeddings,
    positives: Tensor | None = None,
    k: int = 100,
    chunk: int = 1024,
    temperature: float | None = None,
) -> Ranking:
    """Rank ``gallery`` for every query with ``score_fn(query_chunk, gallery) -> [chunk, G]`` (higher =
    better); query i's positive is gallery item ``positives[i]`` (default i). k is capped at G.

    Scores are compared in at least fp32. NaN scores raise, since they would make every rank meaningless.
    """
    n_queries, n_gallery = num_rows(queries, "queries"), num_rows(gallery, "gallery")
    _check_args(n_gallery, k, chunk, temperature)
    positives = _positives(positives, n_queries, n_gallery)
    k = min(k, n_gallery)
    parts = []
    for rows, size in _blocks(n_queries, chunk):
        scores = _score_block(score_fn, take_rows(queries, rows), gallery, size, n_gallery)
        parts.append(_row_stats(scores, positives[rows], k, temperature))
    return _collect(parts, n_gallery, k, temperature)


def rank_both_ways(
    score_fn: ScoreFn,
    images: Embeddings,
    texts: Embeddings,
    positives: Tensor | None = None,
    k: int = 100,
    chunk: int = 1024,
    temperature: float | None = None,
) -> tuple[Ranking, Ranking]:
    """Image→text and text→image rankings from one pass over the [N, N] scores, for a symmetric score
    (``score_fn(texts, images) == score_fn(images, texts).T``: cosine, CSD and ELK are). Same result as
    two `rank_queries` calls at half the scoring work, which dominates for the ELK distance.

    Image i pairs with text ``positives[i]`` (a permutation, default i). The text→image rank compares
    every other image with the pair's score, computed beforehand from small diagonal blocks (64·N pairs
    against N² for the pass); the positive is never compared with itself, so a last-bit
    difference between the two computations of its score cannot shift its own rank.
    """
    n, n_texts = num_rows(images, "images"), num_rows(texts, "texts")
    if n != n_texts:
        raise ValueError(f"rank_both_ways pairs images and texts one-to-one, got {n} images, {n_texts} texts")
    _check_args(n, k, chunk, temperature)
    positives = _positives(positives, n, n)
    if not torch.equal(positives.sort().values, torch.arange(n)):
        raise ValueError("rank_both_ways needs positives to be a permutation of the texts")
    k = min(k, n)
    pair_score = torch.cat(
        [
            _score_block(
                score_fn, take_rows(images, rows), take_rows(texts, positives[rows]), size, size
            ).diagonal()
            for rows, size in _blocks(n, min(chunk, DIAGONAL_BLOCK))
        ]
    )
    text_score = torch.empty_like(pair_score)
    text_score[positives.to(pair_score.device)] = pair_score
    parts, count, top_score, top_index, lse = [], 0, None, None, None
    for rows, size in _blocks(n, chunk):
        scores = _score_block(score_fn, take_rows(images, rows), texts, size, n)
        pos = positives[rows].to(scores.device)
        parts.append(_row_stats(scores, pos, k, temperature))
        others = scores >= text_score
        others[torch.arange(size, device=scores.device), pos] = False
        count = count + others.sum(0)
        block_score, block_index = stable_topk(scores.T.contiguous(), min(k, size))
        top_score, top_index = _merge_topk(top_score, top_index, block_score, block_index + rows.start, k)
        if temperature is not None:
            block_lse = torch.logsumexp(scores / temperature, dim=0)
            lse = block_lse if lse is None else torch.logaddexp(lse, block_lse)
    i2t = _collect(parts, n, k, temperature)
    inverse = positives.argsort().to(i2t.positive_score.device)
    t2i = Ranking(count, i2t.positive_score[inverse], top_index, top_score, n, lse, temperature)
    return i2t, t2i


def _check_args(n_gallery: int, k: int, chunk: int, temperature: float | None) -> None:
    if n_gallery == 0:
        raise ValueError("gallery is empty")
    if k < 1 or chunk < 1:
        raise ValueError(f"k and chunk must be >= 1, got k={k}, chunk={chunk}")
    if temperature is not None and not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def _blocks(n: int, size: int):
    for start in range(0, n, size):
        stop = min(start + size, n)
        yield slice(start, stop), stop - start


def _score_block(score_fn: ScoreFn, queries: Embeddings, gallery: Embeddings, rows: int, cols: int) -> Tensor:
    scores = score_fn(queries, gallery)
    if not isinstance(scores, Tensor) or tuple(scores.shape) != (rows, cols):
        got = tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__
        raise ValueError(f"score_fn must return [{rows}, {cols}] scores, got {got}")
    scores = scores.detach().to(torch.promote_types(scores.dtype, torch.float32))
    if scores.isnan().any():
        raise ValueError("score_fn returned NaN scores")
    return scores


def _row_stats(scores: Tensor, positives: Tensor, k: int, temperature: float | None) -> tuple:
    pos_score = scores.gather(1, positives.to(scores.device)[:, None])
    rank = (scores >= pos_score).sum(1) - 1
    top_score, top_index = stable_topk(scores, k)
    lse = torch.logsumexp(scores / temperature, dim=1) if temperature is not None else None
    return rank, pos_score.squeeze(1), top_index, top_score, lse


def _merge_topk(
    score: Tensor | None, index: Tensor | None, new_score: Tensor, new_index: Tensor, k: int
) -> tuple[Tensor, Tensor]:
    """Top k of two candidate lists whose items of equal score are in index order, the first list's
    indices all lower: a stable sort of their concatenation keeps lower indices first."""
    if score is None or index is None:
        return new_score, new_index
    score, index = torch.cat([score, new_score], 1), torch.cat([index, new_index], 1)
    order = score.argsort(dim=1, descending=True, stable=True)[:, :k]
    return score.gather(1, order), index.gather(1, order)


def _collect(parts: list[tuple], n_gallery: int, k: int, temperature: float | None) -> Ranking:
    if not parts:
        return Ranking(
            torch.empty(0, dtype=torch.long),
            torch.empty(0),
            torch.empty(0, k, dtype=torch.long),
            torch.empty(0, k),
            n_gallery,
            torch.empty(0) if temperature is not None else None,
            temperature,
        )
    rank, pos_score, top_index, top_score, lse = (
        torch.cat(p) if p[0] is not None else None for p in zip(*parts, strict=True)
    )
    return Ranking(rank, pos_score, top_index, top_score, n_gallery, lse, temperature)


def _positives(positives: Tensor | None, n_queries: int, n_gallery: int) -> Tensor:
    if positives is None:
        if n_queries > n_gallery:
            raise ValueError(
                f"default positives (query i -> item i) need Q <= G, got Q={n_queries} G={n_gallery}"
            )
        return torch.arange(n_queries)
    positives = torch.as_tensor(positives)
    if positives.shape != (n_queries,) or positives.is_floating_point() or positives.dtype == torch.bool:
        raise ValueError(
            f"positives must be an integer tensor of shape [{n_queries}], got {positives.dtype} "
            f"{tuple(positives.shape)}"
        )
    if n_queries and (positives.min() < 0 or positives.max() >= n_gallery):
        raise ValueError(
            f"positives must index the gallery [0, {n_gallery}), got range "
            f"[{int(positives.min())}, {int(positives.max())}]"
        )
    return positives.long().cpu()
