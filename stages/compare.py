"""DVC stage `compare`: every method × seed evaluation → mean ± sd, bootstrap CIs, paired differences with
Holm-adjusted significance (`metrics/compare.json`), one long table per curve for `dvc plots`, and an MLflow
parent run with every method × seed training run nested under it."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline import tracking
from pipeline.config import build, read_params
from pipeline.errors import run_cli
from pipeline.evaluation.params import EvaluateParams
from pipeline.io import write_json
from pipeline.results import CompareParams, compare_results, load_results, write_curves


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--metrics-dir", required=True, help="holds the evaluate/ and train/ result trees")
    parser.add_argument("--out", required=True, help="comparison JSON to write")
    parser.add_argument("--curves", required=True, help="folder for the long curve tables (CSV)")
    parser.add_argument("--models-dir", required=True, help="holds <method>/seed<seed>/run.json")
    args = parser.parse_args()
    params = read_params(args.params)
    compare = build(CompareParams, params.get("compare"), f"{args.params}:compare")
    evaluate = build(EvaluateParams, params.get("evaluate"), f"{args.params}:evaluate")
    results = load_results(args.metrics_dir, params.get("methods") or [], params.get("seeds") or [])
    comparison = compare_results(results, compare, evaluate)
    write_json(args.out, comparison)
    write_curves(results, args.curves)
    runs = {
        m: [tracking.run_info(Path(args.models_dir) / m / f"seed{s}") for s in results.seeds]
        for m in results.methods
    }
    experiment = (params.get("train") or {}).get("experiment") or "medprobclip"
    parent = tracking.log_comparison(comparison, runs, experiment, None)  # None: the runs' own store
    print(f"compare: MLflow parent run {parent}")
    for line in comparison["ranking"]["statements"]:
        print(f"compare: {line}")


if __name__ == "__main__":
    run_cli(main)
