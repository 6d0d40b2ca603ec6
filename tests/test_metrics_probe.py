"""Linear / MLP probe on frozen features, and the t-SNE embedding with its label grouping."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.metrics.classification import per_label_metrics, youden_threshold
from pipeline.metrics.embedding import NONE_GROUP, label_groups, tsne_2d, tsne_perplexity
from pipeline.metrics.probe import Probe, predict_proba, probe_metrics, train_probe

NAMES = ["a", "b", "c"]


def separable(n, seed, d=8, c=3):
    rng = np.random.default_rng(seed)
    w = np.random.default_rng(123).normal(size=(d, c))
    x = rng.normal(size=(n, d)) * 3.0 + 5.0
    margin = (x - 5.0) @ w
    x, margin = x[np.abs(margin).min(axis=1) > 0.5], margin[np.abs(margin).min(axis=1) > 0.5]
    return x.astype(np.float32), (margin > 0).astype(np.float64)


def same_state(p, q):
    return all(
        torch.equal(a, b) for a, b in zip(p.state_dict().values(), q.state_dict().values(), strict=True)
    )


@pytest.mark.parametrize("hidden", [0, 16])
def test_separable_data_gives_auroc_one_and_high_accuracy(hidden):
    train_x, train_y = separable(300, 0)
    val_x, val_y = separable(150, 1)
    test_x, test_y = separable(150, 2)
    probe = train_probe(train_x, train_y, hidden=hidden, epochs=150, lr=3e-2, batch_size=128)
    out = probe_metrics(probe, val_x, val_y, test_x, test_y, NAMES)
    assert out["macro_auroc"] > 0.995
    assert out["macro_accuracy"] > 0.95
    assert all(out["per_label"][n]["n"] == len(test_x) for n in NAMES)


def test_probe_metrics_equals_brute_force_composition():
    train_x, train_y = separable(120, 0)
    val_x, val_y = separable(60, 1)
    test_x, test_y = separable(60, 2)
    probe = train_probe(train_x, train_y, epochs=5, lr=1e-2)
    out = probe_metrics(probe, val_x, val_y, test_x, test_y, NAMES)
    with torch.no_grad():
        val_p = torch.sigmoid(probe(torch.tensor(val_x))).double().numpy()
        test_p = torch.sigmoid(probe(torch.tensor(test_x))).double().numpy()
    for c, name in enumerate(NAMES):
        t = youden_threshold(val_p[:, c], val_y[:, c])
        assert out["per_label"][name]["threshold"] == t
        expected = np.mean([(p >= t) == (y == 1) for p, y in zip(test_p[:, c], test_y[:, c], strict=True)])
        assert out["per_label"][name]["accuracy"] == pytest.approx(expected)
    thresholds = [out["per_label"][n]["threshold"] for n in NAMES]
    assert out == per_label_metrics(test_p, test_y, thresholds, NAMES)


def test_training_is_deterministic_and_leaves_global_rng_alone():
    x, y = separable(200, 0)
    state, threads = torch.get_rng_state(), torch.get_num_threads()
    p1 = train_probe(x, y, hidden=8, epochs=3, batch_size=64, seed=7)
    assert torch.equal(torch.get_rng_state(), state) and torch.get_num_threads() == threads
    p2 = train_probe(x, y, hidden=8, epochs=3, batch_size=64, seed=7)
    p3 = train_probe(x, y, hidden=8, epochs=3, batch_size=64, seed=8)
    assert same_state(p1, p2)
    assert not same_state(p1, p3)
    np.testing.assert_array_equal(predict_proba(p1, x), predict_proba(p2, x))


def test_architecture_standardisation_and_eval_mode():
    x, y = separable(50, 0, d=4)
    x[:, 3] = 2.5
    linear = train_probe(x, y, epochs=1)
    mlp = train_probe(x, y, hidden=5, epochs=1)
    assert isinstance(linear, Probe) and not linear.training
    assert isinstance(linear.net, torch.nn.Linear) and linear.net.weight.shape == (3, 4)
    assert [type(m) for m in mlp.net] == [torch.nn.Linear, torch.nn.ReLU, torch.nn.Linear]
    assert mlp.net[0].weight.shape == (5, 4) and mlp.net[2].weight.shape == (3, 5)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(linear.mean.numpy(), x64.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(linear.std.numpy()[:3], x64[:, :3].std(axis=0), rtol=1e-6)
    assert linear.std[3] == 1.0
    assert set(dict(linear.named_buffers())) == {"mean", "std"}
    probs = predict_proba(linear, x)
    assert probs.shape == (len(x), 3) and np.isfinite(probs).all() and ((probs > 0) & (probs < 1)).all()


def test_raw_chexpert_labels_train_like_their_positive_mask():
    x, y = separable(80, 0)
    raw = y.copy()
    rng = np.random.default_rng(0)
    raw[(y == 0) & (rng.random(y.shape) < 0.5)] = -1.0
    raw[(y == 0) & (rng.random(y.shape) < 0.3)] = np.nan
    assert same_state(train_probe(x, y, epochs=3), train_probe(x, raw, epochs=3))


def test_full_batch_matches_batch_size_at_least_n():
    x, y = separable(60, 0)
    assert same_state(
        train_probe(x, y, epochs=3, batch_size=None), train_probe(x, y, epochs=3, batch_size=10_000)
    )


def test_single_study_trains():
    probe = train_probe(np.ones((1, 3)), np.array([[1.0, 0.0]]), epochs=2)
    assert predict_proba(probe, np.ones((2, 3))).shape == (2, 2)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: train_probe(np.zeros(5), np.zeros((5, 1))), "2 dimension"),
        (lambda: train_probe(np.zeros((5, 2)), np.zeros((4, 1))), "same N"),
        (lambda: train_probe(np.zeros((0, 2)), np.zeros((0, 1))), "N, D, C >= 1"),
        (lambda: train_probe(np.full((5, 2), np.nan), np.zeros((5, 1))), "finite"),
        (lambda: train_probe(np.zeros((5, 2)), np.full((5, 1), 0.5)), "1 / 0 / -1 / NaN"),
        (lambda: train_probe(np.zeros((5, 2)), np.zeros((5, 1)), hidden=-1), "hidden"),
        (lambda: train_probe(np.zeros((5, 2)), np.zeros((5, 1)), epochs=0), "epochs"),
        (lambda: train_probe(np.zeros((5, 2)), np.zeros((5, 1)), batch_size=0), "batch_size"),
        (lambda: train_probe(np.zeros((5, 2)), np.zeros((5, 1)), threads=0), "threads"),
        (lambda: predict_proba(Probe(3, 1), np.zeros((2, 4))), "expects 3 features"),
        (
            lambda: probe_metrics(
                Probe(3, 2), np.zeros((4, 3)), np.zeros((4, 2)), np.zeros((4, 3)), np.zeros((4, 2)), ["a"]
            ),
            "disagree",
        ),
        (
            lambda: probe_metrics(
                Probe(3, 2),
                np.zeros((4, 3)),
                np.zeros((3, 2)),
                np.zeros((4, 3)),
                np.zeros((4, 2)),
                ["a", "b"],
            ),
            "same N",
        ),
        (
            lambda: probe_metrics(
                Probe(3, 2),
                np.zeros((4, 3)),
                np.zeros((4, 2)),
                np.zeros((4, 3)),
                np.zeros((4, 3)),
                ["a", "b"],
            ),
            "same shape",
        ),
    ],
)
def test_bad_inputs_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --- t-SNE and label grouping ---


def two_clusters(n=40, d=10, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    x[n // 2 :] += 20.0
    return x


def test_tsne_shape_determinism_and_cluster_separation():
    x = two_clusters()
    a = tsne_2d(x, seed=0, max_iter=500)
    b = tsne_2d(torch.tensor(x), seed=0, max_iter=500)
    c = tsne_2d(x, seed=1, max_iter=500)
    d = tsne_2d(x, seed=0, perplexity=5.0, max_iter=500)
    assert a.shape == (40, 2) and a.dtype == np.float64
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, c, atol=1e-6)
    assert not np.allclose(a, d)
    dist = np.linalg.norm(a[:, None] - a[None], axis=-1)
    same = (np.arange(40)[:, None] < 20) == (np.arange(40)[None] < 20)
    assert dist[same].max() < dist[~same].min()


def test_tsne_small_n_and_one_dimensional_features():
    assert tsne_perplexity(3, 30.0) == pytest.approx(2 / 3)
    assert tsne_perplexity(1000, 30.0) == 30.0
    assert tsne_2d(np.random.default_rng(0).normal(size=(3, 4)), max_iter=250).shape == (3, 2)
    line = np.arange(6.0)[:, None]
    out = tsne_2d(line, max_iter=250)
    assert out.shape == (6, 2) and np.isfinite(out).all()
    np.testing.assert_array_equal(out, tsne_2d(line, max_iter=250))
    assert not np.allclose(out, tsne_2d(line, seed=1, max_iter=250))


@pytest.mark.parametrize(
    ("features", "kwargs", "match"),
    [
        (np.zeros((2, 4)), {}, "N >= 3"),
        (np.zeros((5, 0)), {}, "D >= 1"),
        (np.zeros(5), {}, "2 dimension"),
        (np.full((5, 2), np.nan), {}, "finite"),
        (np.zeros((5, 2)), {"perplexity": 0.0}, "perplexity"),
    ],
)
def test_tsne_bad_inputs_raise(features, kwargs, match):
    with pytest.raises(ValueError, match=match):
        tsne_2d(features, **kwargs)


def test_label_groups_first_positive_pathology_vs_brute_force():
    names = ["Atelectasis", "No Finding", "Edema", "Fracture"]
    rng = np.random.default_rng(0)
    labels = rng.choice([1.0, 0.0, -1.0, np.nan], size=(50, 4))
    index, groups = label_groups(labels, names)
    assert groups == ["Atelectasis", "Edema", "Fracture", NONE_GROUP]
    for i in range(50):
        first = next((n for n in names if n != "No Finding" and labels[i, names.index(n)] == 1), NONE_GROUP)
        assert groups[index[i]] == first
    index, groups = label_groups([[1, 0], [1, 1]], ["No Finding", "Edema"])
    assert [groups[i] for i in index] == [NONE_GROUP, "Edema"]
    index, groups = label_groups(np.zeros((0, 1)), ["No Finding"])
    assert index.shape == (0,) and groups == [NONE_GROUP]
    with pytest.raises(ValueError, match="names"):
        label_groups(np.zeros((2, 2)), ["a"])
