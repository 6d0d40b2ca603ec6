"""Evaluation figures: reliability diagram, risk–coverage, robustness, per-label ROC and t-SNE.

Each builder takes plain metric outputs and returns a matplotlib Figure drawn on an Agg canvas, never
registered with pyplot (no global state, no display); `save_figure` writes it as a byte-reproducible PNG.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pipeline.metrics.classification import ArrayLike, finite_scores
from pipeline.metrics.embedding import label_groups

DPI = 150
GREY = "0.7"


def _figure(width: float = 6.0, height: float = 4.5) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _colours(n: int) -> list[Any]:
    cmap = colormaps["tab20" if n > 10 else "tab10"]
    return [cmap(i % cmap.N) for i in range(n)]


def _fmt(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.3f}"


def reliability_figure(diagram: Mapping[str, Sequence[float]], title: str) -> Figure:
    """Accuracy vs confidence per confidence bin (top) and the bin counts (bottom); empty bins are skipped.

    `diagram` holds equal-length lists bin_lower, bin_upper, count, accuracy, confidence and optionally a
    scalar "ece" shown in the title.
    """
    keys = ("bin_lower", "bin_upper", "count", "accuracy", "confidence")
    missing = [k for k in keys if k not in diagram]
    if missing:
        raise ValueError(f"reliability diagram lacks {missing}")
    lower, upper, count, accuracy, confidence = (np.asarray(diagram[k], dtype=np.float64) for k in keys)
    if not all(a.ndim == 1 and a.shape == lower.shape for a in (upper, count, accuracy, confidence)):
        raise ValueError("reliability diagram lists must be 1-D and of equal length")
    used = count > 0
    width = (upper - lower)[used]
    fig = _figure(5.0, 6.0)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    top.plot([0, 1], [0, 1], ls="--", color="0.4", lw=1, label="perfect calibration")
    top.bar(
        lower[used], accuracy[used], width=width, align="edge", color="C0", edgecolor="k", label="accuracy"
    )
    top.bar(
        lower[used],
        confidence[used] - accuracy[used],
        bottom=accuracy[used],
        width=width,
        align="edge",
        color="C3",
        alpha=0.3,
        label="gap to confidence",
    )
    top.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy")
    top.legend(loc="upper left")
    bottom.bar(lower[used], count[used], width=width, align="edge", color="0.5", edgecolor="k")
    bottom.set(xlabel="confidence", ylabel="count")
    ece = diagram.get("ece")
    top.set_title(title if ece is None else f"{title} (ECE {_fmt(float(ece))})")
    return fig


def risk_coverage_figure(curves: Mapping[str, Mapping[str, Sequence[float]]], title: str) -> Figure:
    """Risk (1 − R@K among retained queries) against coverage, one line per label (AURC in the legend if
    a curve carries "aurc")."""
    fig = _figure()
    ax = fig.subplots()
    for colour, (label, curve) in zip(_colours(len(curves)), curves.items(), strict=True):
        coverage = np.asarray(curve["coverage"], dtype=np.float64)
        risk = np.asarray(curve["risk"], dtype=np.float64)
        if coverage.shape != risk.shape or coverage.ndim != 1:
            raise ValueError(f"curve {label!r}: coverage and risk must be 1-D of equal length")
        text = label if "aurc" not in curve else f"{label} (AURC {_fmt(float(curve['aurc']))})"
        ax.plot(coverage, risk, color=colour, label=text)
    ax.set(xlim=(0, 1), ylim=(0, None), xlabel="coverage", ylabel="risk", title=title)
    if curves:
        ax.legend(fontsize="small")
    return fig


def robustness_figure(rows: Sequence[Mapping[str, Any]], title: str) -> Figure:
    """R@K relative to clean (ratio) against corruption severity, one line per corruption.

    Rows are {corruption, severity, ratio}; a repeated (corruption, severity) pair is a ValueError, so
    filter to one K and direction first.
    """
    series: dict[str, dict[int, float]] = {}
    for row in rows:
        points = series.setdefault(str(row["corruption"]), {})
        severity = int(row["severity"])
        if severity in points:
            raise ValueError(f"duplicate row for {row['corruption']!r} at severity {severity}")
        points[severity] = float(row["ratio"])
    fig = _figure()
    ax = fig.subplots()
    ax.axhline(1.0, ls="--", color="0.4", lw=1, label="clean")
    for colour, (name, points) in zip(_colours(len(series)), series.items(), strict=True):
        severities = sorted(points)
        ax.plot(severities, [points[s] for s in severities], marker="o", color=colour, label=name)
    ax.set_xticks(sorted({s for points in series.values() for s in points}) or [1, 2, 3, 4, 5])
    ax.set(xlabel="severity", ylabel="R@K relative to clean", ylim=(0, None), title=title)
    ax.legend(fontsize="small")
    return fig


def roc_figure(curves: Mapping[str, tuple[ArrayLike, ArrayLike, float]], title: str) -> Figure:
    """Per-label ROC curves with the chance diagonal; the legend gives each AUROC (n/a when undefined)."""
    fig = _figure(7.5, 6.0)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], ls="--", color="0.4", lw=1)
    for colour, (name, (fpr, tpr, area)) in zip(_colours(len(curves)), curves.items(), strict=True):
        fpr_a = np.asarray(fpr, dtype=np.float64)
        tpr_a = np.asarray(tpr, dtype=np.float64)
        if fpr_a.shape != tpr_a.shape or fpr_a.ndim != 1:
            raise ValueError(f"curve {name!r}: fpr and tpr must be 1-D of equal length")
        ax.plot(fpr_a, tpr_a, color=colour, lw=1.2, label=f"{name} ({_fmt(float(area))})")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="false positive rate", ylabel="true positive rate", title=title)
    ax.set_aspect("equal")
    if curves:
        ax.legend(fontsize="x-small", loc="lower right")
    return fig


def tsne_figure(points: ArrayLike, labels: ArrayLike, names: Sequence[str], title: str) -> Figure:
    """Scatter of 2-D points coloured by each study's first positive pathology (`label_groups`).

    Studies without a positive pathology (including "No Finding") are grey and drawn underneath; the
    legend lists the non-empty groups with their counts.
    """
    xy = finite_scores(points, 2, "points")
    if xy.shape[1] != 2:
        raise ValueError(f"points must be [N, 2], got {xy.shape}")
    index, groups = label_groups(labels, names)
    if index.shape[0] != xy.shape[0]:
        raise ValueError(f"points ({xy.shape[0]}) and labels ({index.shape[0]}) need the same N")
    colours = [*_colours(len(groups) - 1), GREY]
    fig = _figure(8.0, 6.0)
    ax = fig.subplots()
    none = len(groups) - 1
    for g in [none, *range(none)]:
        mask = index == g
        if mask.any():
            label = f"{groups[g]} ({int(mask.sum())})"
            ax.scatter(xy[mask, 0], xy[mask, 1], s=6, color=colours[g], label=label, linewidths=0)
    ax.set(title=title, xticks=[], yticks=[])
    if len(xy):
        ax.legend(fontsize="x-small", markerscale=2, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return fig


def save_figure(fig: Figure, path: str | os.PathLike[str], dpi: int = DPI) -> Path:
    """Write `fig` as PNG atomically (temp file in the same directory, then os.replace) and close it.

    Fixed dpi and no "Software" metadata make the bytes depend only on the figure's content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            fig.savefig(handle, format="png", dpi=dpi, metadata={"Software": None})
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    finally:
        # Only a figure made through pyplot is registered there; ours are released with the object.
        if "matplotlib.pyplot" in sys.modules:
            sys.modules["matplotlib.pyplot"].close(fig)
    return path
