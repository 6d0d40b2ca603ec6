"""Comparison across methods and seeds: pairing, hierarchical bootstrap, Holm, and derived sentences."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from pipeline.comparison import (
    PER_QUERY_COLUMNS,
    compare_methods,
    holm,
    metric_label,
    per_query_resamples,
    ranking_statements,
)
from pipeline.metrics.bootstrap import bootstrap_indices, percentile_interval

N = 120


def table(i2t_rank, t2i_rank=None, seed: int = 0, ids=None) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    i2t_rank = np.asarray(i2t_rank)
    n = len(i2t_rank)
    return pd.DataFrame(
        {
            "study_id": np.arange(1000, 1000 + n) if ids is None else ids,
            "i2t_rank": i2t_rank,
            "t2i_rank": i2t_rank if t2i_rank is None else np.asarray(t2i_rank),
            "i2t_confidence": rng.random(n),
            "t2i_confidence": rng.random(n),
            "i2t_top1_confidence": rng.random(n),
            "t2i_top1_confidence": rng.random(n),
        }
    )


def random_table(seed: int, n: int = N, scale: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return table(rng.integers(0, scale, n), rng.integers(0, scale, n), seed)


def compare(tables, **kwargs):
    kwargs = {"ks": (1, 5, 10), "rsum_short_ks": (1, 5), "n_resamples": 400, "seed": 0} | kwargs
    return compare_methods(tables, **kwargs)


def pair(result, metric, a, b):
    return next(p for p in result["pairs"][metric] if {p["a"], p["b"]} == {a, b})


def test_a_method_compared_with_itself_is_not_different():
    seeds = [random_table(s) for s in range(3)]
    for tables in ({"a": seeds[:1], "same": seeds[:1]}, {"a": seeds, "same": seeds}):
        result = compare(tables)
        for metric in ("rsum", "i2t_r10", "t2i_r10"):
            row = pair(result, metric, "a", "same")
            assert (row["delta"], row["low"], row["high"], row["p"], row["p_holm"]) == (0, 0, 0, 1, 1)
            assert row["significant"] is False


def test_a_known_difference_in_hits_is_significant_with_the_right_sign():
    rng = np.random.default_rng(1)
    better_hits = rng.random(N) < 0.6
    worse_hits = better_hits & (rng.random(N) < 0.5)  # a subset: hits differ on ~30% of the queries
    misses = rng.integers(20, 100, N)
    better, worse = table(np.where(better_hits, 0, misses)), table(np.where(worse_hits, 0, misses))
    result = compare({"worse": [worse], "better": [better]})
    row = pair(result, "i2t_r10", "worse", "better")
    expected = 100 * (worse_hits.mean() - better_hits.mean())
    assert (row["a"], row["b"]) == ("worse", "better")  # pairs follow the given method order
    assert row["delta"] == pytest.approx(expected) and expected < -20
    assert row["low"] < row["delta"] < row["high"] < 0
    assert row["p"] == pytest.approx(2 / 401) and row["significant"]
    sentences = ranking_statements(result, "i2t_r10", names={"better": "Better", "worse": "Worse"})
    assert sentences[0] == (
        f"Better > Worse on image→text R@10 (Δ = {-row['delta']:.1f}, 95% CI [{-row['high']:.1f}, "
        f"{-row['low']:.1f}], Holm-adjusted p = {row['p_holm']:.3g})"
    )
    assert sentences[-1] == "Every pair differs on image→text R@10 at Holm-adjusted p ≤ 0.05."


def test_differences_are_paired_over_shared_study_resamples():
    a, b = random_table(1), random_table(2)
    result = compare({"a": [a], "b": [b]}, n_resamples=300, seed=7)
    idx = bootstrap_indices(N, 300, 7)
    ra, rb = (per_query_resamples(t, idx, (1, 5, 10), (1, 5))["rsum"] for t in (a, b))
    assert (
        result["methods"]["a"]["metrics"]["rsum"]["low"],
        result["methods"]["a"]["metrics"]["rsum"]["high"],
    ) == (percentile_interval(ra))
    row = pair(result, "rsum", "a", "b")
    assert (row["low"], row["high"]) == percentile_interval(ra - rb)
    # near-identical methods: pairing cancels the shared query-to-query variation, so the interval of Δ is
    # far narrower than that of the same difference over independent resamples
    c = a.copy()
    c.loc[:4, "i2t_rank"] = 0
    close = compare({"a": [a], "c": [c]}, n_resamples=300, seed=7)
    rc = per_query_resamples(c, bootstrap_indices(N, 300, 8), (1, 5, 10), (1, 5))["rsum"]
    unpaired_low, unpaired_high = percentile_interval(ra - rc)
    paired = pair(close, "rsum", "a", "c")
    assert paired["high"] - paired["low"] < 0.6 * (unpaired_high - unpaired_low)


def test_seed_summary_and_two_level_bootstrap():
    seeds = [random_table(s) for s in range(3)]
    result = compare({"m": seeds})
    rsum = result["methods"]["m"]["metrics"]["rsum"]
    per_seed = [
        sum(100 * (t[f"{d}_rank"] < k).mean() for d in ("i2t", "t2i") for k in (1, 5, 10)) for t in seeds
    ]
    assert rsum["per_seed"] == pytest.approx(per_seed)
    assert rsum["mean"] == pytest.approx(np.mean(per_seed)) and rsum["sd"] == pytest.approx(
        np.std(per_seed, ddof=1)
    )
    for name in ("rsum", "rsum6", "i2t_r10", "t2i_r1"):
        summary = result["methods"]["m"]["metrics"][name]
        assert summary["low"] <= summary["mean"] <= summary["high"]
    assert compare({"m": seeds[:1]})["methods"]["m"]["metrics"]["rsum"]["sd"] is None
    # seeds that disagree completely (every query a hit vs none): each replicate averages drawn seeds
    hit, miss = table(np.zeros(N, int)), table(np.full(N, 50))
    spread = compare({"m": [hit, miss]})["methods"]["m"]["metrics"]["i2t_r1"]
    assert (spread["mean"], spread["sd"], spread["low"], spread["high"]) == (
        50,
        pytest.approx(50 * 2**0.5),
        0,
        100,
    )
    assert compare({"m": [hit]})["methods"]["m"]["metrics"]["i2t_r1"]["low"] == 100


def test_holm_against_hand_computed_values():
    assert holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert holm([0.4, 0.45, 0.9]) == [1.0, 1.0, 1.0]  # capped at 1
    adjusted = holm([0.01, math.nan, 0.02])  # NaN is left out of m
    assert (
        adjusted[0] == pytest.approx(0.02) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.02)
    )
    p = np.random.default_rng(0).random(12) ** 3
    adj = np.array(holm(p))
    assert (adj >= p).all() and (adj <= 1).all()
    assert (np.diff(adj[np.argsort(p)]) >= 0).all()  # monotone in the raw p-values
    assert holm([]) == []


def test_holm_is_applied_across_all_pairs_of_a_metric():
    tables = {m: [random_table(s, scale=40 + 20 * s)] for s, m in enumerate("abcd")}
    result = compare(tables)
    rows = result["pairs"]["rsum"]
    assert len(rows) == 6
    assert [r["p_holm"] for r in rows] == pytest.approx(holm([r["p"] for r in rows]))
    assert all(r["significant"] == (r["p_holm"] <= 0.05) for r in rows)


def test_output_is_deterministic_json_and_depends_on_the_seed():
    tables = {"a": [random_table(1), random_table(2)], "b": [random_table(3)]}
    first = compare(tables)
    assert json.loads(json.dumps(first)) == first == compare(tables)
    other = compare(tables, seed=1)
    assert (
        other["methods"]["a"]["metrics"]["rsum"]["mean"] == first["methods"]["a"]["metrics"]["rsum"]["mean"]
    )
    assert other["methods"]["a"]["metrics"]["rsum"]["low"] != first["methods"]["a"]["metrics"]["rsum"]["low"]
    assert first["bootstrap"] | {"n_resamples": 0} == {
        "n_resamples": 0,
        "seed": 0,
        "level": 0.95,
        "alpha": 0.05,
        "method": "percentile",
        "unit": "test study (query)",
        "design": "two-level: test studies (shared by all methods) then seeds per method",
        "multiple_comparisons": "holm",
    }
    metrics = first["methods"]["a"]["metrics"]
    assert {"i2t_aurc_r5", "t2i_eaurc_r10", "i2t_ece", "rsum6"} <= metrics.keys()


def test_tables_are_aligned_by_study_id_and_validated():
    a = random_table(1)
    shuffled = a.sample(frac=1.0, random_state=0)
    assert compare({"a": [a]})["methods"] == compare({"a": [shuffled]})["methods"]
    with pytest.raises(ValueError, match="study ids differ"):
        compare({"a": [a], "b": [a.iloc[1:]]})
    with pytest.raises(ValueError, match="lacks columns"):
        compare({"a": [a.drop(columns="t2i_confidence")]})
    with pytest.raises(ValueError, match="duplicate"):
        compare({"a": [pd.concat([a, a.iloc[:1]])]})
    with pytest.raises(ValueError, match="unknown headline"):
        compare({"a": [a]}, headline=["rsum9"])
    with pytest.raises(ValueError, match="no methods"):
        compare({})
    assert list(PER_QUERY_COLUMNS)[:3] == ["study_id", "i2t_rank", "t2i_rank"]


def test_ranking_statements_for_errors_lower_is_better_and_single_methods():
    rng = np.random.default_rng(4)
    rank = rng.integers(0, 3, N)
    good, bad = table(rank), table(rank)
    good["i2t_confidence"] = -rank + 0.01 * rng.random(N)  # confident exactly where it is right
    bad["i2t_confidence"] = rank + 0.01 * rng.random(N)
    result = compare({"bad": [bad], "good": [good]}, headline=["i2t_aurc_r1", "rsum"])
    aurc = pair(result, "i2t_aurc_r1", "bad", "good")
    assert aurc["delta"] > 0 and aurc["significant"]
    sentence = ranking_statements(result, "i2t_aurc_r1")[0]
    assert sentence.startswith("good < bad on image→text AURC (R@1) (lower is better; Δ = -")
    assert ranking_statements(result, "rsum") == [
        "Not distinguishable on RSUM (Holm-adjusted p > 0.05): bad vs good."
    ]
    single = compare({"only": [good]})
    assert ranking_statements(single, names={"only": "Only"}) == [
        "Only one method (Only): nothing to compare on RSUM."
    ]
    with pytest.raises(ValueError, match="no pairwise results"):
        ranking_statements(result, "i2t_r1")
    assert (
        metric_label("t2i_eaurc_r5") == "text→image E-AURC (R@5)"
        and metric_label("i2t_ece") == "image→text ECE"
    )
