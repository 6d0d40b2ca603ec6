"""MLflow tracking (the only module that imports mlflow): one run per method and training, with every
resolved parameter, per-step and per-epoch metrics, the git commit, input hashes from ``dvc.lock``, the
environment and the artifacts. Default store: ``sqlite:///mlflow.db`` in the project; browse it with
``mlflow ui --host 127.0.0.1 --backend-store-uri sqlite:///mlflow.db``.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import PipelineError
from pipeline.io import atomic_path, write_json, write_text

DEFAULT_URI = "sqlite:///mlflow.db"
RUN_FILE = "run.json"
STATE_RUN_FILE = "state/mlflow_run.json"


class TrackingError(PipelineError):
    """The tracking store cannot be used; the message says how to fix or bypass it."""


def resolve_uri(configured: str | None = None) -> str:
    return configured or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail at start, not after an epoch of MLflow's own retries, when a remote server is down."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as response:
            if response.status >= 400:
                raise OSError(f"HTTP {response.status}")
    except (OSError, urllib.error.URLError) as exc:
        raise TrackingError(
            f"MLflow tracking server {uri} is unreachable ({exc}). Start it (`mlflow server --host 127.0.0.1 "
            f"...`), fix train.tracking_uri / MLFLOW_TRACKING_URI, or unset both to use {DEFAULT_URI}"
        ) from exc


def artifact_root(uri: str) -> str | None:
    """Artifacts of a local SQLite store go next to the database, not into the working directory."""
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts").as_uri()
    return None


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested params → {"train.lr": "0.001", ...} (MLflow params are flat strings)."""
    flat: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat |= flatten(value, f"{name}.")
        else:
            flat[name] = json.dumps(value) if isinstance(value, list | tuple | dict) else str(value)
    return flat


def git_state(root: Path = Path(".")) -> dict[str, str]:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "HEAD")
    dirty = bool(git("status", "--porcelain", "--untracked-files=no")) if commit else False
    return {"git.commit": commit or "unknown", "git.dirty": str(dirty).lower()}


def input_hashes(paths: list[str], lock: Path = Path("dvc.lock")) -> dict[str, str]:
    """md5 recorded in dvc.lock for each input path (the outs of the stages that produced them)."""
    if not lock.is_file():
        return {}
    stages = (yaml.safe_load(lock.read_text(encoding="utf-8")) or {}).get("stages", {})
    wanted = {os.path.normpath(p) for p in paths}
    found: dict[str, str] = {}
    for stage in stages.values():
        for out in stage.get("outs", []):
            path = os.path.normpath(out.get("path", ""))
            if path in wanted and "md5" in out:
                found[f"input.{path}.md5"] = out["md5"]
    return found


def environment() -> dict[str, str]:
    import mlflow
    import torch

    cuda = torch.cuda.is_available()
    return {
        "env.python": platform.python_version(),
        "env.platform": platform.platform(),
        "env.torch": torch.__version__,
        "env.cuda": str(torch.version.cuda),
        "env.device": torch.cuda.get_device_name(0) if cuda else f"cpu ({os.cpu_count()} cores)",
        "env.mlflow": mlflow.__version__,
        "env.world_size": os.environ.get("WORLD_SIZE", "1"),
    }


