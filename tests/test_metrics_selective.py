"""Risk–coverage, AURC / E-AURC and confidence scores against loop references and hand-computed cases."""

from __future__ import annotations

import itertools

import pytest
import torch

from pipeline.metrics import (
    Ranking,
    aurc,
    confidence_score,
    excess_aurc,
    oracle_aurc,
    risk_coverage,
    selective_metrics,
)
from pipeline.metrics.selective import downsample

T, F_ = True, False


def ref_curve_no_ties(correct, confidence):
    """Plain loop: answer queries by decreasing confidence; risk at i = errors among the first i / i."""
    order = sorted(range(len(correct)), key=lambda j: -confidence[j])
    risk, errors = [], 0
    for i, j in enumerate(order, start=1):
        errors += not correct[j]
        risk.append(errors / i)
    return risk


def ref_curve_random_tie_breaks(correct, confidence):
    """Average risk curve over every order consistent with the confidence (ties broken every possible way)."""
    curves = []
    for order in itertools.permutations(range(len(correct))):
        if all(confidence[a] >= confidence[b] for a, b in itertools.pairwise(order)):
            curves.append(ref_curve_no_ties([correct[j] for j in order], list(range(len(order), 0, -1))))
    return [sum(c[i] for c in curves) / len(curves) for i in range(len(correct))]


def ranking_from_ranks(ranks, scores=None) -> Ranking:
    ranks = torch.as_tensor(ranks)
    scores = torch.zeros(len(ranks), 2) if scores is None else torch.as_tensor(scores)
    index = torch.zeros(scores.shape, dtype=torch.long)
    return Ranking(ranks, torch.zeros(len(ranks)), index, scores, gallery_size=1000)


# ---- risk–coverage and AURC ------------------------------------------------------------------------------


def test_reversed_ordering_hand_computed():
    correct = torch.tensor([T, T, F_, F_])
    # wrong queries most confident: risk at i = 1..4 is 1, 1, 2/3, 2/4 -> AURC = (1 + 1 + 2/3 + 1/2) / 4 = 19/24
    # oracle: 0, 0, 1/3, 2/4 -> 5/24; excess = 14/24
    confidence = torch.tensor([0.1, 0.2, 0.9, 0.8])
    coverage, risk = risk_coverage(correct, confidence)
    assert coverage.tolist() == [0.25, 0.5, 0.75, 1.0]
    assert risk.tolist() == pytest.approx([1, 1, 2 / 3, 1 / 2])
    assert aurc(correct, confidence) == pytest.approx(19 / 24)
    assert oracle_aurc(correct) == pytest.approx(5 / 24)
    assert excess_aurc(correct, confidence) == pytest.approx(14 / 24)


def test_perfect_ordering_has_zero_excess():
    gen = torch.Generator().manual_seed(0)
    correct = torch.rand(200, generator=gen) < 0.4
    confidence = correct.double() + 0.5 * torch.rand(200, generator=gen, dtype=torch.float64)
    assert excess_aurc(correct, confidence) == pytest.approx(0.0, abs=1e-15)
    assert aurc(correct, confidence) > 0


@pytest.mark.parametrize("n", [1, 5])
def test_all_correct_is_zero_and_all_wrong_is_one(n):
    confidence = torch.arange(n, dtype=torch.float64)
    assert aurc(torch.ones(n, dtype=torch.bool), confidence) == 0.0
    assert aurc(torch.zeros(n, dtype=torch.bool), confidence) == 1.0
    assert excess_aurc(torch.zeros(n, dtype=torch.bool), confidence) == 0.0


def test_oracle_closed_form():
    # c correct of n: risk 0 up to c, then (i − c) / i
    for n, c in ((10, 3), (7, 0), (6, 6), (1, 1)):
        correct = torch.tensor([True] * c + [False] * (n - c))
        expected = sum((i - c) / i for i in range(c + 1, n + 1)) / n
        assert oracle_aurc(correct[torch.randperm(n, generator=torch.Generator().manual_seed(n))]) == (
            pytest.approx(expected)
        )


def test_matches_loop_reference_without_ties():
    gen = torch.Generator().manual_seed(1)
    correct = torch.rand(60, generator=gen) < 0.5
    confidence = torch.randn(60, generator=gen, dtype=torch.float64)
    coverage, risk = risk_coverage(correct, confidence)
    assert risk.tolist() == pytest.approx(ref_curve_no_ties(correct.tolist(), confidence.tolist()))
    assert coverage.tolist() == pytest.approx([i / 60 for i in range(1, 61)])
    assert aurc(correct, confidence) == pytest.approx(sum(risk.tolist()) / 60)


def test_ties_hand_computed():
    # two tied queries (one wrong) enter together at error rate 1/2: risk 1/2, 1/2, then 1/3
    correct, confidence = torch.tensor([T, F_, T]), torch.tensor([1.0, 1.0, 0.0])
    assert risk_coverage(correct, confidence)[1].tolist() == pytest.approx([0.5, 0.5, 1 / 3])
    assert aurc(correct, confidence) == pytest.approx((0.5 + 0.5 + 1 / 3) / 3)


@pytest.mark.parametrize("seed", range(6))
def test_ties_equal_the_mean_over_every_tie_break(seed):
    gen = torch.Generator().manual_seed(seed)
    correct = (torch.rand(7, generator=gen) < 0.5).tolist()
    confidence = torch.randint(0, 3, (7,), generator=gen).double().tolist()
    _, risk = risk_coverage(torch.tensor(correct), torch.tensor(confidence))
    assert risk.tolist() == pytest.approx(ref_curve_random_tie_breaks(correct, confidence))


