"""MLflow tracking: parameters, metrics, tags, datasets and artifacts of a real tiny training on shards; the
comparison's parent run; the store of queued DVC experiments; failures."""

from __future__ import annotations

import dataclasses
import json
import socket
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from test_comparison import compare, random_table
from test_data_use_safety import assert_clean, sensitive_values
from test_train import build_tiny_project

from pipeline.io import files_digest, folder_digest, write_json
from pipeline.tracking import (
    TrackingError,
    check_reachable,
    comparison_metrics,
    dataset_inputs,
    dvc_experiment,
    flatten,
    input_hashes,
    log_comparison,
    resolve_uri,
    run_info,
    start_training_run,
)
from pipeline.training.run import run_training


def test_flatten_nests_with_dots_and_keeps_lists_readable():
    flat = flatten({"train": {"lr": 0.001, "loader": {}}, "model": {"image": {"pool": "avg"}}, "m": [1, 2]})
    assert flat == {"train.lr": "0.001", "train.loader": "{}", "model.image.pool": "avg", "m": "[1, 2]"}


def test_uri_precedence(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    assert resolve_uri(None) == "sqlite:///mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///x.db")
    assert resolve_uri(None) == "sqlite:///x.db" and resolve_uri("http://h:1") == "http://h:1"


def test_a_relative_store_is_the_dvc_projects_even_from_a_queued_experiments_copy(tmp_path, monkeypatch):
    project, copy = tmp_path / "project", tmp_path / "project" / ".dvc" / "tmp" / "exps" / "tmpab12"
    copy.mkdir(parents=True)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DVC_ROOT", str(project))
    monkeypatch.chdir(copy)  # where `dvc exp run --queue` runs the stage command
    assert resolve_uri(None) == f"sqlite:///{project}/mlflow.db"
    assert resolve_uri("sqlite:///stores/x.db") == f"sqlite:///{project}/stores/x.db"
    for fixed in ("sqlite:////abs/m.db", "http://127.0.0.1:5000", "sqlite:///:memory:"):
        assert resolve_uri(fixed) == fixed
    monkeypatch.chdir(project)  # `dvc repro` / `dvc exp run` in the workspace: keep the portable form
    assert resolve_uri(None) == "sqlite:///mlflow.db"


def test_dvc_experiment_name_becomes_a_tag(monkeypatch):
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    assert dvc_experiment() == {}
    monkeypatch.setenv("DVC_EXP_NAME", "sappy-pita")
    assert dvc_experiment() == {"dvc.exp_name": "sappy-pita"}


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


def fake_inputs(root: Path) -> None:
    """Shard indexes of two splits and a tokenizer folder, as the training stage reads them."""
    for split, n in (("train", 12), ("validate", 5)):
        write_json(root / "data/shards" / split / "index.json", {"n_samples": n, "shards": [{}, {}]})
    write_json(root / "models/tokenizer/tokenizer.json", {"model": "wordpiece"})


LOCK = {
    "schema": "2.0",
    "stages": {
        "shards": {"outs": [{"path": "data/shards", "md5": "0123456789abcdef0123456789abcdef.dir"}]},
        "tokenizer": {"outs": [{"path": "models/tokenizer", "md5": "fedcba9876543210fedcba9876543210.dir"}]},
    },
}


