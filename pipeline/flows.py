"""Prefect flows (the only module that imports prefect).

Prefect gives the training run retries and visibility; DVC decides staleness, so result caching and
persistence are off. Without ``PREFECT_API_URL`` Prefect starts a temporary local server for the run; with
it, runs appear in that server's UI (``prefect server start --host 127.0.0.1`` → http://127.0.0.1:4200).
All Prefect settings this project relies on are in `PREFECT_DEFAULTS`; the environment overrides each.
"""

from __future__ import annotations

import os
from typing import Any

PREFECT_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
    "PREFECT_LOGGING_LEVEL": "WARNING",
}
for _key, _value in PREFECT_DEFAULTS.items():
    os.environ.setdefault(_key, _value)

from prefect import flow, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402

from pipeline.errors import PipelineError  # noqa: E402
from pipeline.evaluate import EvaluateRequest, run_evaluation  # noqa: E402
from pipeline.tracking import check_reachable, resolve_uri, run_info  # noqa: E402
from pipeline.train import TrainRequest, launch, resolve_config  # noqa: E402


def is_transient(task, task_run, state) -> bool:
    """Retry crashes and I/O hiccups, not problems the user must fix (bad params, missing inputs)."""
    del task, task_run
    return not isinstance(state.result(raise_on_failure=False), PipelineError)


@task(name="train", cache_policy=NO_CACHE, persist_result=False, retry_condition_fn=is_transient)
def train_task(request: TrainRequest) -> dict[str, Any]:
    """One training attempt; the trainer resumes from the last epoch checkpoint, so a retry continues."""
    return launch(request)


@flow(name="train-method", persist_result=False, validate_parameters=False)
def training_flow(request: TrainRequest) -> dict[str, Any]:
    train = resolve_config(request.method, request.params, request.tokenizer).train
    check_reachable(resolve_uri(train.tracking_uri))
    attempt = train_task.with_options(retries=train.retries, retry_delay_seconds=train.retry_delay_s)
    return attempt(request)


@task(name="evaluate", cache_policy=NO_CACHE, persist_result=False, retry_condition_fn=is_transient)
def evaluate_task(request: EvaluateRequest) -> dict[str, Any]:
    """Every metric of one trained method; outputs are written atomically, so a retry simply redoes it."""
    return run_evaluation(request)


@flow(name="evaluate-method", persist_result=False, validate_parameters=False)
def evaluation_flow(request: EvaluateRequest, retries: int = 1) -> dict[str, Any]:
    check_reachable(run_info(request.model)["tracking_uri"])
    return evaluate_task.with_options(retries=retries, retry_delay_seconds=5)(request)
