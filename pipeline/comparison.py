"""Compare methods across training seeds from per-query outcome tables: mean ± sd, bootstrap CIs, paired
differences with Holm-adjusted p-values, and ranking sentences derived only from those numbers.

Input per method: one per-query table per training seed (`PER_QUERY_COLUMNS`, written by the evaluation
runner as ``Evaluation.per_query``), all over the same test studies. No I/O here: the caller reads the
tables and writes the result.

Two-level (hierarchical) bootstrap, B replicates. Replicate b draws
  1. n study indices with replacement — `bootstrap.bootstrap_indices(n, B, seed)`, the same draw the
     evaluation runner uses, shared by every method and seed, so differences are paired by query;
  2. for a method with S ≥ 2 seeds, S seed indices with replacement. The draw depends only on
     (seed, S, B), so methods with equally many seeds share it: the pipeline trains every method with the
     same seed list, so table j of each method comes from the same training seed and this pairs them by
     seed too (for independent seeds it leaves the expected variance of a difference unchanged, and a
     method compared with a copy of itself gets Δ ≡ 0 exactly).
The replicate's statistic is the mean over the drawn seeds of the metric on the drawn studies; the point
estimate is the mean over seeds of the metric on all studies. Intervals are percentile intervals.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from pipeline.io import finite
from pipeline.metrics.bootstrap import (
    DEFAULT_LEVEL,
    DEFAULT_RESAMPLES,
    DIRECTIONS,
    INTERVAL_METHOD,
    UNIT,
    bootstrap_indices,
    check_level,
    check_resamples,
    ece_resampled,
    percentile_interval,
    retrieval_resampled,
    selective_resampled,
    two_sided_p_value,
)
from pipeline.metrics.calibration import ECE_BINS
from pipeline.metrics.retrieval import RECALL_KS, RSUM_SHORT_KS, check_ks

PER_QUERY_COLUMNS = (
    "study_id",
    "i2t_rank",  # 0-based rank of the study's report among all test reports (image query)
    "t2i_rank",  # 0-based rank of the study's image among all test images (report query)
    "i2t_confidence",  # selective-retrieval confidence of the image query (higher = more confident)
    "t2i_confidence",
    "i2t_top1_confidence",  # calibration confidence of the top-1 match, in [0, 1]
    "t2i_top1_confidence",
)
HEADLINE = ("rsum", "i2t_r10", "t2i_r10")
DEFAULT_ALPHA = 0.05
LOWER_IS_BETTER = ("aurc", "eaurc", "ece")


def per_query_resamples(
    table: pd.DataFrame,
    indices: np.ndarray,
    ks: Sequence[int] = RECALL_KS,
    rsum_short_ks: Sequence[int] = RSUM_SHORT_KS,
    bins: int = ECE_BINS,
) -> dict[str, np.ndarray]:
    """Every metric the per-query table supports, per row of ``indices`` ([B, n] row positions): R@K
    both ways, ``rsum``/``rsum6``, ``{d}_aurc_r{k}``/``{d}_eaurc_r{k}`` and ``{d}_ece`` (top-1 correct =
    rank 0), named as in the evaluation metrics JSON. ``indices = arange(n)[None]`` gives the point
    estimates."""
    check_table(table)
    out = retrieval_resampled(
        table["i2t_rank"].to_numpy(), table["t2i_rank"].to_numpy(), indices, ks, rsum_short_ks
    )
    for d in DIRECTIONS:
        rank = table[f"{d}_rank"].to_numpy()
        selective = selective_resampled(rank, table[f"{d}_confidence"].to_numpy(), indices, ks)
        out |= {f"{d}_{name}": values for name, values in selective.items()}
        out[f"{d}_ece"] = ece_resampled(table[f"{d}_top1_confidence"].to_numpy(), rank == 0, indices, bins)
    return out


def check_table(table: pd.DataFrame) -> None:
    if not isinstance(table, pd.DataFrame):
        raise ValueError(f"a per-query table must be a DataFrame, got {type(table).__name__}")
    missing = [c for c in PER_QUERY_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"per-query table lacks columns {missing}")
    if table.empty:
        raise ValueError("per-query table is empty")
    if table[list(PER_QUERY_COLUMNS)].isna().any().any():
        raise ValueError("per-query table has missing values")
    if table["study_id"].duplicated().any():
        raise ValueError("per-query table has duplicate study ids")


def aligned(tables: Mapping[str, Sequence[pd.DataFrame]]) -> tuple[np.ndarray, dict[str, list[pd.DataFrame]]]:
    """Sorted study ids and every table re-ordered to them; every table must hold exactly those studies,
    since pairing by query means the same query set for every method and seed."""
    if not tables:
        raise ValueError("no methods to compare")
    ids: np.ndarray | None = None
    out: dict[str, list[pd.DataFrame]] = {}
    for method, seeds in tables.items():
        if isinstance(seeds, pd.DataFrame) or not len(seeds):
            raise ValueError(f"{method}: expected a non-empty list of per-query tables (one per seed)")
        out[method] = []
        for j, table in enumerate(seeds):
            check_table(table)
            study = np.sort(table["study_id"].to_numpy())
            if ids is None:
                ids = study
            elif study.shape != ids.shape or not (study == ids).all():
                raise ValueError(f"{method} seed table {j}: its study ids differ from the first table's")
            out[method].append(table.set_index("study_id").loc[ids].reset_index())
    assert ids is not None
    return ids, out


def seed_draws(n_seeds: int, n_resamples: int, seed: int) -> np.ndarray:
    """[B, S] seed indices with replacement; the same for every method with S seeds (see module doc)."""
    rng = np.random.Generator(np.random.PCG64([seed, n_seeds]))
    return rng.integers(0, n_seeds, size=(n_resamples, n_seeds), dtype=np.int64)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (same order as given). With the m defined p-values sorted,
    p̃_(i) = max_{j ≤ i} min(1, (m − j + 1) · p_(j)): step-down, monotone, capped at 1. NaN stays NaN
    and does not count towards m."""
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    defined = np.flatnonzero(~np.isnan(p))
    order = defined[np.argsort(p[defined], kind="stable")]
    running = 0.0
    for i, j in enumerate(order):
        running = max(running, min(1.0, (len(order) - i) * float(p[j])))
        out[j] = running
    return out.tolist()


