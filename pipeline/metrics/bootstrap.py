"""Paired, seeded bootstrap over test studies: confidence intervals for every headline metric.

The resampling unit is the test study, i.e. the query. Only the queries are resampled: the gallery stays
the full test set, so each query keeps the positive rank, confidence and correctness it had in the one
real ranking, and a resample is a multiset of those per-query outcomes. That is what makes the bootstrap
cheap (no re-ranking) and it matches the question asked: how much would the metric move with another
draw of test queries against this gallery.

Resamples are drawn by `bootstrap_indices`, which depends only on (n, n_resamples, seed): every method
evaluated on the same test split gets the same resamples, so differences between methods are paired.

Intervals are **percentile** intervals: the (1 − level)/2 and (1 + level)/2 quantiles (numpy's default
linear interpolation, as `scipy.stats.bootstrap(method="percentile")`) of the statistic over resamples.
Not BCa: its jackknife acceleration costs n extra evaluations per metric, and percentile intervals are
what the comparison step needs to be consistent with. For skewed statistics of few queries (AURC of a
small test set) a percentile interval may not be centred on, or in rare cases not even contain, the
point estimate.

Undefined statistics: a resample may leave a statistic undefined (a zero-shot class without positive
studies has no accuracy; AUROC needs positives and negatives). Such a resample gives NaN for that
statistic, and the interval is taken over the remaining resamples; ``n_undefined`` counts the skipped
ones, so a reader can tell an interval from 1000 resamples from one from 12. Macro means follow the
point estimate's rule on every resample: the mean over the classes defined in that resample.

Every statistic is computed by the metric modules' own batched definitions (`selective.aurc_batch`,
`calibration.ece_batch`, `classification.auroc_batch`, `zeroshot.argmax_outcomes`), the same code the
point estimates run, so a resample equal to the test set reproduces the point estimate (up to the
summation order of a mean, ~1e-15). Those batched cores are numpy: on [B, n] blocks torch's intra-op
threads cost more than they save, badly so on a busy 2-core machine.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from pipeline.metrics.calibration import ECE_BINS, ece_batch
from pipeline.metrics.classification import auroc_batch, thresholded_correct
from pipeline.metrics.retrieval import RECALL_KS, RSUM_SHORT_KS, check_ks
from pipeline.metrics.selective import aurc_batch, oracle_aurc_by_count

DEFAULT_RESAMPLES = 1000
DEFAULT_LEVEL = 0.95
INTERVAL_METHOD = "percentile"
UNIT = "test study (query)"
DIRECTIONS = ("i2t", "t2i")
BLOCK_ELEMENTS = 2_000_000  # resample rows per batched call: bounds memory at large test sets


def bootstrap_indices(n: int, n_resamples: int, seed: int) -> np.ndarray:
    """[n_resamples, n] study indices drawn uniformly with replacement.

    Integer draws from ``Generator(PCG64(seed))``: they depend only on (n, n_resamples, seed) and are the
    same on every machine (no floating-point transcendental in the draw), so methods evaluated on one test
    split share resamples and their differences are paired.
    """
    check_resamples(n, n_resamples)
    rng = np.random.Generator(np.random.PCG64(seed))
    return rng.integers(0, n, size=(n_resamples, n), dtype=np.int64)


def check_resamples(n: int, n_resamples: int) -> None:
    if n < 1 or n_resamples < 1:
        raise ValueError(f"need n >= 1 and n_resamples >= 1, got n={n}, n_resamples={n_resamples}")


def check_level(level: float) -> float:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    return float(level)


def percentile_interval(
    values: Sequence[float] | np.ndarray, level: float = DEFAULT_LEVEL
) -> tuple[float, float]:
    """Percentile interval (low, high) of per-resample values at confidence ``level``; NaN values
    (undefined resamples) are skipped, and (NaN, NaN) is returned when every resample is undefined."""
    level = check_level(level)
    values = np.asarray(values, dtype=np.float64).ravel()
    values = values[~np.isnan(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(values, [tail, 1.0 - tail])
    return float(low), float(high)


def interval(
    values: np.ndarray, level: float = DEFAULT_LEVEL, count_undefined: bool = False
) -> dict[str, Any]:
    """``{"low", "high"}`` of `percentile_interval`, plus ``n_undefined`` (NaN resamples skipped) when
    the statistic can be undefined, so the JSON shape of a metric does not depend on the data."""
    low, high = percentile_interval(values, level)
    out: dict[str, Any] = {"low": low, "high": high}
    if count_undefined:
        out["n_undefined"] = int(np.isnan(np.asarray(values, dtype=np.float64)).sum())
    return out


def intervals(tree: Mapping[str, Any], level: float = DEFAULT_LEVEL, count_undefined: bool = False) -> dict:
    """`interval` of every per-resample array in a nested dict, keeping the nesting."""
    return {
        key: intervals(value, level, count_undefined)
        if isinstance(value, Mapping)
        else interval(value, level, count_undefined)
        for key, value in tree.items()
    }


def two_sided_p_value(differences: np.ndarray) -> float:
    """Two-sided bootstrap p-value of "the difference is 0": p = min(1, 2·min((#{d ≤ 0} + 1) / (B + 1),
    (#{d ≥ 0} + 1) / (B + 1))) over the B defined resamples. The +1 counts the observed data as one more
    resample, so p is never 0 (at least 2 / (B + 1)); identical methods (d ≡ 0) get p = 1."""
    d = np.asarray(differences, dtype=np.float64).ravel()
    d = d[~np.isnan(d)]
    if d.size == 0:
        return float("nan")
    b = d.size
    below, above = (int((d <= 0).sum()) + 1) / (b + 1), (int((d >= 0).sum()) + 1) / (b + 1)
    return min(1.0, 2.0 * min(below, above))


def _row_blocks(n_resamples: int, n: int) -> Iterator[slice]:
    step = max(1, BLOCK_ELEMENTS // max(n, 1))
    for start in range(0, n_resamples, step):
        yield slice(start, min(start + step, n_resamples))


def _indices(indices: np.ndarray, n: int) -> np.ndarray:
    indices = np.asarray(indices)
    if indices.ndim != 2 or indices.shape[1] == 0 or not np.issubdtype(indices.dtype, np.integer):
        raise ValueError(
            f"indices must be a non-empty integer [B, n] array, got {indices.dtype} {indices.shape}"
        )
    if indices.min() < 0 or indices.max() >= n:
        raise ValueError(f"indices must lie in [0, {n})")
    return indices


def _per_query(x: Any, name: str, ndim: int = 1) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    array = np.asarray(x)
    if array.ndim != ndim or array.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty {ndim}-D per-query array, got shape {array.shape}")
    return array


def recall_resampled(
    positive_rank: Any, indices: np.ndarray, ks: Sequence[int] = RECALL_KS
) -> dict[int, np.ndarray]:
    """R@K [B] per K: 100 · mean over the resampled queries of (0-based positive rank < K), as
    `retrieval.recall_at_k`."""
    rank = _per_query(positive_rank, "positive_rank")
    indices = _indices(indices, rank.shape[0])
    out = {}
    for k in check_ks(ks):
        hit = rank < k
        out[k] = 100.0 * hit[indices].mean(1)
    return out


def retrieval_resampled(
    i2t_rank: Any,
    t2i_rank: Any,
    indices: np.ndarray,
    ks: Sequence[int] = RECALL_KS,
    rsum_short_ks: Sequence[int] = RSUM_SHORT_KS,
) -> dict[str, np.ndarray]:
    """``{d}_r{k}``, ``rsum`` (every K both ways) and ``rsum6`` (the short Ks both ways) per resample, as
    `retrieval.retrieval_metrics`. Study i is query i in both directions, so one index draws both."""
    ks, short = check_ks(ks), check_ks(rsum_short_ks)
    every = sorted(set(ks + short))
    recalls = {
        "i2t": recall_resampled(i2t_rank, indices, every),
        "t2i": recall_resampled(t2i_rank, indices, every),
    }
    out = {f"{d}_r{k}": recalls[d][k] for d in DIRECTIONS for k in ks}
    for name, subset in (("rsum", ks), ("rsum6", short)):
        out[name] = sum(recalls[d][k] for d in DIRECTIONS for k in subset)
    return out


def selective_resampled(
    positive_rank: Any, confidence: Any, indices: np.ndarray, ks: Sequence[int] = RECALL_KS
) -> dict[str, np.ndarray]:
    """``aurc_r{k}`` and ``eaurc_r{k}`` per resample for one direction (a query is correct when its
    positive ranks < K), by `selective.aurc_batch` / `excess_aurc_batch`: a query drawn twice enters the
    risk–coverage curve as two tied queries, which that definition already averages over."""
    rank = _per_query(positive_rank, "positive_rank")
    conf = _per_query(confidence, "confidence").astype(np.float64)
    if conf.shape != rank.shape:
        raise ValueError(f"positive_rank {rank.shape} and confidence {conf.shape} must have one length")
    indices = _indices(indices, rank.shape[0])
    oracle = oracle_aurc_by_count(indices.shape[1])
    out: dict[str, np.ndarray] = {}
    for k in check_ks(ks):
        hit = rank < k
        value = np.concatenate(
            [aurc_batch(hit[indices[rows]], conf[indices[rows]]) for rows in _row_blocks(*indices.shape)]
        )
        out[f"aurc_r{k}"] = value
        out[f"eaurc_r{k}"] = value - oracle[hit[indices].sum(1)]
    return out


def ece_resampled(confidence: Any, correct: Any, indices: np.ndarray, bins: int = ECE_BINS) -> np.ndarray:
    """ECE [B] of top-1 confidence against top-1 correctness per resample, by `calibration.ece_batch`."""
    conf = _per_query(confidence, "confidence").astype(np.float64)
    hit = _per_query(correct, "correct").astype(bool)
    if conf.shape != hit.shape:
        raise ValueError(f"confidence {conf.shape} and correct {hit.shape} must have one length")
    indices = _indices(indices, conf.shape[0])
    return np.concatenate(
        [ece_batch(conf[indices[rows]], hit[indices[rows]], bins) for rows in _row_blocks(*indices.shape)]
    )


def class_sums(outcome: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """[B, C] sums over each resample of a per-study [N, C] outcome: the resample's study counts
    (a [B, N] matrix) times the outcome, exact for the integer counts used here."""
    n, b = outcome.shape[0], len(indices)
    flat = (indices + n * np.arange(b)[:, None]).ravel()
    counts = np.bincount(flat, minlength=b * n).reshape(b, n).astype(np.float64)
    return counts @ outcome.astype(np.float64)


def nanmean_rows(values: np.ndarray) -> np.ndarray:
    """Row means over the non-NaN entries; NaN for a row without any (`classification.nanmean`'s rule)."""
    defined = ~np.isnan(values)
    count = defined.sum(1)
    total = np.where(defined, values, 0.0).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / np.maximum(denominator, 1), np.nan)


def zero_shot_argmax_resampled(
    hits: np.ndarray, positive: np.ndarray, indices: np.ndarray, names: Sequence[str]
) -> dict[str, Any]:
    """Protocol (a) per resample from `zeroshot.argmax_outcomes`: ``per_class[name]`` = Σ hit / Σ positive
    (NaN when the resample holds no positive study of the class) and ``mean_accuracy`` = their mean over
    the defined classes, as `zeroshot.zero_shot_argmax`."""
    hits, positive = _per_query(hits, "hits", 2), _per_query(positive, "positive", 2)
    if hits.shape != positive.shape or hits.shape[1] != len(names):
        raise ValueError(f"hits {hits.shape}, positive {positive.shape} and {len(names)} names disagree")
    indices = _indices(indices, hits.shape[0])
    accuracy = _ratio(class_sums(hits, indices), class_sums(positive, indices))
    return {
        "mean_accuracy": nanmean_rows(accuracy),
        "per_class": {name: accuracy[:, c] for c, name in enumerate(names)},
    }


def zero_shot_binary_resampled(
    probability: np.ndarray,
    positive: np.ndarray,
    thresholds: Sequence[float],
    indices: np.ndarray,
    names: Sequence[str],
) -> dict[str, Any]:
    """Protocol (b) per resample: per-label AUROC (`classification.auroc_batch`, NaN without positives or
    negatives) and accuracy at the fixed validation thresholds (`classification.thresholded_correct`), with
    their macro means over defined labels, as `classification.per_label_metrics`. The thresholds are not
    re-chosen: they come from the validation split, which the test bootstrap does not resample."""
    prob = _per_query(probability, "probability", 2).astype(np.float64)
    pos = _per_query(positive, "positive", 2).astype(bool)
    thresholds = list(thresholds)
    if prob.shape != pos.shape or not prob.shape[1] == len(names) == len(thresholds):
        raise ValueError(
            f"probability {prob.shape}, positive {pos.shape}, {len(thresholds)} thresholds and "
            f"{len(names)} names disagree"
        )
    indices = _indices(indices, prob.shape[0])
    correct = np.stack(
        [thresholded_correct(prob[:, c], pos[:, c], float(t)) for c, t in enumerate(thresholds)], 1
    )
    accuracy = class_sums(correct, indices) / indices.shape[1]
    auroc = np.empty((len(indices), len(names)))
    for c in range(len(names)):
        for rows in _row_blocks(len(indices), prob.shape[0]):
            take = indices[rows]
            auroc[rows, c] = auroc_batch(prob[take, c], pos[take, c])
    return {
        "macro_auroc": nanmean_rows(auroc),
        "macro_accuracy": nanmean_rows(accuracy),
        "per_label": {
            name: {"auroc": auroc[:, c], "accuracy": accuracy[:, c]} for c, name in enumerate(names)
        },
    }
