"""MLflow tracking: parameters, metrics, tags and artifacts of a real tiny training on shards; failures."""

from __future__ import annotations

import json
import socket
import time

import pytest
import yaml
from test_train import build_tiny_project

from pipeline.tracking import (
    TrackingError,
    check_reachable,
    flatten,
    input_hashes,
    resolve_uri,
    run_info,
)
from pipeline.train import run_training


def test_flatten_nests_with_dots_and_keeps_lists_readable():
    flat = flatten({"train": {"lr": 0.001, "loader": {}}, "model": {"image": {"pool": "avg"}}, "m": [1, 2]})
    assert flat == {"train.lr": "0.001", "train.loader": "{}", "model.image.pool": "avg", "m": "[1, 2]"}


def test_uri_precedence(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_uri(None) == "sqlite:///mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///x.db")
    assert resolve_uri(None) == "sqlite:///x.db" and resolve_uri("http://h:1") == "http://h:1"


def test_unreachable_server_fails_fast_with_a_fix():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(TrackingError, match="unreachable.*unset both"):
        check_reachable(f"http://127.0.0.1:{port}", timeout=2.0)
    assert time.monotonic() - start < 5
    check_reachable("sqlite:///anything.db")  # local stores need no server


def test_input_hashes_come_from_dvc_lock(tmp_path):
    lock = tmp_path / "dvc.lock"
    lock.write_text(
        yaml.safe_dump(
            {
                "schema": "2.0",
                "stages": {
                    "shards": {"outs": [{"path": "data/shards", "md5": "abc.dir"}]},
                    "tokenizer": {
                        "outs": [{"path": "models/tokenizer", "md5": "def.dir"}, {"path": "x", "md5": "0"}]
                    },
                },
            }
        )
    )
    assert input_hashes(["data/shards", "models/tokenizer/"], lock) == {
        "input.data/shards.md5": "abc.dir",
        "input.models/tokenizer.md5": "def.dir",
    }
    assert input_hashes(["data/shards"], tmp_path / "missing.lock") == {}


@pytest.fixture(scope="module")
def tiny_project(tmp_path_factory):
    return build_tiny_project(tmp_path_factory.mktemp("project"))


def test_training_run_is_recorded(tiny_project, monkeypatch):
    import mlflow

    root, request = tiny_project
    monkeypatch.chdir(root)
    summary = run_training(request)
    out = root / request.out
    info = run_info(out)
    assert json.loads((out / "metrics.json").read_text()) == summary
    mlflow.set_tracking_uri(info["tracking_uri"])
    run = mlflow.get_run(info["run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == "medprobclip"
    params, tags, metrics = run.data.params, run.data.tags, run.data.metrics
    assert params["train.epochs"] == "2" and params["losses.medprobclip.lambda_text"] == "0.1"
    assert params["model.image.pool"] == "avg"
    assert tags["method"] == "medprobclip" and "env.torch" in tags and "git.commit" in tags
    assert {
        "train_loss",
        "train_inter",
        "lr",
        "a",
        "b",
        "train_sigma2_image",
        "train_sigma2_text",
    } <= metrics.keys()
    assert {"val_rsum", "val_i2t_r10", "val_t2i_r1", "epoch_train_loss", "epoch_lr"} <= metrics.keys()
    client = mlflow.MlflowClient()
    steps = client.get_metric_history(info["run_id"], "train_loss")
    assert len(steps) >= 2 and [m.step for m in client.get_metric_history(info["run_id"], "val_rsum")] == [
        1,
        2,
    ]
    artifacts = {a.path for a in client.list_artifacts(info["run_id"])}
    assert {"config.yaml", "metrics.json", "history.csv", "plots", "best"} <= artifacts
