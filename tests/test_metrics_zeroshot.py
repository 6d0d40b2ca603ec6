"""Zero-shot protocols: prompts, arg-max per-class accuracy (a) and binary-prompt AUROC / Youden accuracy (b)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pipeline.metrics.classification import auroc, binary_accuracy, youden_threshold
from pipeline.metrics.zeroshot import (
    ZERO_SHOT_CLASSES,
    argmax_prompts,
    binary_prompt_probability,
    binary_prompts,
    class_columns,
    prompt_name,
    zero_shot_argmax,
    zero_shot_binary,
)
from pipeline.mimic.schema import LABEL_COLUMNS


def brute_argmax_accuracy(sim, labels):
    out = []
    for c in range(sim.shape[1]):
        rows = [i for i in range(sim.shape[0]) if labels[i, c] == 1]
        hits = [max(range(sim.shape[1]), key=lambda j, i=i: (sim[i, j], -j)) == c for i in rows]
        out.append(sum(hits) / len(rows) if rows else math.nan)
    return out


def test_zero_shot_classes_are_the_13_pathologies_in_label_column_order():
    assert len(ZERO_SHOT_CLASSES) == 13 and "No Finding" not in ZERO_SHOT_CLASSES
    assert [c for c in LABEL_COLUMNS if c in ZERO_SHOT_CLASSES] == list(ZERO_SHOT_CLASSES)


def test_class_columns_selects_by_name():
    labels = np.arange(2 * 14, dtype=float).reshape(2, 14) % 3 - 1
    picked = class_columns(labels)
    assert picked.shape == (2, 13)
    for j, name in enumerate(ZERO_SHOT_CLASSES):
        np.testing.assert_array_equal(picked[:, j], labels[:, LABEL_COLUMNS.index(name)])
    with pytest.raises(ValueError, match="14 columns"):
        class_columns(labels[:, :13])
    with pytest.raises(ValueError, match="unknown"):
        class_columns(labels, ["Nodule"])


def test_prompts_lower_case_names_and_keep_acronyms():
    assert prompt_name("Pleural Effusion") == "pleural effusion"
    assert prompt_name("COVID-19 Pneumonia") == "COVID-19 pneumonia"
    assert argmax_prompts(["Pleural Effusion", "Edema"]) == [
        "a chest X-ray with pleural effusion",
        "a chest X-ray with edema",
    ]
    assert argmax_prompts(["Edema"], template="{} is present") == ["edema is present"]
    pos, neg = binary_prompts(["Lung Opacity", "Fracture"])
    assert pos == ["lung opacity", "fracture"] and neg == ["no lung opacity", "no fracture"]
    pos, neg = binary_prompts(["Edema"], positive="signs of {}", negative="no signs of {}")
    assert (pos, neg) == (["signs of edema"], ["no signs of edema"])


def test_argmax_hand_computed():
    sim = np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.7, 0.6, 0.0], [0.5, 0.5, 0.1]])
    labels = np.array([[1, 0, 0], [1, 1, np.nan], [0, 1, -1], [0, 1, 0]])
    out = zero_shot_argmax(sim, labels, ["a", "b", "c"])
    # a: rows 0,1 positive, predicted a, b -> 1/2; b: rows 1,2,3 predicted b, a, a (tie -> first) -> 1/3
    assert out["per_class"]["a"] == {"accuracy": 0.5, "n_correct": 1, "n_pos": 2}
    assert out["per_class"]["b"] == {"accuracy": pytest.approx(1 / 3), "n_correct": 1, "n_pos": 3}
    assert math.isnan(out["per_class"]["c"]["accuracy"]) and out["per_class"]["c"]["n_pos"] == 0
    assert out["mean_accuracy"] == pytest.approx((0.5 + 1 / 3) / 2)
    assert (out["n_classes"], out["n_classes_without_positives"], out["n"]) == (2, 1, 4)


@pytest.mark.parametrize("seed", range(5))
def test_argmax_vs_brute_force(seed):
    rng = np.random.default_rng(seed)
    sim = rng.integers(0, 4, size=(30, 13)).astype(float)
    labels = rng.choice([1.0, 0.0, -1.0, np.nan], size=(30, 13), p=[0.2, 0.5, 0.15, 0.15])
    labels[:, 5] = 0.0
    expected = brute_argmax_accuracy(sim, labels)
    out = zero_shot_argmax(torch.tensor(sim), torch.tensor(labels))
    got = [out["per_class"][n]["accuracy"] for n in ZERO_SHOT_CLASSES]
    np.testing.assert_allclose(got, expected)
    assert out["mean_accuracy"] == pytest.approx(np.nanmean(expected))
    assert out["n_classes_without_positives"] == 1


def test_argmax_single_study_and_no_positives_at_all():
    out = zero_shot_argmax([[0.1, 0.3]], [[0, 1]], ["a", "b"])
    assert out["per_class"]["b"]["accuracy"] == 1.0 and out["mean_accuracy"] == 1.0
    out = zero_shot_argmax(np.zeros((0, 2)), np.zeros((0, 2)), ["a", "b"])
    assert math.isnan(out["mean_accuracy"]) and out["n_classes_without_positives"] == 2


def test_binary_prompt_probability_is_two_way_softmax():
    pos = np.array([[0.3, 0.1], [0.0, 0.2]])
    neg = np.array([[0.1, 0.1], [0.5, -0.2]])
    tau = 0.07
    expected = np.exp(pos / tau) / (np.exp(pos / tau) + np.exp(neg / tau))
    np.testing.assert_allclose(binary_prompt_probability(pos, neg, tau), expected, rtol=1e-12)
    assert binary_prompt_probability([[0.5]], [[0.5]], 1.0)[0, 0] == 0.5
    huge = binary_prompt_probability([[1000.0, -1000.0]], [[-1000.0, 1000.0]], 0.01)
    assert huge.tolist() == [[1.0, 0.0]]


def test_zero_shot_binary_uses_validation_thresholds_on_test():
    rng = np.random.default_rng(0)
    prob_val, prob_test = rng.random((20, 3)), rng.random((15, 3))
    labels_val = rng.choice([1.0, 0.0, -1.0, np.nan], size=(20, 3))
    labels_test = rng.choice([1.0, 0.0, -1.0, np.nan], size=(15, 3))
    labels_val[:, 2] = 0.0
    out = zero_shot_binary(prob_test, labels_test, prob_val, labels_val, ["a", "b", "c"])
    for c, name in enumerate("abc"):
        threshold = youden_threshold(prob_val[:, c], labels_val[:, c])
        metrics = out["per_label"][name]
        assert metrics["threshold"] == threshold
        assert metrics["auroc"] == auroc(prob_test[:, c], labels_test[:, c])
        expected = np.mean((prob_test[:, c] >= threshold) == (labels_test[:, c] == 1))
        assert metrics["accuracy"] == pytest.approx(expected)
        assert metrics["accuracy"] == binary_accuracy(prob_test[:, c], labels_test[:, c], threshold)
    assert out["per_label"]["c"]["threshold"] == math.inf
    assert out["macro_auroc"] == pytest.approx(np.mean([out["per_label"][n]["auroc"] for n in "abc"]))


def test_zero_shot_binary_hand_computed():
    # validation: J is 1 at threshold 0.6 (positives 0.9, 0.6; negatives 0.4, 0.2)
    prob_val = np.array([[0.9], [0.6], [0.4], [0.2]])
    labels_val = np.array([[1], [1], [0], [-1]])
    prob_test = np.array([[0.7], [0.5], [0.65], [0.1]])
    labels_test = np.array([[1], [1], [0], [0]])
    out = zero_shot_binary(prob_test, labels_test, prob_val, labels_val, ["x"])
    assert out["per_label"]["x"]["threshold"] == 0.6
    assert out["per_label"]["x"]["accuracy"] == 0.5
    assert out["per_label"]["x"]["auroc"] == 0.75


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: zero_shot_argmax(np.zeros((3, 2)), np.zeros((3, 3)), ["a", "b"]), "must agree"),
        (lambda: zero_shot_argmax(np.zeros((3, 2)), np.zeros((3, 2)), ["a"]), "must agree"),
        (lambda: zero_shot_argmax(np.zeros(3), np.zeros(3), ["a"]), "2 dimension"),
        (lambda: zero_shot_argmax(np.zeros((3, 0)), np.zeros((3, 0)), []), "at least one class"),
        (lambda: zero_shot_argmax([[np.nan, 0.0]], [[1, 0]], ["a", "b"]), "finite"),
        (lambda: binary_prompt_probability([[0.1]], [[0.1, 0.2]], 0.1), "same shape"),
        (lambda: binary_prompt_probability([[0.1]], [[0.1]], 0.0), "temperature"),
        (
            lambda: zero_shot_binary(
                np.zeros((2, 2)), np.zeros((2, 2)), np.zeros((2, 2)), np.zeros((2, 1)), ["a", "b"]
            ),
            "disagree",
        ),
        (
            lambda: zero_shot_binary(
                np.zeros((2, 2)), np.zeros((2, 1)), np.zeros((2, 2)), np.zeros((2, 2)), ["a", "b"]
            ),
            "same shape",
        ),
    ],
)
def test_bad_inputs_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()
