"""The method × seed results tree that the train and evaluate stages write, read back as one object.

`dvc.yaml` names the files (``<metrics>/evaluate/<method>/seed<seed>.json`` and so on); `run_files` is the
one place in code that knows that naming (a test checks the two agree). Loading is strict: a method or
seed listed in params.yaml without its files is an error naming the stage to run, never a silent gap.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.errors import PipelineError


@dataclass(frozen=True)
class RunFiles:
    """The files of one (method, seed) run under the metrics folder."""

    evaluation: Path
    per_query: Path
    plots: Path
    training: Path
    history: Path


def run_files(metrics_dir: str | Path, method: str, seed: int) -> RunFiles:
    root = Path(metrics_dir)
    evaluate, train = root / "evaluate" / method, root / "train" / method
    return RunFiles(
        evaluation=evaluate / f"seed{seed}.json",
        per_query=evaluate / f"seed{seed}-per-query.csv",
        plots=evaluate / f"seed{seed}",
        training=train / f"seed{seed}.json",
        history=train / f"seed{seed}-history.csv",
    )


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise PipelineError(f"{path}: missing; run `dvc repro` (its stage has not run)") from exc
    except json.JSONDecodeError as exc:
        raise PipelineError(f"{path}: not valid JSON ({exc.msg}); rerun its stage (dvc repro -f)") from exc


def read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise PipelineError(f"{path}: missing; run `dvc repro` (its stage has not run)")
    return pd.read_csv(path)


@dataclass(frozen=True)
class Results:
    """Every run's evaluation and training summary, per method in params order, per seed in order."""

    metrics_dir: Path
    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    evaluations: dict[str, list[dict[str, Any]]]
    training: dict[str, list[dict[str, Any]]]

    def files(self, method: str, seed: int) -> RunFiles:
        return run_files(self.metrics_dir, method, seed)

    def per_query(self) -> dict[str, list[pd.DataFrame]]:
        return {m: [read_csv(self.files(m, s).per_query) for s in self.seeds] for m in self.methods}

    def mean_evaluations(self) -> dict[str, dict[str, Any]]:
        """Each method's evaluation with every number averaged over seeds (what the detail tables show)."""
        return {m: mean_tree(runs) for m, runs in self.evaluations.items()}

    def mean_training(self) -> dict[str, dict[str, Any]]:
        return {m: mean_tree(runs) for m, runs in self.training.items()}

    def mean_table(self, name: str, by: str, history: bool = False) -> pd.DataFrame:
        """A long table over methods of one per-run CSV (``<plots>/<name>.csv``, or the training history),
        averaged over seeds row by row: what `dvc plots` draws with one line per method."""
        frames = []
        for method in self.methods:
            runs = [
                read_csv(self.files(method, s).history if history else self.files(method, s).plots / name)
                for s in self.seeds
            ]
            mean = pd.concat(runs).groupby(by, sort=True).mean(numeric_only=True).reset_index()
            frames.append(mean.assign(method=method))
        table = pd.concat(frames, ignore_index=True)
        return table[["method", *[c for c in table.columns if c != "method"]]]


def load_results(metrics_dir: str | Path, methods: Sequence[str], seeds: Sequence[int]) -> Results:
    if not methods or not seeds:
        raise PipelineError("params.yaml: `methods` and `seeds` must each list at least one entry")
    root = Path(metrics_dir)
    evaluations = {m: [read_json(run_files(root, m, s).evaluation) for s in seeds] for m in methods}
    training = {m: [read_json(run_files(root, m, s).training) for s in seeds] for m in methods}
    return Results(root, tuple(methods), tuple(seeds), evaluations, training)


def mean_tree(trees: Sequence[Any]) -> Any:
    """The element-wise mean of numbers in same-shaped JSON trees; other leaves are taken from the first
    tree (they are settings, equal across seeds). None (an undefined metric) stays None if any is None."""
    first = trees[0]
    if isinstance(first, Mapping):
        return {k: mean_tree([t.get(k) if isinstance(t, Mapping) else None for t in trees]) for k in first}
    if isinstance(first, bool) or not isinstance(first, int | float):
        return first
    values = [t for t in trees if isinstance(t, int | float) and not isinstance(t, bool)]
    if len(values) != len(trees) or any(isinstance(v, float) and math.isnan(v) for v in values):
        return None
    mean = sum(values) / len(values)
    return int(mean) if all(isinstance(v, int) for v in values) and mean == int(mean) else mean


@dataclass(frozen=True)
class CompareParams:
    """The ``compare`` params section; the resampling itself (count, seed, level) is ``evaluate.bootstrap``,
    so the per-method intervals and the comparison use the very same resamples."""

    alpha: float = 0.05  # family-wise error rate per metric (Holm–Bonferroni over all method pairs)
    metrics: tuple[str, ...] = ("rsum", "i2t_r10", "t2i_r10")  # metrics tested pairwise
    ranking_metric: str = "rsum"  # the metric the report's ranking sentences are about

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must lie in (0, 1), got {self.alpha!r}")
        if self.ranking_metric not in self.metrics:
            raise ValueError(f"ranking_metric {self.ranking_metric!r} must be one of metrics {self.metrics}")


CURVES = {  # long table name → (per-run table, the column that rows are averaged over)
    "risk_coverage": ("risk_coverage.csv", "coverage"),
    "reliability": ("reliability.csv", "bin_upper"),
    "robustness": ("robustness.csv", "severity"),
}


def compare_results(results: Results, compare: CompareParams, evaluate: Any) -> dict[str, Any]:
    """`compare_methods` over every run with the evaluation's own bootstrap settings, plus the seeds used
    and the ranking sentences derived from the significance results (never written by hand)."""
    from pipeline.comparison import compare_methods, ranking_statements
    from pipeline.losses import display_name

    boot = evaluate.bootstrap
    comparison = compare_methods(
        results.per_query(),
        ks=evaluate.ks,
        rsum_short_ks=evaluate.rsum_short_ks,
        n_resamples=boot.n_resamples,
        seed=boot.seed,
        level=boot.level,
        alpha=compare.alpha,
        headline=compare.metrics,
        bins=evaluate.calibration_bins,
    )
    names = {m: display_name(m) for m in results.methods}
    comparison["seeds"] = list(results.seeds)
    comparison["method_order"] = list(results.methods)  # params.yaml order (the JSON's keys are sorted)
    comparison["display_names"] = names
    comparison["ranking"] = {
        "metric": compare.ranking_metric,
        "statements": ranking_statements(comparison, compare.ranking_metric, names),
    }
    return comparison


def write_curves(results: Results, folder: str | Path) -> None:
    """One long table per curve (method, x, y…), averaged over seeds, for the top-level `dvc plots`."""
    from pipeline.io import atomic_dir, write_csv

    with atomic_dir(folder) as tmp:
        for name, (source, by) in CURVES.items():
            write_csv(tmp / f"{name}.csv", results.mean_table(source, by))
        write_csv(tmp / "history.csv", results.mean_table("", "epoch", history=True))
