"""`dvc exp run --queue -S …` sweeps land as their own MLflow runs, tagged with their experiment's name, in
the project's default store, not in the temporary copy (``.dvc/tmp/exps/…``) DVC runs queued experiments in.
A scratch DVC project with one cheap stage stands in for the pipeline (real training is far too slow here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

STAGE_SCRIPT = """\
from pathlib import Path
from types import SimpleNamespace

import yaml

from pipeline.tracking import start_training_run

params = yaml.safe_load(Path("params.yaml").read_text())
train = SimpleNamespace(seed=params["seed"], tracking_uri=None, experiment="queue-test")
cfg = SimpleNamespace(method="toy", train=train, as_dict=lambda: params)
request = SimpleNamespace(shards="shards", tokenizer="tokenizer")
with start_training_run(cfg, request, Path("out")) as tracker:
    tracker.log_metrics({"lr": params["lr"]}, step=0)
"""

DVC_YAML = {
    "stages": {
        "toy": {
            "cmd": "python log_run.py",
            "deps": ["log_run.py"],
            "params": ["lr", "seed"],
            "outs": [{"out/run.json": {"cache": False}}],
        }
    }
}


def sh(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 60) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(args)}: {done.stdout[-1500:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture
def scratch(tmp_path):
    """A git + DVC project whose only stage starts an MLflow training run through `pipeline.tracking`."""
    root = tmp_path / "project"
    root.mkdir()
    bin_dir = str(Path(sys.executable).parent)  # `python` and the queue worker's `dvc` come from the venv
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_EXP", "DVC_ROOT"))}
    env |= {"PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", "DVC_NO_ANALYTICS": "1"}
    env |= {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@x",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@x",
    }
    (root / "log_run.py").write_text(STAGE_SCRIPT)
    (root / "params.yaml").write_text(yaml.safe_dump({"lr": 0.1, "seed": 1}))
    (root / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML, sort_keys=False))
    (root / ".gitignore").write_text("mlflow.db\nmlartifacts/\nout/state/\n")
    sh(["git", "init", "-q", "-b", "main"], root, env)
    sh(["dvc", "init", "-q"], root, env)
    sh(["git", "add", "-A"], root, env)
    sh(["git", "commit", "-q", "-m", "scratch"], root, env)
    yield root, env
    subprocess.run(["dvc", "queue", "stop"], cwd=root, env=env, capture_output=True, timeout=60)
    worker = root / ".dvc/tmp/exps/celery/dvc-exp-worker-1.json"  # the detached worker's record
    deadline = time.monotonic() + 30  # let it exit before its project folder goes away
    while worker.is_file() and json.loads(worker.read_text()).get("returncode") is None:
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)


@pytest.mark.slow
def test_queued_experiments_become_tagged_runs_in_the_projects_store(scratch):
    from mlflow import MlflowClient

    root, env = scratch
    for name, lr in (("exp-lr-a", 0.2), ("exp-lr-b", 0.3)):
        sh(["dvc", "exp", "run", "--queue", "-n", name, "-S", f"lr={lr}"], root, env)
    sh(["dvc", "exp", "run", "--run-all"], root, env, timeout=240)

    store = root / "mlflow.db"
    assert store.is_file(), "the queued runs did not reach the project's default store"
    client = MlflowClient(f"sqlite:///{store}")
    experiment = client.get_experiment_by_name("queue-test")
    runs = client.search_runs([experiment.experiment_id])
    by_name = {r.data.tags.get("dvc.exp_name"): r for r in runs}
    assert sorted(by_name) == ["exp-lr-a", "exp-lr-b"], [r.data.tags for r in runs]
    assert by_name["exp-lr-a"].data.params["lr"] == "0.2" and by_name["exp-lr-b"].data.params["lr"] == "0.3"
    assert all(r.info.status == "FINISHED" and r.info.run_name == "toy-seed1" for r in runs)
    assert experiment.artifact_location == (root / "mlartifacts").as_uri()  # next to the store, not in a copy
    assert not (root / "out").exists()  # queued runs leave the workspace alone
