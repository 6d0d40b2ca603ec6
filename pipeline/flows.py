"""Prefect flows (the only module that imports prefect).

Prefect gives the training run retries and visibility; DVC decides staleness, so result caching and
persistence are off. Without ``PREFECT_API_URL`` Prefect starts a temporary local server for the run; with
it, runs appear in that server's UI (``prefect server start --host 127.0.0.1`` → http://127.0.0.1:4200).
Import it through `pipeline.prefect_env.load_flows`, which applies this project's Prefect settings first.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from pipeline.errors import PipelineError
from pipeline.evaluation.params import EvaluateParams
from pipeline.evaluation.run import EvaluateRequest, run_evaluation
from pipeline.tracking import check_reachable, resolve_uri, run_info
from pipeline.training.config import ResolvedConfig, TrainRequest
from pipeline.training.run import launch


def is_transient(task, task_run, state) -> bool:
    """Retry crashes and I/O hiccups, not problems the user must fix (bad params, missing inputs)."""
    del task, task_run
    return not isinstance(state.result(raise_on_failure=False), PipelineError)


@task(name="train", cache_policy=NO_CACHE, persist_result=False, retry_condition_fn=is_transient)
def train_task(request: TrainRequest, cfg: ResolvedConfig) -> dict[str, Any]:
    """One training attempt; the trainer resumes from the last epoch checkpoint, so a retry continues."""
    return launch(request, cfg)


@flow(name="train-method", persist_result=False, validate_parameters=False)
def training_flow(request: TrainRequest, cfg: ResolvedConfig) -> dict[str, Any]:
    check_reachable(resolve_uri(cfg.train.tracking_uri))
    attempt = train_task.with_options(retries=cfg.train.retries, retry_delay_seconds=cfg.train.retry_delay_s)
    return attempt(request, cfg)


@task(name="evaluate", cache_policy=NO_CACHE, persist_result=False, retry_condition_fn=is_transient)
def evaluate_task(request: EvaluateRequest, params: EvaluateParams) -> dict[str, Any]:
    """Every metric of one trained method; outputs are written atomically, so a retry simply redoes it."""
    return run_evaluation(request, params)


@flow(name="evaluate-method", persist_result=False, validate_parameters=False)
def evaluation_flow(request: EvaluateRequest, params: EvaluateParams, retries: int = 1) -> dict[str, Any]:
    check_reachable(run_info(request.model)["tracking_uri"])
    return evaluate_task.with_options(retries=retries, retry_delay_seconds=5)(request, params)
