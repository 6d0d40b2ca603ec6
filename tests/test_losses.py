"""Losses against element-wise reference formulas (float64), invariances, edge cases and DDP slicing."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pipeline.config import ConfigError
from pipeline.losses import LOSSES, LossInputError, create_loss, distances
from pipeline.losses import base as loss_base
from pipeline.losses import mcsl as mcsl_module
from pipeline.losses.distances import csd_distance, elk_distance, elk_distance_naive, identity_targets
from pipeline.losses.mcsl import binary_labels, concept_targets, jaccard
from pipeline.losses.pcmepp import mix_images, pseudo_positive_targets

NAN = float("nan")


def gaussian_outputs(batch: int, dim: int, seed: int, views: int = 2) -> dict:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key in [f"img_{v}" for v in range(views)] + [f"txt_{s}" for s in range(views)]:
        mu = torch.randn(batch, dim, generator=g, dtype=torch.float64).requires_grad_()
        logvar = (0.5 * torch.randn(batch, dim, generator=g, dtype=torch.float64)).requires_grad_()
        out[key] = {"mu": mu, "logvar": logvar}
    return out


def det_outputs(batch: int, dim: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    keys = ["img_0", "img_1", "txt_0", "txt_1"]
    return {
        k: {"emb": F.normalize(torch.randn(batch, dim, generator=g, dtype=torch.float64), dim=-1)}
        for k in keys
    }


LABELS = torch.tensor(
    [
        [1, 0, -1, NAN, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        [-1, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1],
    ],
    dtype=torch.float64,
)


# ---- element-wise reference formulas ---------------------------------------------------------------------


def ref_elk(m1, v1, m2, v2):
    return 0.5 * sum(
        (m1[k] - m2[k]) ** 2 / (v1[k] + v2[k]) + torch.log(v1[k] + v2[k]) for k in range(len(m1))
    )


def ref_csd(m1, v1, m2, v2):
    return sum((m1[k] - m2[k]) ** 2 + v1[k] + v2[k] for k in range(len(m1)))


def ref_bce(logit, y):
    return -(y * torch.log(torch.sigmoid(logit)) + (1 - y) * torch.log(1 - torch.sigmoid(logit)))


def ref_matrix(fn, x, y):
    return [[fn(*x(i), *y(j)) for j in range(len(y.rows))] for i in range(len(x.rows))]


class Gauss:
    def __init__(self, out, normalise=False):
        mu = F.normalize(out["mu"], dim=-1) if normalise else out["mu"]
        self.rows = list(range(mu.shape[0]))
        self.mu, self.var = mu, out["logvar"].exp()

    def __call__(self, i):
        return self.mu[i], self.var[i]


def ref_pair_sigmoid(dist, a, b):
    n = len(dist)
    both = [ref_bce(-a * dist[i][j] + b, float(i == j)) for i in range(n) for j in range(n)]
    both += [ref_bce(-a * dist[j][i] + b, float(i == j)) for i in range(n) for j in range(n)]
    return sum(both) / len(both)


def ref_ce_rows(logits, targets):
    n = len(logits)
    total = 0
    for i in range(n):
        norm = torch.log(sum(torch.exp(logits[i][j]) for j in range(n)))
        total = total - sum(targets[i][j] * (logits[i][j] - norm) for j in range(n))
    return total / n


def transpose(m):
    return [list(r) for r in zip(*m, strict=True)]


def ref_infonce(logits):
    eye = [[float(i == j) for j in range(len(logits))] for i in range(len(logits))]
    return 0.5 * (ref_ce_rows(logits, eye) + ref_ce_rows(transpose(logits), eye))


def ref_kl(out, reduce_mean):
    mu, lv = out["mu"], out["logvar"]
    per = [
        [0.5 * (torch.exp(lv[i, k]) + mu[i, k] ** 2 - 1 - lv[i, k]) for k in range(mu.shape[1])]
        for i in range(mu.shape[0])
    ]
    if reduce_mean:
        return sum(sum(r) for r in per) / (mu.shape[0] * mu.shape[1])
    return sum(sum(r) for r in per) / mu.shape[0]


def grads(loss, params):
    return torch.autograd.grad(loss, params, retain_graph=True)


# ---- distances -------------------------------------------------------------------------------------------


def test_elk_matches_reference_values_and_gradients(monkeypatch):
    out = gaussian_outputs(3, 4, seed=0)
    x, y = out["img_0"], out["txt_0"]
    ref = torch.stack([torch.stack(r) for r in ref_matrix(ref_elk, Gauss(x), Gauss(y))])
    monkeypatch.setattr(distances, "ELK_CHUNK_ELEMENTS", 8)  # force one row per chunk
    got = elk_distance(x["mu"], x["logvar"], y["mu"], y["logvar"])
    assert torch.allclose(got, ref, atol=1e-12)
    weights = torch.randn(3, 3, dtype=torch.float64)
    g_got = grads((got * weights).sum(), [x["mu"], x["logvar"], y["mu"], y["logvar"]])
    g_ref = grads((ref * weights).sum(), [x["mu"], x["logvar"], y["mu"], y["logvar"]])
    for a, b in zip(g_got, g_ref, strict=True):
        assert torch.allclose(a, b, atol=1e-10)
    assert torch.autograd.gradcheck(elk_distance, (x["mu"], x["logvar"], y["mu"], y["logvar"]))


def test_elk_hand_computed_one_dimension():
    # μ = 0 vs 1, σ² = 1 + 1: ½ (1/2 + ln 2)
    zero, one = torch.zeros(1, 1, dtype=torch.float64), torch.ones(1, 1, dtype=torch.float64)
    d = elk_distance(zero, zero, one, zero)
    assert d.item() == pytest.approx(0.5 * (0.5 + math.log(2.0)), abs=1e-12)


def test_csd_matches_reference():
    out = gaussian_outputs(3, 5, seed=1)
    x, y = out["img_0"], out["txt_0"]
    ref = torch.stack([torch.stack(r) for r in ref_matrix(ref_csd, Gauss(x), Gauss(y))])
    assert torch.allclose(csd_distance(x["mu"], x["logvar"], y["mu"], y["logvar"]), ref, atol=1e-10)


def test_distances_are_fp32_under_autocast():
    x = torch.randn(4, 8, dtype=torch.float32)
    lv = torch.zeros(4, 8, dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        d = elk_distance(x, lv, x.flip(0), lv)
        c = csd_distance(x, lv, x.flip(0), lv)
    assert d.dtype == c.dtype == torch.float32
    assert torch.allclose(d, elk_distance_naive(x, lv, x.flip(0), lv), atol=1e-5)


# ---- each method against its formula ---------------------------------------------------------------------


def test_clip_formula_and_temperature_gradient():
    out = det_outputs(3, 4, seed=2)
    loss = create_loss("clip").double()
    got = loss(out, {})["loss"]
    scale = loss.logit_scale()
    i, t = out["img_0"]["emb"], out["txt_0"]["emb"]
    ref = ref_infonce([[scale * (i[a] @ t[b]) for b in range(3)] for a in range(3)])
    assert got.item() == pytest.approx(ref.item(), abs=1e-10)
    (g_got,), (g_ref,) = grads(got, [loss.logit_scale.log_scale]), grads(ref, [loss.logit_scale.log_scale])
    assert g_got.item() == pytest.approx(g_ref.item(), abs=1e-10)
    assert loss.logs()["temperature"] == pytest.approx(0.07)


def test_cxrclip_formula():
    out = det_outputs(3, 4, seed=3)
    loss = create_loss("cxrclip").double()
    terms = loss(out, {})
    s = loss.logit_scale()

    def nce(x, y):
        return ref_infonce([[s * (out[x]["emb"][a] @ out[y]["emb"][b]) for b in range(3)] for a in range(3)])

    inter = sum(nce(i, t) for i in ("img_0", "img_1") for t in ("txt_0", "txt_1")) / 4
    ref = inter + 1.0 * nce("img_0", "img_1") + 0.5 * nce("txt_0", "txt_1")
    assert terms["loss"].item() == pytest.approx(ref.item(), abs=1e-10)
    assert grads(terms["loss"], [loss.logit_scale.log_scale])[0].item() == pytest.approx(
        grads(ref, [loss.logit_scale.log_scale])[0].item(), abs=1e-10
    )


@pytest.mark.parametrize("pair_loss", ["sigmoid", "softmax"])
def test_medprobclip_formula_and_ab_gradients(pair_loss):
    out = gaussian_outputs(3, 4, seed=4)
    loss = create_loss("medprobclip", {"pair_loss": pair_loss, "a_init": 0.7, "b_init": 0.3}).double()
    terms = loss(out, {})
    a, b = loss.a, loss.b

    def pair(x, y):
        dist = ref_matrix(ref_elk, Gauss(out[x]), Gauss(out[y]))
        if pair_loss == "sigmoid":
            return ref_pair_sigmoid(dist, a, b)
        return ref_infonce([[-a * d + b for d in row] for row in dist])

    inter = sum(pair(i, t) for i in ("img_0", "img_1") for t in ("txt_0", "txt_1")) / 4
    kl_i = (ref_kl(out["img_0"], False) + ref_kl(out["img_1"], False)) / 2
    kl_t = (ref_kl(out["txt_0"], False) + ref_kl(out["txt_1"], False)) / 2
    ref = inter + 1.0 * pair("img_0", "img_1") + 0.1 * pair("txt_0", "txt_1") + 1e-4 * (kl_i + kl_t)
    assert terms["loss"].item() == pytest.approx(ref.item(), abs=1e-9)
    assert terms["kl_image"].item() == pytest.approx(kl_i.item(), abs=1e-9)
    for g_got, g_ref in zip(grads(terms["loss"], [a, b]), grads(ref, [a, b]), strict=True):
        assert g_got.item() == pytest.approx(g_ref.item(), abs=1e-9)
    if pair_loss == "softmax":
        assert grads(terms["loss"], [b])[0].abs().item() < 1e-12  # b is inert under softmax


def test_medprobclip_default_offset_centres_initial_logits():
    loss = create_loss("medprobclip", embed_dim=512)
    assert loss.b.item() == pytest.approx(256 * math.log(2.0))
    with pytest.raises(ConfigError, match="embed_dim"):
        create_loss("medprobclip")


def test_pcmepp_formula_with_pseudo_positives():
    out = gaussian_outputs(4, 3, seed=5, views=1)
    out["txt_0"]["mu"] = (out["img_0"]["mu"][[0, 0, 2, 3]] + 0.1).detach().requires_grad_()  # force ties/pp
    loss = create_loss("pcmepp", {"a_init": 1.5, "b_init": 2.0}).double()
    terms = loss(out, {})
    a, b = loss.a, loss.b
    dist = ref_matrix(ref_csd, Gauss(out["img_0"], True), Gauss(out["txt_0"], True))
    logits = [[-a * d + b for d in row] for row in dist]

    def bce_all(lg, tg):
        return sum(ref_bce(lg[i][j], tg[i][j]) for i in range(4) for j in range(4)) / 16

    eye = [[float(i == j) for j in range(4)] for i in range(4)]

    def promote(lg):
        return [
            [1.0 if (i == j or lg[i][j].item() >= lg[i][i].item()) else 0.0 for j in range(4)]
            for i in range(4)
        ]

    match = bce_all(logits, eye) + bce_all(transpose(logits), eye)
    pseudo = bce_all(logits, promote(logits)) + bce_all(transpose(logits), promote(transpose(logits)))
    normed = [
        {"mu": F.normalize(out[k]["mu"], dim=-1), "logvar": out[k]["logvar"]} for k in ("img_0", "txt_0")
    ]
    vib = ref_kl(normed[0], True) + ref_kl(normed[1], True)
    ref = match + 0.1 * pseudo + 1e-4 * vib
    assert terms["n_pseudo_positives"].item() > 0
    assert terms["loss"].item() == pytest.approx(ref.item(), abs=1e-9)
    for g_got, g_ref in zip(grads(terms["loss"], [a, b]), grads(ref, [a, b]), strict=True):
        assert g_got.item() == pytest.approx(g_ref.item(), abs=1e-9)


def test_mcsl_formula():
    out = det_outputs(4, 5, seed=6)
    loss = create_loss("mcsl").double()
    terms = loss(out, {"labels": LABELS})
    s = loss.logit_scale()
    pos = [[1.0 if v == 1 else 0.0 for v in row.tolist()] for row in LABELS]

    def jac(p, q):
        inter = sum(x * y for x, y in zip(p, q, strict=True))
        union = sum(p) + sum(q) - inter
        return inter / union if union else 0.0

    targets = []
    for i in range(4):
        ex = [math.exp(jac(pos[i], pos[j]) / 0.07) if j != i else 0.0 for j in range(4)]
        targets.append([((i == j) + 0.7 * ex[j] / sum(ex)) / 1.7 for j in range(4)])

    def sem(x, y):
        lg = [[s * (out[x]["emb"][a] @ out[y]["emb"][b]) for b in range(4)] for a in range(4)]
        return 0.5 * (ref_ce_rows(lg, targets) + ref_ce_rows(transpose(lg), targets))

    ref = sum(sem(i, t) for i in ("img_0", "img_1") for t in ("txt_0", "txt_1")) / 4
    assert terms["loss"].item() == pytest.approx(ref.item(), abs=1e-10)
    assert grads(terms["loss"], [loss.logit_scale.log_scale])[0].item() == pytest.approx(
        grads(ref, [loss.logit_scale.log_scale])[0].item(), abs=1e-10
    )


# ---- invariances and edge cases --------------------------------------------------------------------------


def _outputs_for(name: str, seed: int) -> dict:
    return gaussian_outputs(4, 6, seed) if LOSSES[name].probabilistic else det_outputs(4, 6, seed)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_batch_permutation_leaves_loss_unchanged(name):
    out = _outputs_for(name, seed=7)
    loss = create_loss(name, embed_dim=6).double()
    perm = torch.tensor([2, 0, 3, 1])
    shuffled = {k: {f: t[perm] for f, t in v.items()} for k, v in out.items()}
    a = loss(out, {"labels": LABELS})["loss"]
    b = loss(shuffled, {"labels": LABELS[perm]})["loss"]
    assert a.item() == pytest.approx(b.item(), abs=1e-12)


def test_pseudo_positive_edge_cases():
    logits = torch.tensor([[3.0, 1.0, 3.0], [0.0, 2.0, 1.0], [5.0, 5.0, 5.0]])
    targets = torch.eye(3)
    targets[2] = 0.0  # a row with no positive
    promoted, count = pseudo_positive_targets(logits, targets)
    assert promoted.tolist() == [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]
    assert count.item() == 1
    none, zero = pseudo_positive_targets(torch.eye(3) * 10, torch.eye(3))
    assert zero.item() == 0 and torch.equal(none, torch.eye(3))
    soft = torch.tensor(
        [[0.6, 0.4], [0.0, 1.0]], dtype=torch.float64
    )  # mixed-sample row: promotes to the row's largest target
    promoted, _ = pseudo_positive_targets(torch.tensor([[0.0, 1.0], [0.0, 0.0]]), soft)
    assert promoted.tolist() == [[0.6, 0.6], [1.0, 1.0]]


def test_jaccard_and_concept_target_edge_cases():
    assert binary_labels(torch.tensor([1.0, 0.0, -1.0, NAN])).tolist() == [1.0, 0.0, 0.0, 0.0]
    zeros = torch.zeros(3, 4)
    assert torch.equal(jaccard(zeros, zeros), torch.zeros(3, 3))  # 0/0 → 0
    for labels in (zeros, torch.ones(3, 4)):  # all-equal labels: uniform over the others
        t = concept_targets(labels, labels, 0, 0.7, 0.07)
        expected = (torch.eye(3) + 0.7 * (1 - torch.eye(3)) / 2) / 1.7
        assert torch.allclose(t, expected)
    single = concept_targets(torch.ones(1, 4), torch.ones(1, 4), 0, 0.7, 0.07)
    assert single.tolist() == [[1.0]]
    rows = binary_labels(LABELS)
    t = concept_targets(rows[2:], rows, 2, 0.7, 0.07)  # local rows 2-3 of a global batch of 4
    assert torch.allclose(t.sum(-1), torch.ones(2, dtype=t.dtype)) and t[0, 2] > t[0].sum() - t[0, 2]


def test_mix_images_targets_and_determinism():
    images = torch.rand(6, 2, 1, 8, 8)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    m1, t1 = mix_images(images, 0.5, 1.0, 0.5, g1)
    m2, t2 = mix_images(images, 0.5, 1.0, 0.5, g2)
    assert torch.equal(m1, m2) and torch.equal(t1, t2)
    assert torch.allclose(t1.sum(-1), torch.ones(6))
    changed = (m1 != images).flatten(1).any(-1)
    assert changed.sum() <= 3 and (t1.diagonal() < 1).sum() <= 3
    loss = create_loss("pcmepp", {"mix_fraction": 0.5}).double()
    batch = loss.prepare_batch({"images": images}, torch.Generator().manual_seed(3))
    assert torch.equal(batch["match_targets"], t1.to(batch["match_targets"].dtype))
    assert torch.isfinite(loss(gaussian_outputs(6, 3, 0, views=1), batch)["loss"])


# ---- registry, parameter groups, retrieval API -----------------------------------------------------------


def test_registry_and_config_errors():
    assert set(LOSSES) == {"clip", "cxrclip", "pcmepp", "medprobclip", "mcsl"}
    with pytest.raises(ConfigError, match="did you mean 'medprobclip'"):
        create_loss("medprobclp")
    with pytest.raises(ConfigError, match="did you mean 'lambda_text'"):
        create_loss("medprobclip", {"lambda_txt": 0.1}, embed_dim=8)
    with pytest.raises(ConfigError, match="pair_loss"):
        create_loss("medprobclip", {"pair_loss": "hinge"}, embed_dim=8)
    with pytest.raises(ConfigError, match="supports heads"):
        create_loss("pcmepp", {"head": "deterministic"})
    with pytest.raises(LossInputError, match="gaussian head"):
        create_loss("pcmepp")(det_outputs(2, 3, 0), {})
    with pytest.raises(LossInputError, match="labels"):
        create_loss("mcsl")(det_outputs(2, 3, 0), {})


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_scalars_are_never_decayed(name):
    loss = create_loss(name, embed_dim=8)
    groups = loss.param_groups(weight_decay=0.1)
    assert [g["weight_decay"] for g in groups] == [0.0]
    owned = {id(p) for p in loss.parameters()}
    assert {id(p) for p in groups[0]["params"]} == owned == {id(p) for p in loss.no_decay_parameters()}


def test_similarity_and_match_probability():
    out = gaussian_outputs(3, 4, seed=8)
    loss = create_loss("medprobclip", embed_dim=4).double()
    q, g = out["img_0"], out["txt_0"]
    sim = loss.similarity(q, g)
    assert torch.allclose(sim, -elk_distance(q["mu"], q["logvar"], g["mu"], g["logvar"]))
    assert torch.allclose(loss.match_probability(q, g), torch.sigmoid(loss.a * sim + loss.b))
    det = det_outputs(3, 4, seed=8)
    cos = create_loss("clip").similarity(det["img_0"], det["txt_0"])
    assert torch.allclose(cos, det["img_0"]["emb"] @ det["txt_0"]["emb"].T)


# ---- DDP: local rows × gathered columns ------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_rank_sliced_losses_average_to_full_batch(name, monkeypatch):
    """Two simulated ranks (rows 0-1, 2-3) with gathered columns reproduce the single-process loss."""
    out = _outputs_for(name, seed=9)
    loss = create_loss(name, embed_dim=6).double()
    full = loss(out, {"labels": LABELS})["loss"]
    rank_losses = []
    for rank in range(2):
        rows = slice(2 * rank, 2 * rank + 2)

        def gather(t, rows=rows):
            """all_gather stand-in: find the global tensor whose rank slice is ``t``."""
            wholes = [binary_labels(LABELS)] + [w for v in out.values() for w in v.values()]
            wholes += [F.normalize(w, dim=-1) for w in wholes[1:]]  # PCME++ / embedding() normalise first
            return next(w for w in wholes if w[rows].shape == t.shape and torch.equal(w[rows], t))

        for module in (loss_base, mcsl_module):
            monkeypatch.setattr(module, "is_distributed", lambda: True)
            monkeypatch.setattr(module, "rank_offset", lambda n, rank=rank: 2 * rank)
        monkeypatch.setattr(loss_base, "gather_with_grad", gather)
        monkeypatch.setattr(mcsl_module, "gather_no_grad", gather)
        local = {k: {f: t[rows] for f, t in v.items()} for k, v in out.items()}
        rank_losses.append(loss(local, {"labels": LABELS[rows]})["loss"])
    assert (sum(rank_losses) / 2).item() == pytest.approx(full.item(), abs=1e-10)


def test_identity_targets_offset():
    t = identity_targets(2, 6, 4, torch.zeros(1))
    assert t.nonzero().tolist() == [[0, 4], [1, 5]]
