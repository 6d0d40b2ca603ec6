"""ECE, reliability diagram and top-1 confidences against hand-computed cases and loop references."""

from __future__ import annotations

import math

import pytest
import torch

from pipeline.losses import create_loss
from pipeline.metrics import (
    Ranking,
    expected_calibration_error,
    rank_queries,
    reliability_diagram,
    sigmoid_top1_confidence,
    softmax_top1_confidence,
)


def ref_ece(confidence, correct, bins):
    """Plain loop over bins [b/B, (b+1)/B), the last one closed at 1."""
    n, total = len(confidence), 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        members = [i for i, c in enumerate(confidence) if lo <= c < hi or (b == bins - 1 and c == 1.0)]
        if members:
            acc = sum(correct[i] for i in members) / len(members)
            conf = sum(confidence[i] for i in members) / len(members)
            total += len(members) / n * abs(acc - conf)
    return total


# bins = 4, edges 0, .25, .5, .75, 1
#   bin 0: conf .1 .2 .0 correct 0 1 0 -> acc 1/3, conf .1  -> 3/8 · |1/3 − .1| = 3/8 · 0.2333 = 0.7/8
#   bin 1: conf .3       correct 0     -> acc 0,   conf .3  -> 1/8 · .3                         = 0.3/8
#   bin 2: conf .6 .7    correct 1 1   -> acc 1,   conf .65 -> 2/8 · .35                        = 0.7/8
#   bin 3: conf .9 1.0   correct 1 0   -> acc 1/2, conf .95 -> 2/8 · .45                        = 0.9/8
#   ECE = 2.6 / 8 = 0.325
HAND_CONF = torch.tensor([0.1, 0.2, 0.3, 0.6, 0.7, 0.9, 1.0, 0.0], dtype=torch.float64)
HAND_CORRECT = torch.tensor([0, 1, 0, 1, 1, 1, 0, 0], dtype=torch.bool)


def test_ece_hand_computed():
    assert expected_calibration_error(HAND_CONF, HAND_CORRECT, bins=4) == pytest.approx(0.325)


def test_reliability_diagram_hand_computed():
    out = reliability_diagram(HAND_CONF, HAND_CORRECT, bins=4)
    assert out["bin_lower"] == [0.0, 0.25, 0.5, 0.75] and out["bin_upper"] == [0.25, 0.5, 0.75, 1.0]
    assert out["count"] == [3, 1, 2, 2]
    assert out["accuracy"] == pytest.approx([1 / 3, 0.0, 1.0, 0.5])
    assert out["confidence"] == pytest.approx([0.1, 0.3, 0.65, 0.95])


def test_bin_edges_belong_to_the_upper_bin_and_one_to_the_last():
    out = reliability_diagram(
        torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0]), torch.ones(5, dtype=torch.bool), bins=4
    )
    assert out["count"] == [1, 1, 1, 2]


def test_empty_bins_are_zero_not_nan():
    out = reliability_diagram(torch.tensor([0.95, 0.97]), torch.tensor([1, 0]), bins=15)
    assert out["count"] == [0] * 14 + [2]
    assert out["accuracy"] == [0.0] * 14 + [0.5] and out["confidence"][:14] == [0.0] * 14
    assert not any(math.isnan(v) for key in ("accuracy", "confidence") for v in out[key])


@pytest.mark.parametrize("bins", [1, 15, 40])
def test_ece_matches_loop_reference_and_diagram(bins):
    gen = torch.Generator().manual_seed(bins)
    confidence = torch.rand(300, generator=gen, dtype=torch.float64)
    correct = torch.rand(300, generator=gen, dtype=torch.float64) < confidence**2
    ece = expected_calibration_error(confidence, correct, bins=bins)
    assert ece == pytest.approx(ref_ece(confidence.tolist(), correct.tolist(), bins))
    d = reliability_diagram(confidence, correct, bins=bins)
    from_diagram = sum(
        n / 300 * abs(a - c) for n, a, c in zip(d["count"], d["accuracy"], d["confidence"], strict=True)
    )
    assert ece == pytest.approx(from_diagram) and sum(d["count"]) == 300


