"""Binary classification metrics on score / label arrays: AUROC, ROC curve, Youden threshold, accuracy.

Targets follow the CheXpert convention (1 positive, 0 negative, -1 uncertain, NaN blank) and a target
counts as positive only when it equals 1; uncertain and blank count as negative. Boolean and 0/1 arrays
work unchanged. Every function accepts numpy arrays or torch tensors and computes in float64 on the CPU.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor | Sequence[float]
TARGET_VALUES = (1.0, 0.0, -1.0)


def to_numpy(x: Any, ndim: int, name: str) -> np.ndarray:
    """`x` as a float64 array with exactly `ndim` dimensions (ValueError otherwise)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    array = np.asarray(x, dtype=np.float64)
    if array.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {array.shape}")
    return array


def finite_scores(x: Any, ndim: int, name: str = "scores") -> np.ndarray:
    array = to_numpy(x, ndim, name)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} must be finite")
    return array


def positives(x: Any, ndim: int, name: str = "targets") -> np.ndarray:
    """Boolean mask of targets equal to 1; values outside {1, 0, -1, NaN} are a ValueError."""
    array = to_numpy(x, ndim, name)
    known = np.isnan(array) | np.isin(array, TARGET_VALUES)
    if not known.all():
        bad = np.unique(array[~known])[:5].tolist()
        raise ValueError(f"{name} must hold 1 / 0 / -1 / NaN, got e.g. {bad}")
    return array == 1.0


def _pair(scores: Any, targets: Any) -> tuple[np.ndarray, np.ndarray]:
    s = finite_scores(scores, 1)
    y = positives(targets, 1)
    if s.shape != y.shape:
        raise ValueError(f"scores {s.shape} and targets {y.shape} must have the same length")
    return s, y


def _roc_counts(s: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1] if s.size else np.zeros(0, dtype=np.int64)
    tps = np.cumsum(y, dtype=np.int64)[last]
    fps = last + 1 - tps
    return np.r_[np.inf, s[last]], np.r_[0, fps], np.r_[0, tps]


def auroc(scores: ArrayLike, targets: ArrayLike) -> float:
    """Area under the ROC curve in its Mann–Whitney form.

    AUROC = P(s⁺ > s⁻) + ½·P(s⁺ = s⁻) over all (positive, negative) pairs, computed exactly in integers
    (a tied positive–negative pair counts ½). NaN when positives or negatives are absent (including empty
    input), since the pair set is empty. One row of `auroc_batch`.
    """
    s, y = _pair(scores, targets)
    return float(auroc_batch(s[None], y[None])[0])


def auroc_batch(scores: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """AUROC [R] of each row of [R, N] finite scores and boolean positives (see `auroc`; NaN where a row
    lacks positives or negatives): the one definition, batched for bootstrap resamples.

    Per row: twice the area = Σ over positives of (2·#negatives scoring lower + #negatives scoring equal),
    an exact integer, divided once by 2·n⁺·n⁻.
    """
    s, y = np.asarray(scores, dtype=np.float64), np.asarray(positive, dtype=bool)
    if s.ndim != 2 or s.shape != y.shape:
        raise ValueError(f"scores and positive must be [R, N] of one shape, got {s.shape} and {y.shape}")
    rows, n = s.shape
    order = np.argsort(s, axis=1, kind="stable")
    s, y = np.take_along_axis(s, order, 1), np.take_along_axis(y, order, 1)
    position = np.broadcast_to(np.arange(n), (rows, n))
    new_group = np.ones((rows, n), dtype=bool)
    new_group[:, 1:] = s[:, 1:] != s[:, :-1]
    last_of_group = np.ones((rows, n), dtype=bool)
    last_of_group[:, :-1] = new_group[:, 1:]
    starts = np.maximum.accumulate(np.where(new_group, position, 0), axis=1)
    ends = np.minimum.accumulate(np.where(last_of_group, position, n - 1)[:, ::-1], axis=1)[:, ::-1]
    negatives = np.cumsum(~y, axis=1, dtype=np.int64)
    below = np.where(starts > 0, np.take_along_axis(negatives, np.maximum(starts - 1, 0), 1), 0)
    tied = np.take_along_axis(negatives, ends, 1) - below if n else below
    twice_area = np.where(y, 2 * below + tied, 0).sum(1)
    n_pos = y.sum(1)
    pairs = 2 * n_pos * (n - n_pos)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, twice_area / np.maximum(pairs, 1), np.nan)


