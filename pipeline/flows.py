"""Prefect flows (the only module that imports prefect).

Prefect gives the training run retries and visibility; DVC decides staleness, so result caching and
persistence are off. Without ``PREFECT_API_URL`` Prefect starts a temporary local server for the run; with
it, runs appear in that server's UI (``prefect server start --host 127.0.0.1`` → http://127.0.0.1:4200).
Import it through `pipeline.prefect_env.load_flows`, which applies this project's Prefect settings first.

The data stages' pieces (shards, sections) run here as Prefect tasks on a Dask cluster only when the
environment asks for one (`pipeline.parallel`); the default process pool never starts Prefect.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from prefect import Flow, flow, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from prefect.settings import PREFECT_API_URL, temporary_settings
from tqdm import tqdm

from pipeline.errors import PipelineError
from pipeline.evaluation.params import EvaluateParams
from pipeline.evaluation.run import EvaluateRequest, run_evaluation
from pipeline.parallel import is_local_address, run_piece
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


@task(name="data-piece", cache_policy=NO_CACHE, persist_result=False, retry_condition_fn=is_transient)
def piece_task(
    fn: Callable[[Any], Any], item: Any, reference: dict[str, Any]
) -> tuple[Any, str, dict[str, Any]]:
    """One independent piece of a data stage (e.g. one shard), given paths, not bytes. Pieces write
    atomically under fixed names, so a retry (or Dask re-running it after its worker died) redoes it.
    Prefect records only references to upstream runs as a task run's inputs, never argument values."""
    return run_piece(fn, item, reference)


def pieces_flow(fn: Callable[[Any], Any], items: list, reference: dict[str, Any]) -> Flow:
    """The flow that runs `fn` on each of `items` as a task. The items stay here, on the driver: Prefect
    stores a flow run's parameters in its server's database, and the items (a shard's study rows) carry
    report text, so the flow's only parameters are the description and the number of pieces."""

    @flow(name="data-pieces", persist_result=False, validate_parameters=False)
    def data_pieces(desc: str, n_pieces: int, retries: int = 2) -> list:
        piece = piece_task.with_options(retries=retries, retry_delay_seconds=1)
        futures = [
            piece.with_options(task_run_name=f"{desc} #{i}").submit(fn, item, reference)
            for i, item in enumerate(items)
        ]
        position = {future.task_run_id: i for i, future in enumerate(futures)}
        results: dict[int, Any] = {}
        with tqdm(total=n_pieces, desc=desc, unit="piece", disable=None) as bar:
            for future in as_completed(futures):
                results[position[future.task_run_id]] = future.result()
                bar.update()
        return [results[i] for i in range(n_pieces)]

    return data_pieces


@contextlib.contextmanager
def shared_api(address: str) -> Iterator[None]:
    """Without ``PREFECT_API_URL`` every Dask worker process would start a temporary Prefect server of its
    own (30–60 s each, runs split over many databases). When the workers run on this host, start the
    driver's temporary server now and name it in the settings Prefect forwards to the workers. Workers on
    other hosts cannot reach its 127.0.0.1: there, set ``PREFECT_API_URL`` to a server they can reach."""
    if PREFECT_API_URL.value() or not is_local_address(address):
        yield
        return
    from prefect.server.api.server import SubprocessASGIServer  # the server's imports cost seconds

    server = SubprocessASGIServer()
    server.start()
    with temporary_settings({PREFECT_API_URL: server.api_url}):
        yield


def run_pieces_on_dask(
    address: str, fn: Callable[[Any], Any], items: list, desc: str, reference: dict[str, Any]
) -> list:
    """`pieces_flow` with its tasks on the Dask scheduler at `address` (`pipeline.parallel.ClusterMap`);
    every piece refuses a worker whose build differs from `reference` before it writes anything."""
    from prefect_dask import DaskTaskRunner  # imports dask/distributed: only for data stages on a cluster

    with shared_api(address):
        runner = DaskTaskRunner(address=address)
        return pieces_flow(fn, items, reference).with_options(task_runner=runner)(desc, len(items))
