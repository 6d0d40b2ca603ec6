"""DVC stage `evaluate@{method}-{seed}`: the Prefect evaluation flow of one trained model → metrics, plot
tables, per-query outcomes, figures. ``--in-process`` evaluates here without Prefect."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.config import ConfigError, suggest
from pipeline.errors import PipelineError, run_cli
from pipeline.evaluation.params import EvaluateParams
from pipeline.evaluation.run import EvaluateRequest, evaluate_params
from pipeline.io import output_lock


def preflight(request: EvaluateRequest, params: EvaluateParams) -> None:
    """The user errors found without evaluating, found before any Prefect server starts (seconds to
    start, and an error inside a flow reaches the user behind Prefect's log and traceback)."""
    from pipeline.losses import LOSSES
    from pipeline.shards import load_index

    if request.method not in LOSSES:
        hint = suggest(request.method, LOSSES)
        raise ConfigError(f"unknown method '{request.method}'{hint}; choose one of {sorted(LOSSES)}")
    best = Path(request.model) / "best"
    if not (best / "method.json").is_file():
        raise PipelineError(f"{best}: no trained model (method.json missing); run the train stage first")
    for split in dict.fromkeys((params.split, params.threshold_split, params.probe_split)):
        load_index(Path(request.shards) / split)


def parse_args(argv: list[str] | None = None) -> tuple[EvaluateRequest, bool]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("method")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--shards", default="data/shards")
    parser.add_argument("--tokenizer", default="models/tokenizer")
    parser.add_argument("--model", required=True, help="the train stage's folder (best/, run.json)")
    parser.add_argument("--metrics", required=True, help="metrics JSON to write")
    parser.add_argument("--plots", required=True, help="folder for the plot tables (CSV)")
    parser.add_argument("--figures", required=True, help="folder for the PNG figures")
    parser.add_argument("--per-query", help="per-query outcomes CSV (what the comparison resamples)")
    parser.add_argument("--retrieval", help="the gallery stage's bundle: adds the abstention result")
    parser.add_argument("--in-process", action="store_true", help="evaluate here, without the Prefect flow")
    args = vars(parser.parse_args(argv))
    in_process = args.pop("in_process")
    return EvaluateRequest(**args), in_process


def main() -> None:
    request, in_process = parse_args()
    params = evaluate_params(request.params)
    preflight(request, params)
    outputs = [p for p in (request.metrics, request.plots, request.figures, request.per_query) if p]
    with output_lock(*outputs):
        if in_process:
            from pipeline.evaluation.run import run_evaluation

            metrics = run_evaluation(request, params)
        else:
            from pipeline.prefect_env import load_flows

            metrics = load_flows().evaluation_flow(request, params)
    r, zs = metrics["retrieval"], metrics["zero_shot"]["argmax"]["mean_accuracy"]
    k = max(params.ks)  # evaluate.ks need not hold 10
    print(
        f"{request.method}: test RSUM {r['rsum']:.1f} (random {r['random_rsum']:.1f}), R@{k} i2t "
        f"{r[f'i2t_r{k}']:.1f} t2i {r[f't2i_r{k}']:.1f}; zero-shot mean accuracy "
        f"{'n/a' if zs is None else f'{zs:.3f}'}; {metrics['seconds']:.0f} s "
        f"({', '.join(f'{k} {v:.1f}' for k, v in metrics['seconds_by_step'].items())})"
    )


if __name__ == "__main__":
    run_cli(main)