def roc_curve(scores: ArrayLike, targets: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC points (fpr, tpr, thresholds), one per distinct score plus a leading +inf threshold.

    At threshold t a study is predicted positive when score >= t; TPR = TP / #positives and
    FPR = FP / #negatives. Thresholds are strictly descending. No point is dropped (this equals
    `sklearn.metrics.roc_curve(..., drop_intermediate=False)`). A rate whose class is absent is NaN.
    """
    s, y = _pair(scores, targets)
    thresholds, fps, tps = _roc_counts(s, y)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    fpr = fps / n_neg if n_neg else np.full(fps.shape, math.nan)
    tpr = tps / n_pos if n_pos else np.full(tps.shape, math.nan)
    return fpr, tpr, thresholds


def youden_threshold(scores: ArrayLike, targets: ArrayLike) -> float:
    """Threshold maximising Youden's J = TPR − FPR, predicting positive when score >= threshold.

    Candidates are the ROC thresholds (every distinct score and +inf); among tied maxima the largest
    threshold wins. J is compared exactly in integers (TP·n⁻ − FP·n⁺). Fallback when a class is absent,
    where J is undefined: no positives → +inf (predict all negative), no negatives → −inf (predict all
    positive), i.e. the constant prediction that is correct on every given study.
    """
    s, y = _pair(scores, targets)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0:
        return math.inf
    if n_neg == 0:
        return -math.inf
    thresholds, fps, tps = _roc_counts(s, y)
    j = tps * n_neg - fps * n_pos
    return float(thresholds[int(np.argmax(j))])


def binary_accuracy(scores: ArrayLike, targets: ArrayLike, threshold: float) -> float:
    """Accuracy = fraction of studies with (score >= threshold) == (target == 1); NaN on empty input."""
    hits = thresholded_correct(scores, targets, threshold)
    if hits.size == 0:
        return math.nan
    return float(np.mean(hits))


def thresholded_correct(scores: ArrayLike, targets: ArrayLike, threshold: float) -> np.ndarray:
    """Per study, whether the thresholded prediction (score >= threshold) matches (target == 1): the
    outcome `binary_accuracy` averages, kept per study so resamples can average it too."""
    if math.isnan(threshold):
        raise ValueError("threshold must not be NaN")
    s, y = _pair(scores, targets)
    return (s >= threshold) == y


def nanmean(values: Sequence[float]) -> float:
    """Mean of the non-NaN values; NaN when there are none (no RuntimeWarning)."""
    kept = [v for v in values if not math.isnan(v)]
    return float(np.mean(kept)) if kept else math.nan


def per_label_metrics(
    scores: ArrayLike, targets: ArrayLike, thresholds: ArrayLike, names: Sequence[str]
) -> dict[str, Any]:
    """AUROC and thresholded accuracy of each label column, plus macro means.

    Returns {"per_label": {name: {auroc, accuracy, threshold, n_pos, n}}, "macro_auroc",
    "macro_accuracy", "n_labels_auroc"}. Macro means average the labels whose value is defined (AUROC is
    NaN for a label without positives or without negatives); `n_labels_auroc` counts the labels averaged.
    """
    s = finite_scores(scores, 2)
    y = positives(targets, 2)
    t = to_numpy(thresholds, 1, "thresholds")
    names = list(names)
    if s.shape != y.shape:
        raise ValueError(f"scores {s.shape} and targets {y.shape} must have the same shape")
    if t.shape != (s.shape[1],) or len(names) != s.shape[1]:
        raise ValueError(
            f"need one threshold and one name per column ({s.shape[1]}), got {t.shape[0]} and {len(names)}"
        )
    if len(set(names)) != len(names):
        raise ValueError("label names must be unique")
    per_label = {}
    for c, name in enumerate(names):
        per_label[name] = {
            "auroc": auroc(s[:, c], y[:, c]),
            "accuracy": binary_accuracy(s[:, c], y[:, c], float(t[c])),
            "threshold": float(t[c]),
            "n_pos": int(y[:, c].sum()),
            "n": int(s.shape[0]),
        }
    aurocs = [m["auroc"] for m in per_label.values()]
    return {
        "per_label": per_label,
        "macro_auroc": nanmean(aurocs),
        "macro_accuracy": nanmean([m["accuracy"] for m in per_label.values()]),
        "n_labels_auroc": sum(not math.isnan(a) for a in aurocs),
    }
