"""Chunked ranking, R@K / RSUM and class-based P@K against plain-loop references and hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pipeline.losses import create_loss
from pipeline.metrics import (
    Ranking,
    precision_at_k,
    rank_both_ways,
    rank_queries,
    recall_at_k,
    retrieval_metrics,
    take_rows,
)
from pipeline.metrics.ranking import stable_topk
from pipeline.metrics.retrieval import random_recall

NAN = float("nan")


class MatrixScore:
    """score_fn over a fixed [Q, G] matrix: queries and gallery carry their row / column ids."""

    def __init__(self, matrix):
        self.matrix = torch.as_tensor(matrix, dtype=torch.float64)
        self.calls: list[tuple[int, int]] = []

    def __call__(self, query, gallery):
        self.calls.append((len(query["id"]), len(gallery["id"])))
        return self.matrix[query["id"]][:, gallery["id"]]

    def rank(self, **kwargs) -> Ranking:
        q, g = self.matrix.shape
        return rank_queries(self, {"id": torch.arange(q)}, {"id": torch.arange(g)}, **kwargs)


def ref_ranking(matrix, positives, k):
    """Plain loops: rank = #items scoring >= the positive − 1; top k sorted by (−score, index)."""
    rows = matrix.tolist()
    ranks, tops = [], []
    for i, row in enumerate(rows):
        pos = row[positives[i]]
        ranks.append(sum(1 for s in row if s >= pos) - 1)
        tops.append(sorted(range(len(row)), key=lambda j, row=row: (-row[j], j))[:k])
    return ranks, tops


def ref_recall(ranks, k):
    return 100.0 * sum(1 for r in ranks if r < k) / len(ranks)