def compare_methods(
    tables: Mapping[str, Sequence[pd.DataFrame]],
    ks: Sequence[int] = RECALL_KS,
    rsum_short_ks: Sequence[int] = RSUM_SHORT_KS,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
    alpha: float = DEFAULT_ALPHA,
    headline: Sequence[str] = HEADLINE,
    bins: int = ECE_BINS,
) -> dict[str, Any]:
    """Per method and metric: ``per_seed`` points, ``mean``, ``sd`` (ddof = 1; None for one seed) and the
    two-level bootstrap interval ``low``/``high``. Per headline metric and unordered pair of methods (in
    the given order): ``delta`` = mean(a) − mean(b), its interval, the two-sided bootstrap ``p``, the
    Holm-adjusted ``p_holm`` over all pairs of that metric and ``significant`` (p_holm ≤ alpha).
    JSON-able: NaN becomes None."""
    ks, rsum_short_ks = check_ks(ks), check_ks(rsum_short_ks)
    level = check_level(level)
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    ids, tables = aligned(tables)
    check_resamples(len(ids), n_resamples)
    indices = bootstrap_indices(len(ids), n_resamples, seed)
    identity = np.arange(len(ids))[None]
    points: dict[str, dict[str, np.ndarray]] = {}
    replicates: dict[str, dict[str, np.ndarray]] = {}
    for method, seeds in tables.items():
        point = [per_query_resamples(t, identity, ks, rsum_short_ks, bins) for t in seeds]
        boot = [per_query_resamples(t, indices, ks, rsum_short_ks, bins) for t in seeds]
        names = list(point[0])
        points[method] = {name: np.array([p[name][0] for p in point]) for name in names}
        stacked = {name: np.stack([b[name] for b in boot]) for name in names}  # [S, B]
        if len(seeds) == 1:
            replicates[method] = {name: values[0] for name, values in stacked.items()}
        else:
            draws = seed_draws(len(seeds), n_resamples, seed)
            columns = np.arange(n_resamples)[:, None]
            replicates[method] = {name: values[draws, columns].mean(1) for name, values in stacked.items()}
    metric_names = list(next(iter(points.values())))
    unknown = [m for m in headline if m not in metric_names]
    if unknown:
        raise ValueError(f"unknown headline metrics {unknown}; choose from {metric_names}")
    methods = {
        method: {
            "n_seeds": len(tables[method]),
            "metrics": {
                name: summary(points[method][name], replicates[method][name], level) for name in metric_names
            },
        }
        for method in tables
    }
    pairs = {name: compare_pairs(points, replicates, name, level, alpha) for name in headline}
    return finite(
        {
            "bootstrap": {
                "n_resamples": n_resamples,
                "seed": seed,
                "level": level,
                "alpha": alpha,
                "method": INTERVAL_METHOD,
                "unit": UNIT,
                "design": "two-level: test studies (shared by all methods) then seeds per method",
                "multiple_comparisons": "holm",
            },
            "n_studies": len(ids),
            "ks": list(ks),
            "rsum_short_ks": list(rsum_short_ks),
            "headline": list(headline),
            "methods": methods,
            "pairs": pairs,
        }
    )