def test_permuting_tied_inputs_does_not_change_the_curve():
    gen = torch.Generator().manual_seed(2)
    correct = torch.rand(300, generator=gen) < 0.3
    confidence = torch.randint(0, 5, (300,), generator=gen).double()
    _, risk = risk_coverage(correct, confidence)
    for seed in range(3):
        perm = torch.randperm(300, generator=torch.Generator().manual_seed(seed))
        assert torch.equal(risk_coverage(correct[perm], confidence[perm])[1], risk)


def test_accepts_zero_one_correctness_and_float32_confidence():
    correct, confidence = torch.tensor([1, 1, 0, 0]), torch.tensor([0.1, 0.2, 0.9, 0.8], dtype=torch.float32)
    assert aurc(correct, confidence) == pytest.approx(19 / 24)


@pytest.mark.parametrize(
    ("correct", "confidence", "match"),
    [
        (torch.tensor([T, F_]), torch.tensor([0.5]), "equal length"),
        (torch.tensor([[T, F_]]), torch.tensor([[0.5, 0.2]]), "1-D"),
        (torch.zeros(0, dtype=torch.bool), torch.zeros(0), "non-empty"),
        (torch.tensor([T, F_]), torch.tensor([0.5, float("nan")]), "NaN"),
        (torch.tensor([0.3, 1.0]), torch.tensor([0.5, 0.2]), "0 and 1"),
    ],
)
def test_rejects_bad_inputs(correct, confidence, match):
    with pytest.raises(ValueError, match=match):
        aurc(correct, confidence)


# ---- confidence scores -----------------------------------------------------------------------------------


def test_confidence_scores_hand_computed():
    ranking = ranking_from_ranks([0, 1], scores=[[0.9, 0.4, 0.1], [0.5, 0.5, 0.2]])
    assert confidence_score("top1", ranking).tolist() == pytest.approx([0.9, 0.5])
    assert confidence_score("margin", ranking).tolist() == pytest.approx([0.5, 0.0])
    logvar = torch.log(torch.tensor([[1.0, 2.0], [0.5, 0.25]]))
    # −Σ exp(logvar): −(1 + 2) and −(0.5 + 0.25): the second query is more confident
    assert confidence_score("variance", ranking, {"mu": torch.zeros(2, 2), "logvar": logvar}).tolist() == (
        pytest.approx([-3.0, -0.75])
    )


def test_confidence_score_errors():
    ranking = ranking_from_ranks([0, 1], scores=[[0.9], [0.5]])
    with pytest.raises(ValueError, match="unknown confidence kind 'entropy'"):
        confidence_score("entropy", ranking)
    with pytest.raises(ValueError, match="logvar"):
        confidence_score("variance", ranking, {"emb": torch.zeros(2, 2)})
    with pytest.raises(ValueError, match="logvar"):
        confidence_score("variance", ranking)
    with pytest.raises(ValueError, match=r"\[Q=2, D\]"):
        confidence_score("variance", ranking, {"logvar": torch.zeros(3, 2)})
    with pytest.raises(ValueError, match="k >= 2"):
        confidence_score("margin", ranking)


# ---- selective_metrics -----------------------------------------------------------------------------------


def test_selective_metrics_per_k():
    ranks = torch.tensor([0, 4, 12, 150])
    confidence = torch.tensor([0.4, 0.3, 0.2, 0.1])
    out = selective_metrics(ranking_from_ranks(ranks), confidence, ks=(1, 5, 100))
    # R@1: correct T F F F in confidence order -> risks 0, 1/2, 2/3, 3/4; oracle identical
    assert out["aurc_r1"] == pytest.approx((0 + 1 / 2 + 2 / 3 + 3 / 4) / 4)
    assert out["eaurc_r1"] == pytest.approx(0.0)
    # R@100: correct T T T F -> risks 0, 0, 0, 1/4
    assert out["aurc_r100"] == pytest.approx(1 / 16)
    for k in (1, 5, 100):
        assert out[f"aurc_r{k}"] == pytest.approx(aurc(ranks < k, confidence))
        assert out[f"eaurc_r{k}"] == pytest.approx(excess_aurc(ranks < k, confidence))
        assert out["curves"][f"r{k}"]["coverage"] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert set(out) == {"curves", "aurc_r1", "eaurc_r1", "aurc_r5", "eaurc_r5", "aurc_r100", "eaurc_r100"}


def test_curves_are_downsampled_deterministically():
    gen = torch.Generator().manual_seed(4)
    ranks = torch.randint(0, 20, (1001,), generator=gen)
    confidence = torch.randn(1001, generator=gen)
    out = selective_metrics(ranking_from_ranks(ranks), confidence, ks=(5,))
    curve = out["curves"]["r5"]
    assert len(curve["coverage"]) == len(curve["risk"]) == 200
    assert curve["coverage"][0] == pytest.approx(1 / 1001) and curve["coverage"][-1] == 1.0
    _, risk = risk_coverage(ranks < 5, confidence)
    assert curve["risk"][-1] == pytest.approx(risk[-1].item())
    assert selective_metrics(ranking_from_ranks(ranks), confidence, ks=(5,)) == out


def test_downsample_indices():
    assert downsample(3).tolist() == [0, 1, 2]
    idx = downsample(10_000, 200)
    assert len(idx) == 200 and idx[0] == 0 and idx[-1] == 9_999 and bool((idx.diff() > 0).all())
