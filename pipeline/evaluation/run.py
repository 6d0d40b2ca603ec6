"""Evaluate one trained method: `best/` checkpoint + shards → metrics JSON, plot tables, figures, MLflow.

Outputs (each written atomically): the metrics JSON (DVC metrics), ``<plots>/{risk_coverage,reliability,
robustness}.csv`` (DVC plots), the per-query outcome table (what the comparison step resamples) and
``<figures>/*.png``; metrics and figures are also added to the method's MLflow training run (recorded in
``<model>/run.json`` by training).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import build, read_params
from pipeline.errors import PipelineError
from pipeline.evaluation.params import EvaluateParams
from pipeline.evaluation.runner import Evaluation, evaluate
from pipeline.evaluation.trained import load_trained
from pipeline.io import atomic_dir, write_csv, write_json


@dataclass(frozen=True)
class EvaluateRequest:
    method: str
    params: str = "params.yaml"
    shards: str = "data/shards"
    tokenizer: str = "models/tokenizer"
    model: str = "models/clip"  # the train stage's output folder: best/ and run.json
    metrics: str = "metrics/evaluate/clip.json"
    plots: str = "metrics/evaluate/clip"
    figures: str = "reports/figures/clip"
    per_query: str | None = None  # per-query outcomes CSV (None: not written)
    retrieval: str | None = None  # the gallery stage's bundle (None: no abstention result)


def evaluate_params(params_path: str | Path) -> EvaluateParams:
    return build(EvaluateParams, read_params(params_path).get("evaluate"), f"{params_path}:evaluate")


def write_evaluation(result: Evaluation, request: EvaluateRequest) -> list[Path]:
    """Metrics JSON, plot tables, per-query outcomes and figures; returns what MLflow should receive."""
    from pipeline.figures import save_figure

    write_json(request.metrics, result.metrics)
    if request.per_query and result.per_query is not None:
        write_csv(request.per_query, result.per_query)
    with atomic_dir(request.plots) as tmp:
        for name, table in result.tables.items():
            write_csv(tmp / f"{name}.csv", table)
    with atomic_dir(request.figures) as tmp:
        for name, build_figure in result.figures.items():
            save_figure(build_figure(), tmp / f"{name}.png")
    return [Path(request.plots), Path(request.figures), Path(request.metrics)]


def run_evaluation(request: EvaluateRequest, params: EvaluateParams | None = None) -> dict[str, Any]:
    from pipeline import tracking

    params = params or evaluate_params(request.params)
    model_dir = Path(request.model)
    trained = load_trained(model_dir / "best", request.tokenizer)
    if trained.method != request.method:
        raise PipelineError(
            f"{model_dir / 'best'} holds a '{trained.method}' model, not '{request.method}'; retrain it"
        )
    shards = Path(request.shards)
    for split in {params.split, params.threshold_split, params.probe_split}:
        if not (shards / split / "index.json").is_file():
            raise PipelineError(f"{shards / split}: no shards index (run the `shards` stage first)")
        trained.check_shards(shards / split)
    bundle = None
    if request.retrieval:
        from pipeline.retrieval.bundle import check_bundle_model, read_bundle

        bundle = read_bundle(request.retrieval)
        check_bundle_model(bundle, request.retrieval, model_dir / "best")
    result = evaluate(trained, shards, params, bundle)
    with result.timed("write"):
        artifacts = write_evaluation(result, request)
    if params.log_to_mlflow:
        timing = {"seconds": result.seconds}
        tracking.log_evaluation(
            tracking.run_info(model_dir), result.metrics | timing, dataclasses.asdict(params), artifacts
        )
    return result.metrics | {"seconds": sum(result.seconds.values()), "seconds_by_step": result.seconds}