def summary(per_seed: np.ndarray, replicates: np.ndarray, level: float) -> dict[str, Any]:
    low, high = percentile_interval(replicates, level)
    return {
        "per_seed": per_seed.tolist(),
        "mean": float(per_seed.mean()),
        "sd": float(per_seed.std(ddof=1)) if len(per_seed) > 1 else None,
        "low": low,
        "high": high,
    }


def compare_pairs(
    points: Mapping[str, Mapping[str, np.ndarray]],
    replicates: Mapping[str, Mapping[str, np.ndarray]],
    metric: str,
    level: float,
    alpha: float,
) -> list[dict[str, Any]]:
    rows = []
    for a, b in itertools.combinations(points, 2):
        d = replicates[a][metric] - replicates[b][metric]
        low, high = percentile_interval(d, level)
        rows.append(
            {
                "a": a,
                "b": b,
                "delta": float(points[a][metric].mean() - points[b][metric].mean()),
                "low": low,
                "high": high,
                "p": two_sided_p_value(d),
            }
        )
    for row, adjusted in zip(rows, holm([r["p"] for r in rows]), strict=True):
        row["p_holm"] = adjusted
        row["significant"] = bool(not math.isnan(adjusted) and adjusted <= alpha)
    return rows


def lower_is_better(metric: str) -> bool:
    """AURC, E-AURC and ECE are errors; every other metric here is a recall (sum)."""
    name = metric.partition("_")[2].partition("_r")[0]
    return name in LOWER_IS_BETTER


def metric_label(metric: str) -> str:
    """Readable metric name: rsum → RSUM, i2t_r10 → image→text R@10, t2i_eaurc_r5 → text→image E-AURC
    (R@5), i2t_ece → image→text ECE."""
    if metric == "rsum":
        return "RSUM"
    if metric == "rsum6":
        return "RSUM (short)"
    direction, _, rest = metric.partition("_")
    where = {"i2t": "image→text", "t2i": "text→image"}.get(direction)
    if where is None:
        return metric
    if rest.startswith("r") and rest[1:].isdigit():
        return f"{where} R@{rest[1:]}"
    name, _, k = rest.partition("_r")
    title = {"aurc": "AURC", "eaurc": "E-AURC", "ece": "ECE"}.get(name, name)
    return f"{where} {title}" + (f" (R@{k})" if k else "")


def ranking_statements(
    comparison: Mapping[str, Any],
    metric: str = "rsum",
    names: Mapping[str, str] | None = None,
    digits: int = 1,
) -> list[str]:
    """Sentences derived from `compare_methods` output only: one per significant pair, better method
    first (e.g. "CXR-CLIP > CLIP on RSUM (Δ = 12.3, 95% CI [4.1, 20.0], Holm-adjusted p = 0.004)"; for
    AURC/E-AURC/ECE "<", lower being better), ordered by the better method's mean, then one sentence
    naming the pairs that are not distinguishable. ``names`` maps method keys to display names."""
    pairs = comparison["pairs"].get(metric)
    if pairs is None:
        raise ValueError(f"no pairwise results for {metric!r}; compared: {sorted(comparison['pairs'])}")
    names = dict(names or {})
    label, level = metric_label(metric), comparison["bootstrap"]["level"]
    alpha = comparison["bootstrap"]["alpha"]
    lower = lower_is_better(metric)
    means = {m: v["metrics"][metric]["mean"] for m, v in comparison["methods"].items()}
    if not pairs:
        only = ", ".join(names.get(m, m) for m in comparison["methods"])
        return [f"Only one method ({only}): nothing to compare on {label}."]
    significant, tied = [], []
    for pair in pairs:
        a, b = pair["a"], pair["b"]
        if not pair["significant"]:
            tied.append(f"{names.get(a, a)} vs {names.get(b, b)}")
            continue
        delta, low, high = pair["delta"], pair["low"], pair["high"]
        if (delta > 0) == lower:  # make the better method the first one
            a, b, delta, low, high = b, a, -delta, -high, -low
        op = "<" if lower else ">"
        note = "lower is better; " if lower else ""
        sentence = (
            f"{names.get(a, a)} {op} {names.get(b, b)} on {label} ({note}Δ = {delta:.{digits}f}, "
            f"{level * 100:g}% CI [{low:.{digits}f}, {high:.{digits}f}], "
            f"Holm-adjusted p = {pair['p_holm']:.3g})"
        )
        key = (means[a] if not lower else -means[a], means[b] if not lower else -means[b])
        significant.append((key, sentence))
    statements = [s for _, s in sorted(significant, key=lambda item: (-item[0][0], -item[0][1]))]
    if tied:
        statements.append(
            f"Not distinguishable on {label} (Holm-adjusted p > {alpha:g}): " + ", ".join(tied) + "."
        )
    else:
        statements.append(f"Every pair differs on {label} at Holm-adjusted p ≤ {alpha:g}.")
    return statements