def test_ece_perfectly_calibrated_single_item_and_worst_case():
    assert expected_calibration_error(torch.tensor([0.5, 0.5, 1.0, 0.0]), torch.tensor([1, 0, 1, 0])) == 0.0
    assert expected_calibration_error(torch.tensor([1.0]), torch.tensor([True])) == 0.0
    assert expected_calibration_error(torch.tensor([1.0, 0.0]), torch.tensor([False, True])) == 1.0


@pytest.mark.parametrize(
    ("confidence", "correct", "kwargs", "match"),
    [
        (torch.tensor([0.5, 1.2]), torch.tensor([1, 0]), {}, r"\[0, 1\]"),
        (torch.tensor([0.5, -0.1]), torch.tensor([1, 0]), {}, r"\[0, 1\]"),
        (torch.tensor([0.5, float("nan")]), torch.tensor([1, 0]), {}, "NaN"),
        (torch.tensor([0.5]), torch.tensor([1, 0]), {}, "equal length"),
        (torch.zeros(0), torch.zeros(0, dtype=torch.bool), {}, "non-empty"),
        (torch.tensor([0.5]), torch.tensor([2]), {}, "0 and 1"),
        (torch.tensor([0.5]), torch.tensor([1]), {"bins": 0}, "bins"),
    ],
)
def test_ece_rejects_bad_inputs(confidence, correct, kwargs, match):
    with pytest.raises(ValueError, match=match):
        expected_calibration_error(confidence, correct, **kwargs)


# ---- top-1 confidences -----------------------------------------------------------------------------------


def matrix_ranking(matrix, **kwargs) -> Ranking:
    matrix = torch.as_tensor(matrix, dtype=torch.float64)

    def score(q, g):
        return matrix[q["id"]][:, g["id"]]

    q, g = matrix.shape
    return rank_queries(score, {"id": torch.arange(q)}, {"id": torch.arange(g)}, **kwargs)


def test_softmax_top1_confidence_matches_loop():
    matrix = torch.randn(5, 9, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    conf = softmax_top1_confidence(matrix_ranking(matrix, k=3, chunk=2, temperature=0.1))
    for i, row in enumerate(matrix.tolist()):
        expected = math.exp(max(row) / 0.1) / sum(math.exp(s / 0.1) for s in row)
        assert conf[i].item() == pytest.approx(expected, rel=1e-12)


def test_softmax_top1_confidence_hand_computed_and_needs_temperature():
    # scores [ln 3, 0] at τ = 1: softmax of the top match = 3 / (3 + 1)
    assert softmax_top1_confidence(matrix_ranking([[math.log(3), 0.0]], temperature=1.0)).tolist() == (
        pytest.approx([0.75])
    )
    with pytest.raises(ValueError, match="temperature"):
        softmax_top1_confidence(matrix_ranking([[1.0, 0.0]]))


def test_sigmoid_top1_confidence_hand_computed():
    # probabilistic score = −d; top match d = 0.5 with a = 2, b = −1: sigmoid(−2·0.5 − 1) = sigmoid(−2)
    r = matrix_ranking([[-0.5, -3.0]])
    assert sigmoid_top1_confidence(r, 2.0, -1.0).tolist() == pytest.approx([1 / (1 + math.exp(2))])


def test_sigmoid_top1_confidence_equals_the_loss_match_probability_of_the_top_item():
    loss = create_loss("medprobclip", {"a_init": 0.7, "b_init": 2.0}, embed_dim=4)
    gen = torch.Generator().manual_seed(3)
    q = {"mu": torch.randn(6, 4, generator=gen), "logvar": 0.3 * torch.randn(6, 4, generator=gen)}
    g = {"mu": torch.randn(8, 4, generator=gen), "logvar": 0.3 * torch.randn(8, 4, generator=gen)}
    with torch.no_grad():
        r = rank_queries(loss.similarity, q, g, k=2, chunk=4)
        expected = loss.match_probability(q, g).gather(1, r.topk_index[:, :1]).squeeze(1)
    conf = sigmoid_top1_confidence(r, loss.a, loss.b)
    assert not conf.requires_grad
    assert conf.tolist() == pytest.approx(expected.tolist(), rel=1e-6)
