"""Zero-shot classification from image–prompt similarities, in the two published protocols.

(a) MedProbCLIP: one prompt per pathology, predicted class = most similar prompt, per-class accuracy on the
    studies positive for that class. (b) CLIP-XRad: a positive and a negative prompt per class,
    P(present) = softmax of the two similarities / τ, per-class AUROC and accuracy at a Youden threshold
    chosen on validation. Labels follow the CheXpert convention: positive means == 1; uncertain (-1),
    negative (0) and blank (NaN) are all negative.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.special import expit

from pipeline.metrics.classification import (
    ArrayLike,
    finite_scores,
    nanmean,
    per_label_metrics,
    positives,
    to_numpy,
    youden_threshold,
)
from pipeline.mimic.schema import LABEL_COLUMNS

# The 13 pathology classes in the column order of the label arrays (schema.LABEL_COLUMNS).
ZERO_SHOT_CLASSES: tuple[str, ...] = tuple(c for c in LABEL_COLUMNS if c != "No Finding")


def class_columns(
    labels: ArrayLike, classes: Sequence[str] = ZERO_SHOT_CLASSES, columns: Sequence[str] = LABEL_COLUMNS
) -> np.ndarray:
    """The `classes` columns of a [N, len(columns)] label array, in `classes` order."""
    array = to_numpy(labels, 2, "labels")
    if array.shape[1] != len(columns):
        raise ValueError(f"labels must have {len(columns)} columns, got {array.shape[1]}")
    missing = [c for c in classes if c not in columns]
    if missing:
        raise ValueError(f"unknown classes {missing}")
    return array[:, [list(columns).index(c) for c in classes]]


def prompt_name(name: str) -> str:
    """Class name as it reads inside a sentence: words lower-cased, acronyms (all-caps words) kept."""
    return " ".join(w if len(w) > 1 and w.isupper() else w.lower() for w in name.split())


def argmax_prompts(class_names: Sequence[str], template: str = "a chest X-ray with {}") -> list[str]:
    """One prompt per class for protocol (a), e.g. "a chest X-ray with pleural effusion"."""
    return [template.format(prompt_name(n)) for n in class_names]


def binary_prompts(
    class_names: Sequence[str], positive: str = "{}", negative: str = "no {}"
) -> tuple[list[str], list[str]]:
    """(positive prompts, negative prompts) per class for protocol (b), e.g. "edema" / "no edema"."""
    names = [prompt_name(n) for n in class_names]
    return [positive.format(n) for n in names], [negative.format(n) for n in names]


def zero_shot_argmax(
    similarity: ArrayLike, labels: ArrayLike, names: Sequence[str] = ZERO_SHOT_CLASSES
) -> dict[str, Any]:
    """Protocol (a): per-class accuracy of the arg-max prompt on the studies positive for that class.

    accuracy_c = #{i : label_ic == 1 and argmax_j sim_ij == c} / #{i : label_ic == 1}; ties in the
    similarity go to the first class. A class with no positive study has accuracy NaN, is left out of
    `mean_accuracy` and is counted in `n_classes_without_positives`.
    """
    names = list(names)
    hits, pos = argmax_outcomes(similarity, labels, len(names))
    per_class = {}
    for c, name in enumerate(names):
        n_pos = int(pos[:, c].sum())
        n_correct = int(hits[:, c].sum())
        per_class[name] = {
            "accuracy": n_correct / n_pos if n_pos else math.nan,
            "n_correct": n_correct,
            "n_pos": n_pos,
        }
    accuracies = [m["accuracy"] for m in per_class.values()]
    evaluated = sum(not math.isnan(a) for a in accuracies)
    return {
        "per_class": per_class,
        "mean_accuracy": nanmean(accuracies),
        "n_classes": evaluated,
        "n_classes_without_positives": len(names) - evaluated,
        "n": int(pos.shape[0]),
    }


def argmax_outcomes(
    similarity: ArrayLike, labels: ArrayLike, n_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Protocol (a) per study and class: (hit, positive), both boolean [N, C], where hit = positive for
    the class and the arg-max prompt is that class (first class on ties). accuracy_c = Σ hit / Σ positive
    over any multiset of studies, which is what a bootstrap resample needs."""
    sim = finite_scores(similarity, 2, "similarity")
    pos = positives(labels, 2, "labels")
    if sim.shape != pos.shape or n_classes != sim.shape[1]:
        raise ValueError(
            f"similarity {sim.shape}, labels {pos.shape} and {n_classes} names must agree as [N, C]"
        )
    if sim.shape[1] == 0:
        raise ValueError("need at least one class")
    predicted = np.argmax(sim, axis=1)
    return pos & (predicted[:, None] == np.arange(sim.shape[1])), pos


def binary_prompt_probability(pos_sim: ArrayLike, neg_sim: ArrayLike, temperature: float) -> np.ndarray:
    """P(present) = softmax([pos, neg] / τ)[0] = sigmoid((pos − neg) / τ), elementwise on [N, C]."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    pos = finite_scores(pos_sim, 2, "pos_sim")
    neg = finite_scores(neg_sim, 2, "neg_sim")
    if pos.shape != neg.shape:
        raise ValueError(f"pos_sim {pos.shape} and neg_sim {neg.shape} must have the same shape")
    return expit((pos - neg) / temperature)


def zero_shot_binary(
    prob_test: ArrayLike,
    labels_test: ArrayLike,
    prob_val: ArrayLike,
    labels_val: ArrayLike,
    names: Sequence[str] = ZERO_SHOT_CLASSES,
) -> dict[str, Any]:
    """Protocol (b): per-class test AUROC and test accuracy at the validation Youden-J threshold.

    Thresholds follow `classification.youden_threshold` on the validation split (including its fallback
    for a class absent there); the result is `classification.per_label_metrics` on the test split.
    """
    val = finite_scores(prob_val, 2, "prob_val")
    val_pos = positives(labels_val, 2, "labels_val")
    if val.shape != val_pos.shape or val.shape[1] != len(names):
        raise ValueError(f"prob_val {val.shape}, labels_val {val_pos.shape} and {len(names)} names disagree")
    thresholds = np.array([youden_threshold(val[:, c], val_pos[:, c]) for c in range(val.shape[1])])
    return per_label_metrics(prob_test, labels_test, thresholds, names)
