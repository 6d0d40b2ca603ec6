"""Figure builders render from small inputs; save_figure writes valid, reproducible PNGs atomically."""

from __future__ import annotations

import math
import os
import sys

import numpy as np
import pytest
from matplotlib.figure import Figure

from pipeline.figures import (
    reliability_figure,
    risk_coverage_figure,
    robustness_figure,
    roc_figure,
    save_figure,
    tsne_figure,
)
from pipeline.metrics.classification import roc_curve

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def reliability():
    return reliability_figure(
        {
            "bin_lower": [0.0, 0.25, 0.5, 0.75],
            "bin_upper": [0.25, 0.5, 0.75, 1.0],
            "count": [0, 3, 5, 2],
            "accuracy": [0.0, 0.33, 0.6, 1.0],
            "confidence": [0.0, 0.4, 0.62, 0.9],
            "ece": 0.05,
        },
        "calibration",
    )


def risk_coverage():
    curve = {"coverage": [0.1, 0.5, 1.0], "risk": [0.0, 0.2, 0.4]}
    return risk_coverage_figure({"R@1": {**curve, "aurc": 0.2}, "R@5": curve}, "selective")


def robustness():
    rows = [
        {"corruption": c, "severity": s, "ratio": 1.0 - 0.1 * s * (i + 1)}
        for i, c in enumerate(["blur", "noise"])
        for s in (3, 1, 2, 5, 4)
    ]
    return robustness_figure(rows, "robustness")


def roc():
    scores = np.array([0.9, 0.8, 0.4, 0.3, 0.1])
    fpr, tpr, _ = roc_curve(scores, [1, 0, 1, 0, 0])
    nan_fpr, nan_tpr, _ = roc_curve(scores, [0, 0, 0, 0, 0])
    return roc_figure({"Edema": (fpr, tpr, 0.75), "Fracture": (nan_fpr, nan_tpr, math.nan)}, "ROC")


def tsne():
    rng = np.random.default_rng(0)
    labels = rng.choice([1.0, 0.0, -1.0, np.nan], size=(30, 3))
    return tsne_figure(rng.normal(size=(30, 2)), labels, ["Edema", "No Finding", "Fracture"], "t-SNE")


BUILDERS = [reliability, risk_coverage, robustness, roc, tsne]


@pytest.mark.parametrize("build", BUILDERS, ids=lambda b: b.__name__)
def test_figure_saves_valid_reproducible_png(build, tmp_path):
    first = build()
    assert isinstance(first, Figure)
    path = save_figure(first, tmp_path / "sub" / "a.png")
    save_figure(build(), tmp_path / "b.png")
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 1000
    assert data == (tmp_path / "b.png").read_bytes()
    assert b"Software" not in data
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["a.png", "b.png"]


def test_figure_content_changes_the_bytes(tmp_path):
    save_figure(reliability_figure(_diagram(0.5), "x"), tmp_path / "a.png")
    save_figure(reliability_figure(_diagram(0.9), "x"), tmp_path / "b.png")
    assert (tmp_path / "a.png").read_bytes() != (tmp_path / "b.png").read_bytes()


def _diagram(accuracy):
    return {"bin_lower": [0.0], "bin_upper": [1.0], "count": [4], "accuracy": [accuracy], "confidence": [0.7]}


def test_save_replaces_existing_file_and_cleans_up_on_failure(tmp_path):
    target = tmp_path / "fig.png"
    target.write_bytes(b"old")
    save_figure(robustness(), target)
    assert target.read_bytes().startswith(PNG_SIGNATURE)
    broken = risk_coverage()
    broken.axes[0].text(0.5, 0.5, "$\\notacommand{$")
    with pytest.raises(ValueError):
        save_figure(broken, target)
    assert target.read_bytes().startswith(PNG_SIGNATURE)
    assert os.listdir(tmp_path) == ["fig.png"]


def test_builders_do_not_register_with_pyplot_and_pyplot_figures_are_closed(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    fig = tsne()
    assert plt.get_fignums() == before
    pyplot_fig = plt.figure()
    assert pyplot_fig.number in plt.get_fignums()
    save_figure(pyplot_fig, tmp_path / "p.png")
    assert pyplot_fig.number not in plt.get_fignums()
    save_figure(fig, tmp_path / "t.png")
    assert "matplotlib.pyplot" in sys.modules


def test_tsne_legend_counts_groups():
    labels = np.array([[1, 0], [1, 1], [0, 1], [np.nan, -1]])
    fig = tsne_figure(np.zeros((4, 2)), labels, ["Edema", "No Finding"], "t")
    texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert texts == ["No Finding / none (2)", "Edema (2)"]


def test_robustness_lines_sorted_by_severity():
    fig = robustness()
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    assert list(lines["blur"].get_xdata()) == [1, 2, 3, 4, 5]
    np.testing.assert_allclose(lines["noise"].get_ydata(), [0.8, 0.6, 0.4, 0.2, 0.0])


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: reliability_figure({"bin_lower": [0.0]}, "t"), "lacks"),
        (lambda: reliability_figure({**_diagram(0.5), "count": [1, 2]}, "t"), "equal length"),
        (lambda: risk_coverage_figure({"a": {"coverage": [0.1, 1.0], "risk": [0.1]}}, "t"), "equal length"),
        (lambda: robustness_figure([{"corruption": "a", "severity": 1, "ratio": 1.0}] * 2, "t"), "duplicate"),
        (lambda: roc_figure({"a": ([0, 1], [0, 0.5, 1], 0.5)}, "t"), "equal length"),
        (lambda: tsne_figure(np.zeros((3, 3)), np.zeros((3, 1)), ["a"], "t"), r"\[N, 2\]"),
        (lambda: tsne_figure(np.zeros((3, 2)), np.zeros((2, 1)), ["a"], "t"), "same N"),
    ],
)
def test_bad_inputs_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()