class MlflowTracker:
    """Logs into one active MLflow run; the trainer calls `log_metrics`, the stage `finish`."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        import mlflow

        mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

    def finish(
        self, out: Path, history: list[dict[str, float]], files: list[Path], log_checkpoint: bool
    ) -> None:
        """Log the history plot, the summary `files` (metrics, history) and optionally the best checkpoint."""
        import mlflow

        if history:
            with atomic_path(out / "state" / "history.png", suffix=".png") as tmp:
                plot_history(history, tmp)
            mlflow.log_artifact(str(out / "state" / "history.png"), artifact_path="plots")
        for path in files:
            if path.is_file():
                mlflow.log_artifact(str(path))
        if log_checkpoint and (out / "best").is_dir():
            mlflow.log_artifacts(str(out / "best"), artifact_path="best")


def plot_history(history: list[dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(epochs, [r["train_loss"] for r in history], marker="o")
    left.set(xlabel="epoch", ylabel="training loss")
    for key in ("val_i2t_r10", "val_t2i_r10", "val_i2t_r1", "val_t2i_r1"):
        if key in history[0]:
            right.plot(epochs, [r[key] for r in history], marker="o", label=key.removeprefix("val_"))
    right.set(xlabel="epoch", ylabel="validation recall (%)")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)


def _resumable_run(out: Path, uri: str) -> str | None:
    """The run of an interrupted training of this output folder, to continue instead of starting anew."""
    import mlflow

    path = out / STATE_RUN_FILE
    if not path.is_file():
        return None
    saved = json.loads(path.read_text(encoding="utf-8"))
    if saved.get("tracking_uri") != uri:
        return None
    try:
        run = mlflow.get_run(saved["run_id"])
    except Exception:  # deleted run or another store: start a new one
        return None
    return run.info.run_id if run.info.status != "FINISHED" else None


@contextlib.contextmanager
def start_training_run(cfg: Any, request: Any, out: Path) -> Iterator[MlflowTracker]:
    """Open (or reopen, after a crash) the method's run and record parameters, tags and environment."""
    import mlflow

    uri = resolve_uri(cfg.train.tracking_uri)
    check_reachable(uri)
    os.environ.setdefault("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "false")
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.get_experiment_by_name(cfg.train.experiment)
    if experiment is None:
        experiment_id = mlflow.create_experiment(cfg.train.experiment, artifact_location=artifact_root(uri))
    else:
        experiment_id = experiment.experiment_id
    resumed = _resumable_run(out, uri)
    with mlflow.start_run(
        run_id=resumed, experiment_id=experiment_id, run_name=None if resumed else cfg.method
    ) as run:
        run_id = run.info.run_id
        record = {"run_id": run_id, "experiment_id": experiment_id, "tracking_uri": uri}
        write_json(out / STATE_RUN_FILE, record)
        write_json(out / RUN_FILE, record)
        if not resumed:
            mlflow.log_params(flatten(cfg.as_dict()))
            inputs = input_hashes([request.shards, request.tokenizer])
            mlflow.set_tags(
                {"method": cfg.method, "stage": "train", **git_state(), **inputs, **environment()}
            )
            config_path = out / "state" / "config.yaml"
            write_text(config_path, yaml.safe_dump(cfg.as_dict(), sort_keys=True))
            mlflow.log_artifact(str(config_path))
        else:
            mlflow.set_tag("resumed", "true")
        yield MlflowTracker(run_id)


def numeric_metrics(tree: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The numbers of a nested metrics dict under dotted names (strings and nulls are left out)."""
    flat: dict[str, float] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat |= numeric_metrics(value, f"{name}.")
        elif isinstance(value, int | float) and not isinstance(value, bool):
            flat[name] = float(value)
    return flat


def log_evaluation(
    run: Mapping[str, str], metrics: Mapping[str, Any], params: Mapping[str, Any], artifacts: list[Path]
) -> None:
    """Add evaluation metrics (prefixed ``eval.``), settings and figures to the method's training run, so
    MLflow shows training curves and evaluation results of one model in one place. Settings go in as tags:
    run params are immutable, and a re-evaluation with other settings must be able to replace them."""
    import mlflow

    check_reachable(run["tracking_uri"])
    mlflow.set_tracking_uri(run["tracking_uri"])
    with mlflow.start_run(run_id=run["run_id"]):
        mlflow.log_metrics(numeric_metrics(metrics, "eval."))
        mlflow.set_tags({**flatten(params, "evaluate."), "evaluated": "true"})
        for path in artifacts:
            if path.is_dir():
                mlflow.log_artifacts(str(path), artifact_path=f"evaluation/{path.name}")
            elif path.is_file():
                mlflow.log_artifact(str(path), artifact_path="evaluation")


def run_info(out: str | Path) -> dict[str, str]:
    """The training run of an output folder (what evaluation logs into)."""
    path = Path(out) / RUN_FILE
    if not path.is_file():
        raise TrackingError(f"{path}: no training run recorded (run the train stage first)")
    return json.loads(path.read_text(encoding="utf-8"))


if __name__ == "__main__":  # pragma: no cover - `python -m pipeline.tracking <uri>`: check a server
    check_reachable(resolve_uri(sys.argv[1] if len(sys.argv) > 1 else None))