def tied_matrix(q, g, seed, levels=4):
    """Scores from a handful of values, so ties are everywhere."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, levels, (q, g), generator=gen).double() / levels


# ---- rank_queries ----------------------------------------------------------------------------------------


def test_rank_hand_computed_with_ties_counted_against_the_query():
    score = MatrixScore(
        [
            [0.9, 0.1, 0.5, 0.9],  # positive 0 tied with item 3: rank 1; top2 = [0, 3] (lower index first)
            [0.2, 0.8, 0.8, 0.1],  # positive 1 tied with item 2: rank 1; top2 = [1, 2]
            [0.3, 0.4, 0.7, 0.6],  # positive 2 is the strict best: rank 0; top2 = [2, 3]
        ]
    )
    r = score.rank(k=2)
    assert r.positive_rank.tolist() == [1, 1, 0]
    assert r.positive_score.tolist() == [0.9, 0.8, 0.7]
    assert r.topk_index.tolist() == [[0, 3], [1, 2], [2, 3]]
    assert r.topk_score.tolist() == [[0.9, 0.9], [0.8, 0.8], [0.7, 0.6]]
    assert r.gallery_size == 4 and r.n_queries == 3 and r.logsumexp is None
    assert recall_at_k(r.positive_rank, (1, 2)) == {1: pytest.approx(100 / 3), 2: 100.0}


@pytest.mark.parametrize("chunk", [1, 3, 7, 64])
@pytest.mark.parametrize(("q", "g", "k"), [(9, 9, 4), (5, 11, 3), (12, 6, 100), (7, 13, 13)])
def test_rank_matches_brute_force_with_ties(q, g, k, chunk):
    matrix = tied_matrix(q, g, seed=q * 100 + g)
    positives = torch.randint(0, g, (q,), generator=torch.Generator().manual_seed(g))
    score = MatrixScore(matrix)
    r = score.rank(positives=positives, k=k, chunk=chunk)
    ranks, tops = ref_ranking(matrix, positives.tolist(), min(k, g))
    assert r.positive_rank.tolist() == ranks
    assert r.topk_index.tolist() == tops
    assert r.topk_score.tolist() == [[matrix[i, j].item() for j in top] for i, top in enumerate(tops)]
    assert r.positive_score.tolist() == [matrix[i, p].item() for i, p in enumerate(positives.tolist())]
    assert r.topk_index.dtype == r.positive_rank.dtype == torch.long


def test_rank_never_scores_more_than_a_chunk_of_queries():
    score = MatrixScore(torch.rand(10, 12, generator=torch.Generator().manual_seed(0)))
    score.rank(chunk=4)
    assert score.calls == [(4, 12), (4, 12), (2, 12)]


def test_default_positive_is_the_same_index_and_q_may_differ_from_g():
    matrix = torch.full((3, 5), -1.0)
    matrix[torch.arange(3), torch.arange(3)] = 1.0
    r = MatrixScore(matrix).rank(k=2)
    assert r.positive_rank.tolist() == [0, 0, 0]
    assert r.topk_index[:, 0].tolist() == [0, 1, 2]


def test_constant_model_gets_zero_recall_below_gallery_size():
    r = MatrixScore(torch.zeros(6, 6)).rank(k=3)
    assert r.positive_rank.tolist() == [5] * 6
    assert r.topk_index.tolist() == [[0, 1, 2]] * 6
    assert recall_at_k(r.positive_rank, (1, 5, 6)) == {1: 0.0, 5: 0.0, 6: 100.0}


def test_stable_topk_picks_lowest_indices_among_ties_at_the_boundary():
    scores = torch.tensor([[1.0, 5.0, 3.0, 3.0, 3.0, 3.0], [0.0, 0.0, 0.0, 0.0, 2.0, 0.0]])
    values, index = stable_topk(scores, 3)
    assert index.tolist() == [[1, 2, 3], [4, 0, 1]]
    assert values.tolist() == [[5.0, 3.0, 3.0], [2.0, 0.0, 0.0]]
    wide = torch.zeros(3, 5000)
    wide[:, 4321] = 1.0
    assert stable_topk(wide, 4)[1].tolist() == [[4321, 0, 1, 2]] * 3


def test_single_query_single_item():
    r = MatrixScore([[0.3]]).rank(temperature=0.5)
    assert r.positive_rank.tolist() == [0] and r.topk_index.tolist() == [[0]]
    assert r.logsumexp.tolist() == [pytest.approx(0.6)]
    assert recall_at_k(r.positive_rank) == {1: 100.0, 5: 100.0, 10: 100.0, 100: 100.0}


def test_empty_queries_give_an_empty_ranking_and_metrics_refuse_it():
    r = rank_queries(
        MatrixScore(torch.zeros(0, 4)),
        {"id": torch.zeros(0, dtype=torch.long)},
        {"id": torch.arange(4)},
        k=2,
        temperature=1.0,
    )
    assert r.n_queries == 0 and tuple(r.topk_index.shape) == (0, 2) and tuple(r.logsumexp.shape) == (0,)
    with pytest.raises(ValueError, match="non-empty"):
        recall_at_k(r.positive_rank)


def test_logsumexp_matches_math():
    matrix = torch.randn(4, 7, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    r = MatrixScore(matrix).rank(k=2, chunk=3, temperature=0.07)
    for i in range(4):
        ref = math.log(sum(math.exp(s / 0.07) for s in matrix[i].tolist()))
        assert r.logsumexp[i].item() == pytest.approx(ref, rel=1e-12)
    assert r.temperature == 0.07


@pytest.mark.parametrize("method", ["medprobclip", "pcmepp", "clip"])
def test_rank_with_method_similarity_matches_full_matrix_brute_force(method):
    loss = create_loss(method, embed_dim=6)
    gen = torch.Generator().manual_seed(7)
    n = 11
    if loss.probabilistic:
        img = {"mu": torch.randn(n, 6, generator=gen), "logvar": 0.5 * torch.randn(n, 6, generator=gen)}
        txt = {
            "mu": img["mu"] + torch.randn(n, 6, generator=gen),
            "logvar": 0.5 * torch.randn(n, 6, generator=gen),
        }
    else:
        img = {"emb": F.normalize(torch.randn(n, 6, generator=gen), dim=-1)}
        txt = {"emb": F.normalize(img["emb"] + torch.randn(n, 6, generator=gen), dim=-1)}
    for queries, gallery in ((img, txt), (txt, img)):
        with torch.no_grad():
            full = loss.similarity(queries, gallery).double()
            r = rank_queries(loss.similarity, queries, gallery, k=5, chunk=4)
        ranks, tops = ref_ranking(full, list(range(n)), 5)
        assert r.positive_rank.tolist() == ranks
        assert r.topk_index.tolist() == tops


def test_take_rows_slices_every_tensor():
    emb = {"mu": torch.arange(12.0).reshape(6, 2), "logvar": torch.arange(6.0)}
    out = take_rows(emb, slice(2, 4))
    assert out["mu"].tolist() == [[4.0, 5.0], [6.0, 7.0]] and out["logvar"].tolist() == [2.0, 3.0]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"queries": {"mu": torch.zeros(3, 2), "logvar": torch.zeros(4, 2)}}, "leading dimension"),
        ({"queries": {}}, "non-empty mapping"),
        ({"queries": torch.zeros(3, 2)}, "non-empty mapping"),
        ({"gallery": {"id": torch.zeros(0, dtype=torch.long)}}, "gallery is empty"),
        ({"positives": torch.tensor([0, 1])}, "shape"),
        ({"positives": torch.tensor([0.0, 1.0, 2.0])}, "integer"),
        ({"positives": torch.tensor([0, 1, 4])}, r"\[0, 4\)"),
        ({"positives": torch.tensor([0, -1, 2])}, r"\[0, 4\)"),
        ({"k": 0}, "k and chunk"),
        ({"chunk": 0}, "k and chunk"),
        ({"temperature": 0.0}, "temperature"),
    ],
)
def test_rank_rejects_bad_inputs(kwargs, match):
    args = {"queries": {"id": torch.arange(3)}, "gallery": {"id": torch.arange(4)}} | kwargs
    with pytest.raises(ValueError, match=match):
        rank_queries(MatrixScore(torch.zeros(5, 5)), **args)


def test_rank_rejects_bad_score_fn_output_and_default_positives_beyond_gallery():
    q, g = {"id": torch.arange(3)}, {"id": torch.arange(4)}
    with pytest.raises(ValueError, match=r"\[3, 4\] scores"):
        rank_queries(lambda a, b: torch.zeros(3, 3), q, g)
    with pytest.raises(ValueError, match=r"\[3, 4\] scores"):
        rank_queries(lambda a, b: [[0.0] * 4] * 3, q, g)
    with pytest.raises(ValueError, match="NaN"):
        rank_queries(lambda a, b: torch.full((3, 4), NAN), q, g)
    with pytest.raises(ValueError, match="Q <= G"):
        rank_queries(MatrixScore(torch.zeros(4, 3)), g, q)


# ---- rank_both_ways -------------------------------------------------------------------------------------


def assert_same_ranking(a: Ranking, b: Ranking) -> None:
    assert a.positive_rank.tolist() == b.positive_rank.tolist()
    assert a.positive_score.tolist() == b.positive_score.tolist()
    assert a.topk_index.tolist() == b.topk_index.tolist()
    assert a.topk_score.tolist() == b.topk_score.tolist()
    assert a.gallery_size == b.gallery_size and a.temperature == b.temperature
    if a.logsumexp is None or b.logsumexp is None:
        assert a.logsumexp is b.logsumexp is None
    else:
        assert a.logsumexp.tolist() == pytest.approx(b.logsumexp.tolist(), rel=1e-12)


@pytest.mark.parametrize("chunk", [1, 4, 64])
@pytest.mark.parametrize(("n", "k", "permute"), [(9, 4, False), (13, 100, True), (6, 1, True), (1, 5, False)])
def test_rank_both_ways_equals_two_rank_queries_calls(n, k, permute, chunk):
    matrix = tied_matrix(n, n, seed=n, levels=3)
    positives = torch.randperm(n, generator=torch.Generator().manual_seed(k)) if permute else None
    images, texts = {"id": torch.arange(n)}, {"id": torch.arange(n)}
    i2t, t2i = rank_both_ways(
        MatrixScore(matrix), images, texts, positives, k=k, chunk=chunk, temperature=0.5
    )
    assert_same_ranking(
        i2t, rank_queries(MatrixScore(matrix), images, texts, positives, k=k, temperature=0.5)
    )
    text_positives = None if positives is None else positives.argsort()
    expected = rank_queries(MatrixScore(matrix.T), texts, images, text_positives, k=k, temperature=0.5)
    assert_same_ranking(t2i, expected)
    ranks, tops = ref_ranking(matrix.T, text_positives.tolist() if permute else list(range(n)), min(k, n))
    assert t2i.positive_rank.tolist() == ranks and t2i.topk_index.tolist() == tops


def test_rank_both_ways_with_elk_and_one_full_pass():
    loss = create_loss("medprobclip", embed_dim=5)
    gen = torch.Generator().manual_seed(2)
    img = {"mu": torch.randn(10, 5, generator=gen), "logvar": 0.4 * torch.randn(10, 5, generator=gen)}
    txt = {
        "mu": img["mu"] + torch.randn(10, 5, generator=gen),
        "logvar": 0.4 * torch.randn(10, 5, generator=gen),
    }
    calls = []

    def score(q, g):
        calls.append((len(q["mu"]), len(g["mu"])))
        return loss.similarity(q, g)

    with torch.no_grad():
        i2t, t2i = rank_both_ways(score, img, txt, k=3, chunk=4)
        full = loss.similarity(img, txt).double()
    assert [c for c in calls if c[1] == 10] == [(4, 10), (4, 10), (2, 10)]
    assert sum(q * g for q, g in calls if g < 10) == 4 * 4 + 4 * 4 + 2 * 2  # diagonal blocks only
    for ranking, matrix in ((i2t, full), (t2i, full.T)):
        ranks, tops = ref_ranking(matrix, list(range(10)), 3)
        assert ranking.positive_rank.tolist() == ranks and ranking.topk_index.tolist() == tops


@pytest.mark.parametrize("shift", [1e-9, -1e-9])
def test_rank_both_ways_is_robust_to_last_bit_differences_of_the_pair_score(shift):
    # The diagonal blocks (gallery subsets) see the pair score slightly shifted, as a different GEMM
    # blocking could; the positive must still sit exactly at its rank.
    matrix = torch.randn(8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def score(q, g):
        block = matrix[q["id"]][:, g["id"]]
        return block + shift if len(g["id"]) < 8 else block

    ids = {"id": torch.arange(8)}
    _, t2i = rank_both_ways(score, ids, ids, chunk=8)
    assert t2i.positive_rank.tolist() == ref_ranking(matrix.T, list(range(8)), 1)[0]


def test_rank_both_ways_rejects_unpaired_inputs():
    with pytest.raises(ValueError, match="one-to-one"):
        rank_both_ways(MatrixScore(torch.zeros(3, 4)), {"id": torch.arange(3)}, {"id": torch.arange(4)})
    with pytest.raises(ValueError, match="permutation"):
        rank_both_ways(
            MatrixScore(torch.zeros(3, 3)),
            {"id": torch.arange(3)},
            {"id": torch.arange(3)},
            positives=torch.tensor([0, 0, 2]),
        )


# ---- recall and RSUM -------------------------------------------------------------------------------------


def test_recall_hand_computed():
    # ranks 0, 3, 1, 10: R@1 = 1/4, R@5 = 3/4, R@10 = 3/4 (rank 10 is the 11th item), R@100 = 4/4
    assert recall_at_k(torch.tensor([0, 3, 1, 10])) == {1: 25.0, 5: 75.0, 10: 75.0, 100: 100.0}


def test_recall_matches_brute_force():
    ranks = torch.randint(0, 50, (37,), generator=torch.Generator().manual_seed(1))
    out = recall_at_k(ranks, (1, 2, 7, 49, 50))
    assert out == {k: pytest.approx(ref_recall(ranks.tolist(), k)) for k in (1, 2, 7, 49, 50)}


def test_random_recall_is_the_mean_over_every_positive_position():
    # A random ranking puts the positive at each of the G ranks with probability 1/G.
    for g in (1, 7, 20):
        every_rank = recall_at_k(torch.arange(g), (1, 5, 10, 100))
        assert every_rank == {k: pytest.approx(random_recall(k, g)) for k in (1, 5, 10, 100)}


def ranking_from_ranks(ranks, gallery_size) -> Ranking:
    ranks = torch.as_tensor(ranks)
    q = len(ranks)
    return Ranking(
        ranks, torch.zeros(q), torch.zeros(q, 1, dtype=torch.long), torch.zeros(q, 1), gallery_size
    )


def test_retrieval_metrics_keys_rsum_and_random_row():
    i2t = ranking_from_ranks([0, 3, 1, 9, 19], 20)  # ranks < 1: 1; < 5: 3; < 10: 4; < 100: 5
    t2i = ranking_from_ranks([2, 0, 7, 12, 4], 20)  # ranks < 1: 1; < 5: 3; < 10: 4; < 100: 5
    out = retrieval_metrics(i2t, t2i)
    assert [out[f"i2t_r{k}"] for k in (1, 5, 10, 100)] == [20.0, 60.0, 80.0, 100.0]
    assert [out[f"t2i_r{k}"] for k in (1, 5, 10, 100)] == [20.0, 60.0, 80.0, 100.0]
    assert out["rsum"] == pytest.approx(2 * (20 + 60 + 80 + 100))
    assert out["rsum6"] == pytest.approx(2 * (20 + 60 + 80))
    # G = 20: random R@1/5/10/100 = 5/25/50/100 (R@100 capped: min(100, 20)/20)
    assert [out[f"random_r{k}"] for k in (1, 5, 10, 100)] == [5.0, 25.0, 50.0, 100.0]
    assert out["random_rsum"] == pytest.approx(360.0) and out["random_rsum6"] == pytest.approx(160.0)
    assert out["n_queries"] == 5
    assert set(out) == {
        *(f"{d}_r{k}" for d in ("i2t", "t2i", "random") for k in (1, 5, 10, 100)),
        "rsum",
        "rsum6",
        "random_rsum",
        "random_rsum6",
        "n_queries",
    }


def test_retrieval_metrics_custom_ks_and_different_gallery_sizes():
    out = retrieval_metrics(
        ranking_from_ranks([0, 1], 4), ranking_from_ranks([1, 1], 8), ks=(1, 2), rsum_short_ks=(1,)
    )
    assert out["i2t_r1"] == 50.0 and out["t2i_r1"] == 0.0 and out["t2i_r2"] == 100.0
    assert out["rsum"] == pytest.approx(50 + 100 + 0 + 100) and out["rsum6"] == pytest.approx(50.0)
    assert out["random_r1"] == pytest.approx((25 + 12.5) / 2)
    assert out["random_rsum"] == pytest.approx(25 + 50 + 12.5 + 25)


@pytest.mark.parametrize("ks", [(), (0,), (1.5,), (True,)])
def test_recall_rejects_bad_ks(ks):
    with pytest.raises(ValueError, match="ks"):
        recall_at_k(torch.tensor([0, 1]), ks)


def test_recall_rejects_bad_shapes():
    with pytest.raises(ValueError, match="1-D"):
        recall_at_k(torch.zeros(2, 2, dtype=torch.long))


# ---- class-based P@K -------------------------------------------------------------------------------------

QUERY_LABELS = torch.tensor([[1, 0, 0], [0, 1, 1], [0, 0, 0], [NAN, -1, 1]])
GALLERY_LABELS = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 0, NAN]])


def ref_precision(topk, qlab, glab, k):
    per_query = []
    for i, top in enumerate(topk.tolist()):
        qpos = {c for c, v in enumerate(qlab[i].tolist()) if v == 1}
        if not qpos:
            continue
        rel = [any(glab[j][c].item() == 1 for c in qpos) for j in top[:k]]
        per_query.append(sum(rel) / k)
    return 100.0 * sum(per_query) / len(per_query)


def ref_random_precision(qlab, glab):
    fractions = []
    for q in qlab.tolist():
        qpos = {c for c, v in enumerate(q) if v == 1}
        if qpos:
            fractions.append(sum(any(g[c] == 1 for c in qpos) for g in glab.tolist()) / len(glab))
    return 100.0 * sum(fractions) / len(fractions)


def test_precision_hand_computed():
    topk = torch.tensor([[0, 1, 3], [4, 1, 2], [0, 1, 2], [2, 0, 4]])
    # relevant: q0 -> [1, 0, 1]; q1 -> [0, 1, 1]; q2 has no positive label (excluded); q3 (label 2) -> [1, 0, 0]
    # P@1 = (1 + 0 + 1)/3; P@3 = (2/3 + 2/3 + 1/3)/3 = 5/9
    # random: relevant fraction of the 5 gallery items: q0 {g0, g3} 2/5, q1 {g1, g2, g3} 3/5, q3 {g2} 1/5 -> 0.4
    out = precision_at_k(topk, QUERY_LABELS, GALLERY_LABELS, ks=(1, 3))
    assert out["p_at_1"] == pytest.approx(200 / 3)
    assert out["p_at_3"] == pytest.approx(500 / 9)
    assert out["random_p_at_1"] == pytest.approx(40.0) and out["random_p_at_3"] == pytest.approx(40.0)
    assert out["p_at_k_excluded"] == 1 and out["p_at_k_queries"] == 3


def test_precision_matches_brute_force():
    gen = torch.Generator().manual_seed(5)
    qlab = (torch.rand(30, 6, generator=gen) < 0.25).double()
    glab = (torch.rand(40, 6, generator=gen) < 0.25).double()
    glab[(glab == 0) & (torch.rand(40, 6, generator=gen) < 0.1)] = -1.0
    topk = torch.stack([torch.randperm(40, generator=gen)[:10] for _ in range(30)])
    out = precision_at_k(topk, qlab, glab, ks=(1, 5, 10))
    assert (qlab.sum(1) == 0).any()
    for k in (1, 5, 10):
        assert out[f"p_at_{k}"] == pytest.approx(ref_precision(topk, qlab, glab, k))
        assert out[f"random_p_at_{k}"] == pytest.approx(ref_random_precision(qlab, glab))
    assert out["p_at_k_excluded"] == int((qlab.sum(1) == 0).sum())


def test_precision_with_a_ranking_single_item_and_all_excluded():
    r = MatrixScore([[0.9, 0.1], [0.2, 0.8]]).rank(k=1)
    out = precision_at_k(
        r.topk_index, torch.tensor([[1, 0], [1, 0]]), torch.tensor([[1, 0], [0, 1]]), ks=(1,)
    )
    assert out["p_at_1"] == 50.0 and out["random_p_at_1"] == 50.0
    none = precision_at_k(torch.tensor([[0]]), torch.tensor([[0, 0]]), torch.tensor([[1, 1]]), ks=(1,))
    assert math.isnan(none["p_at_1"]) and math.isnan(none["random_p_at_1"]) and none["p_at_k_excluded"] == 1


@pytest.mark.parametrize(
    ("topk", "qlab", "glab", "match"),
    [
        (torch.zeros(4, 3, dtype=torch.long), QUERY_LABELS, GALLERY_LABELS[:, :2], "labels"),
        (torch.zeros(4, 3, dtype=torch.long), QUERY_LABELS[0], GALLERY_LABELS, "labels"),
        (torch.zeros(3, 3, dtype=torch.long), QUERY_LABELS, GALLERY_LABELS, "topk_index"),
        (torch.zeros(4, 2, dtype=torch.long), QUERY_LABELS, GALLERY_LABELS, "P@3"),
        (torch.full((4, 3), 5), QUERY_LABELS, GALLERY_LABELS, "index the gallery"),
        (torch.zeros(4, 3, dtype=torch.long), QUERY_LABELS, GALLERY_LABELS[:0], "empty"),
    ],
)
def test_precision_rejects_bad_shapes(topk, qlab, glab, match):
    with pytest.raises(ValueError, match=match):
        precision_at_k(topk, qlab, glab, ks=(1, 3))
