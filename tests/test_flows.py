"""Prefect training flow: the task wraps the trainer; a transient failure is retried and the retry resumes."""

from __future__ import annotations

import dataclasses
import json

import pytest
from test_train import build_tiny_project

import pipeline.training.run as train_module
from pipeline.errors import PipelineError
from pipeline.prefect_env import PREFECT_DEFAULTS, load_flows
from pipeline.tracking import TrackingError
from pipeline.training.config import TrainRequest, resolve_config

flows = load_flows()


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return build_tiny_project(tmp_path_factory.mktemp("flows"), method="clip", epochs=2)


def test_prefect_defaults_are_set_but_environment_wins():
    import os

    assert PREFECT_DEFAULTS["PREFECT_RESULTS_PERSIST_BY_DEFAULT"] == "false"
    for key in PREFECT_DEFAULTS:
        assert key in os.environ
    assert os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"


def test_task_function_calls_the_trainer(monkeypatch):
    seen = []
    monkeypatch.setattr(flows, "launch", lambda request, cfg: seen.append((request, cfg)) or {"ok": 1})
    request, cfg = TrainRequest("clip", out="x"), object()
    assert flows.train_task.fn(request, cfg) == {"ok": 1} and seen == [(request, cfg)]


def test_flow_retries_a_crash_in_epoch_two_and_resumes(project, monkeypatch, prefect_server):
    root, request = project
    monkeypatch.chdir(root)
    expected = train_module.launch(dataclasses.replace(request, out="models/reference"))

    real_loader, calls = train_module.create_train_loader, []

    def flaky_loader(shards, tokenizer, cfg, epoch, rank=0, world_size=1):
        calls.append(epoch)
        loader = real_loader(shards, tokenizer, cfg, epoch, rank, world_size)
        if epoch == 1 and calls.count(1) == 1:
            raise ConnectionError("transient: shard storage went away")
        return loader

    monkeypatch.setattr(train_module, "create_train_loader", flaky_loader)
    summary = flows.training_flow(request, resolve_config(request.method, request.params, request.tokenizer))
    assert summary == expected
    # epoch 0 trained once (the other two calls are length probes): the retry resumed at epoch 1
    assert calls.count(0) == 3 and calls.count(1) == 2
    run = json.loads((root / request.out / "run.json").read_text())
    state_run = json.loads((root / request.out / "state" / "mlflow_run.json").read_text())
    assert run["run_id"] == state_run["run_id"]


def test_user_errors_are_not_retried(project, monkeypatch, prefect_server):
    root, request = project
    monkeypatch.chdir(root)
    attempts = []

    def broken(req, cfg):
        attempts.append(req)
        raise PipelineError("shards index missing: run the shards stage")

    monkeypatch.setattr(flows, "launch", broken)
    with pytest.raises(PipelineError, match="shards stage"):
        flows.training_flow(request, resolve_config(request.method, request.params, request.tokenizer))
    assert len(attempts) == 1


def test_unreachable_tracking_server_fails_before_training(project, monkeypatch):
    root, request = project
    monkeypatch.chdir(root)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    monkeypatch.setattr(flows, "launch", lambda req, cfg: pytest.fail("training started"))
    with pytest.raises(TrackingError, match="unreachable"):
        flows.training_flow.fn(request, resolve_config(request.method, request.params, request.tokenizer))


def test_data_piece_runs_record_no_report_text(prefect_server):
    """Prefect stores flow-run parameters (and task-run inputs) in its database: the pieces' items, whose
    study rows carry report text, must not be among them."""
    import operator

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter

    from pipeline import parallel

    secret = "FINDINGS: small left apical pneumothorax"
    items = [{"path": f"p10/s{i}.jpg", "findings": f"{secret} {i}"} for i in range(3)]
    pieces = flows.pieces_flow(operator.itemgetter("path"), items, parallel.byte_build())
    state = pieces("shards train", len(items), return_state=True)
    assert [result for result, _, _ in state.result()] == [item["path"] for item in items]
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
        task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id={"any_": [run.id]}))
    assert len(task_runs) == len(items)
    assert run.parameters == {"desc": "shards train", "n_pieces": 3, "retries": 2}
    recorded = json.dumps([r.model_dump(mode="json") for r in [run, *task_runs]])
    assert secret not in recorded and "p10/s0.jpg" not in recorded