def test_datasets_carry_the_dvc_lock_md5_or_a_sha256_of_the_shard_index(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fake_inputs(tmp_path)
    Path("dvc.lock").write_text(yaml.safe_dump(LOCK))
    found = {d["name"]: d for d in dataset_inputs("data/shards", "models/tokenizer")}
    assert found["shards-train"] == {
        "name": "shards-train", "source": "data/shards/train", "context": "train",
        "digest": "0123456789abcdef0123456789abcdef.dir", "digest_kind": "dvc-md5",
        "profile": {"samples": 12, "shards": 2},
    }  # fmt: skip
    assert (
        found["shards-validate"]["context"] == "validate"
        and found["shards-validate"]["profile"]["samples"] == 5
    )
    assert found["tokenizer"]["digest"] == "fedcba9876543210fedcba9876543210.dir"
    Path("dvc.lock").unlink()  # e.g. shards built outside DVC: the bytes still identify them
    found = {d["name"]: d for d in dataset_inputs("data/shards", "models/tokenizer")}
    index = tmp_path / "data/shards/validate/index.json"
    assert found["shards-validate"]["digest"] == files_digest([index])[:32]
    assert found["tokenizer"]["digest"] == folder_digest(tmp_path / "models/tokenizer")[:32]
    assert {d["digest_kind"] for d in found.values()} == {"sha256"}
    assert dataset_inputs("nowhere", "none") == []


def fake_cfg(method: str, seed: int, uri: str, experiment: str = "tests-fake") -> SimpleNamespace:
    """What `start_training_run` reads of a resolved configuration, without resolving a real one."""
    train = SimpleNamespace(seed=seed, tracking_uri=uri, experiment=experiment)
    return SimpleNamespace(method=method, train=train, as_dict=lambda: {"method": method, "seed": seed})


def fake_run(tmp_path: Path, method: str, seed: int, uri: str) -> dict[str, str]:
    request = SimpleNamespace(shards="data/shards", tokenizer="models/tokenizer")
    out = tmp_path / "models" / method / f"seed{seed}"
    with start_training_run(fake_cfg(method, seed, uri), request, out):
        pass
    return run_info(out)


def test_a_crashed_run_resumes_with_its_system_metrics(tmp_path, monkeypatch):
    import mlflow

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "true")
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")
    uri, out = f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "out"
    request = SimpleNamespace(shards="data/shards", tokenizer="models/tokenizer")
    with pytest.raises(KeyboardInterrupt), start_training_run(fake_cfg("clip", 1, uri), request, out):
        time.sleep(1.0)
        raise KeyboardInterrupt  # a killed training: the run stays unfinished
    first = run_info(out)["run_id"]
    client = mlflow.MlflowClient(uri)
    steps = [m.step for m in client.get_metric_history(first, "system/cpu_utilization_percentage")]
    assert steps and client.get_run(first).info.status != "FINISHED"
    with start_training_run(fake_cfg("clip", 1, uri), request, out) as tracker:
        time.sleep(1.0)
    run = client.get_run(first)
    assert tracker.run_id == first and run.info.status == "FINISHED" and run.data.tags["resumed"] == "true"
    later = [m.step for m in client.get_metric_history(first, "system/cpu_utilization_percentage")]
    assert len(later) > len(steps) and len(set(later)) == len(later)  # resumed steps continue, no overlap


def test_comparison_is_a_parent_run_with_every_method_and_seed_nested(tmp_path, monkeypatch):
    import mlflow

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "false")
    monkeypatch.setenv("DVC_EXP_NAME", "tuned-tau")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    methods, seeds = ["clip", "cxrclip"], [42, 43]
    runs = {m: [fake_run(tmp_path, m, s, uri) for s in seeds] for m in methods}
    comparison = compare({m: [random_table(10 * i + s) for s in seeds] for i, m in enumerate(methods)})
    comparison["seeds"] = seeds
    parent_id = log_comparison(comparison, runs, "tests-fake", None)  # None: the runs' own store

    client = mlflow.MlflowClient(uri)
    parent = client.get_run(parent_id)
    tags, metrics = parent.data.tags, parent.data.metrics
    assert parent.info.run_name == "compare-2x2" and parent.info.status == "FINISHED"
    assert tags["stage"] == "compare" and tags["dvc.exp_name"] == "tuned-tau" and "git.commit" in tags
    assert tags["methods"] == "clip,cxrclip" and tags["seeds"] == "42,43"
    rsum = comparison["methods"]["clip"]["metrics"]["rsum"]
    assert metrics["rsum.clip.mean"] == pytest.approx(rsum["mean"])
    assert metrics["rsum.cxrclip.low"] <= metrics["rsum.cxrclip.mean"] <= metrics["rsum.cxrclip.high"]
    pair = comparison["pairs"]["rsum"][0]
    assert metrics["pairs.rsum.clip-vs-cxrclip.p_holm"] == pytest.approx(pair["p_holm"])
    assert metrics["pairs.rsum.clip-vs-cxrclip.delta"] == pytest.approx(pair["delta"])
    assert comparison_metrics(comparison).keys() == metrics.keys()
    logged = json.loads(Path(client.download_artifacts(parent_id, "compare.json", str(tmp_path))).read_text())
    assert logged == comparison
    children = [r["run_id"] for m in methods for r in runs[m]]
    for child in children:
        child_run = client.get_run(child)
        assert child_run.data.tags["mlflow.parentRunId"] == parent_id
        assert child_run.data.tags["dvc.exp_name"] == "tuned-tau" and child_run.info.experiment_id == (
            parent.info.experiment_id
        )
    assert {client.get_run(c).data.tags["seed"] for c in children} == {"42", "43"}

    later = log_comparison(comparison, {"clip": runs["clip"]}, "tests-fake", uri)  # a re-run of compare
    assert client.get_run(children[0]).data.tags["mlflow.parentRunId"] == later
    assert client.get_run(children[-1]).data.tags["mlflow.parentRunId"] == parent_id
    assert client.get_run(parent_id).data.tags["comparison.child_runs"] == ",".join(children)


