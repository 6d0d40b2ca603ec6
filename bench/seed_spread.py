"""Seed-to-seed spread and CI width of the headline metrics, from a multi-seed results tree.

Run after `make compare` (three seeds per method): prints, per method, the sd over seeds of validation and
test R@10 (both ways) and RSUM, the test CI widths, and which pairs the comparison resolves with all seeds
and with the first seed alone (what the one-seed default can detect). Numbers go to bench/README.md.

    .venv/bin/python bench/seed_spread.py [--params params.yaml] [--seeds 42 43 44]
"""

from __future__ import annotations

import argparse
import statistics

from pipeline.config import build, read_params
from pipeline.evaluation.params import EvaluateParams
from pipeline.results import CompareParams, compare_results, load_results


def sd(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--metrics-dir", default="metrics")
    parser.add_argument("--seeds", type=int, nargs="+", help="default: params.yaml seeds")
    args = parser.parse_args()
    params = read_params(args.params)
    seeds = args.seeds or params["seeds"]
    compare = build(CompareParams, params.get("compare"), "compare")
    evaluate = build(EvaluateParams, params.get("evaluate"), "evaluate")
    results = load_results(args.metrics_dir, params["methods"], seeds)
    full = compare_results(results, compare, evaluate)
    one = compare_results(load_results(args.metrics_dir, params["methods"], seeds[:1]), compare, evaluate)
    print(f"seeds {seeds}; {full['n_studies']} test studies; {full['bootstrap']['n_resamples']} resamples\n")
    print(
        "| method | sd val R@10 i2t / t2i | sd val RSUM | sd test R@10 i2t / t2i | sd test RSUM "
        "| test RSUM mean [CI] (width) | one-seed RSUM CI width |"
    )
    print("|---|---|---|---|---|---|---|")
    for method in results.methods:
        val = results.training[method]
        test = results.evaluations[method]
        m = full["methods"][method]["metrics"]["rsum"]
        m1 = one["methods"][method]["metrics"]["rsum"]
        print(
            f"| {full['display_names'][method]} "
            f"| {sd([r['val']['i2t_r10'] for r in val]):.2f} / {sd([r['val']['t2i_r10'] for r in val]):.2f} "
            f"| {sd([r['val']['rsum'] for r in val]):.1f} "
            f"| {sd([r['retrieval']['i2t_r10'] for r in test]):.2f} / "
            f"{sd([r['retrieval']['t2i_r10'] for r in test]):.2f} "
            f"| {sd([r['retrieval']['rsum'] for r in test]):.1f} "
            f"| {m['mean']:.1f} [{m['low']:.1f}, {m['high']:.1f}] ({m['high'] - m['low']:.1f}) "
            f"| {m1['high'] - m1['low']:.1f} |"
        )
    for label, comparison in ((f"{len(seeds)} seeds", full), (f"seed {seeds[0]} alone", one)):
        print(f"\nResolved with {label} (Holm, alpha {comparison['bootstrap']['alpha']}):")
        for metric, pairs in comparison["pairs"].items():
            hits = [
                f"{p['a']}−{p['b']} ({p['delta']:+.1f}, p={p['p_holm']:.3f})"
                for p in pairs
                if p["significant"]
            ]
            print(f"  {metric}: {len(hits)} of {len(pairs)} pairs: {', '.join(hits) or 'none'}")


if __name__ == "__main__":
    main()