def test_comparison_fails_clearly_on_the_wrong_store_or_an_unreachable_server(tmp_path):
    runs = {
        "clip": [{"run_id": "0" * 32, "experiment_id": "0", "tracking_uri": f"sqlite:///{tmp_path}/m.db"}]
    }
    with pytest.raises(
        TrackingError, match=r"none of the 1 training runs \(e.g. clip:0+\) is in sqlite:///.*m.db"
    ):
        log_comparison({"methods": {}, "seeds": [42]}, runs, "tests-fake", None)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(TrackingError, match="unreachable"):
        log_comparison({"methods": {}, "seeds": []}, runs, "tests-fake", f"http://127.0.0.1:{port}")


def test_comparison_leaves_out_runs_the_store_no_longer_has(tmp_path, monkeypatch, capsys):
    import mlflow

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "false")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    kept = fake_run(tmp_path, "clip", 42, uri)
    gone = kept | {"run_id": "f" * 32}
    parent_id = log_comparison({"methods": {}, "seeds": [42, 43]}, {"clip": [kept, gone]}, "tests-fake", uri)
    tags = mlflow.MlflowClient(uri).get_run(parent_id).data.tags
    assert (
        tags["comparison.child_runs"] == kept["run_id"]
        and tags["comparison.missing_runs"] == f"clip:{'f' * 32}"
    )
    assert f"warning: training runs not in {uri}, left out: clip:{'f' * 32}" in capsys.readouterr().err


@pytest.fixture(scope="module")
def tiny_project(tmp_path_factory):
    return build_tiny_project(tmp_path_factory.mktemp("project"))


def test_training_run_is_recorded(tiny_project, monkeypatch):
    import mlflow

    root, request = tiny_project
    monkeypatch.chdir(root)
    monkeypatch.setenv("DVC_EXP_NAME", "lean-moss")
    monkeypatch.setenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "true")
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.5")
    lock = {
        "stages": {"shards": {"outs": [{"path": "shards", "md5": "0123456789abcdef0123456789abcdef.dir"}]}}
    }
    (root / "dvc.lock").write_text(yaml.safe_dump(lock))
    request = dataclasses.replace(request, shards="shards", tokenizer="tokenizer", seed=7)
    try:
        summary = run_training(request)
    finally:
        (root / "dvc.lock").unlink()
    out = root / request.out
    info = run_info(out)
    assert json.loads((out / "metrics.json").read_text()) == summary
    mlflow.set_tracking_uri(info["tracking_uri"])
    run = mlflow.get_run(info["run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == "medprobclip-seed7"
    params, tags, metrics = run.data.params, run.data.tags, run.data.metrics
    assert params["train.epochs"] == "2" and params["losses.medprobclip.lambda_text"] == "0.1"
    assert params["model.image.pool"] == "avg" and params["train.seed"] == "7"
    assert tags["method"] == "medprobclip" and "env.torch" in tags and "git.commit" in tags
    assert (
        tags["seed"] == "7"
        and tags["dvc.exp_name"] == "lean-moss"
        and tags["mlflow.runName"] == run.info.run_name
    )
    inputs = {
        (d.dataset.name, tag_value(d, "mlflow.data.context")): d.dataset for d in run.inputs.dataset_inputs
    }
    assert inputs.keys() == {
        ("shards-train", "train"),
        ("shards-validate", "validate"),
        ("tokenizer", "train"),
    }
    assert inputs["shards-train", "train"].digest == "0123456789abcdef0123456789abcdef.dir"  # from dvc.lock
    assert inputs["tokenizer", "train"].digest == folder_digest(root / "tokenizer")[:32]  # no lock entry
    assert json.loads(inputs["shards-validate", "validate"].profile) == {"samples": 8, "shards": 2}
    ids, phrases = sensitive_values(root)  # names, paths, digests and counts only: no report text or ids
    for dataset in inputs.values():
        assert_clean(f"dataset {dataset.name}", json.dumps(dataset.to_dictionary()), ids, phrases)
    assert (
        "system/cpu_utilization_percentage" in metrics and "system/system_memory_usage_megabytes" in metrics
    )
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


def tag_value(dataset_input, key: str) -> str:
    return next(t.value for t in dataset_input.tags if t.key == key)
