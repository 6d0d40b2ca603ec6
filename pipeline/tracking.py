"""MLflow tracking (the only module that imports mlflow): one run per method, seed and training, with every
resolved parameter, per-step and per-epoch metrics, system metrics, the git commit, the inputs as MLflow
datasets (digest = their ``dvc.lock`` md5), the environment and the artifacts; one parent run per
comparison with the method × seed runs nested under it. Default store: ``sqlite:///mlflow.db`` in the
project root (also for ``dvc exp run --queue``, whose stages run in a temporary copy); browse it with
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
from pipeline.io import atomic_path, files_digest, folder_files, write_json, write_text

DEFAULT_URI = "sqlite:///mlflow.db"
RUN_FILE = "run.json"
STATE_RUN_FILE = "state/mlflow_run.json"
SYSTEM_METRICS_INTERVAL_S = 15  # psutil sampling of CPU, memory, disk, network (and GPU with nvidia-ml-py)
DIGEST_LENGTH = 32  # MLflow stores at most 36 characters: a DVC md5 ("….dir" included) or a cut sha256
SPLIT_CONTEXTS = ("train", "validate")  # the shard splits a training run reads, as MLflow dataset contexts


class TrackingError(PipelineError):
    """The tracking store cannot be used; the message says how to fix or bypass it."""


def resolve_uri(configured: str | None = None) -> str:
    """`configured`, else ``MLFLOW_TRACKING_URI``, else the project's ``mlflow.db``. A relative SQLite path
    means the DVC project root: `dvc exp run --queue`/`--temp` runs stages in a temporary copy
    (``.dvc/tmp/exps/…``, deleted afterwards) and sets ``DVC_ROOT`` to the original project for them."""
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI
    path = uri.removeprefix("sqlite:///")
    root = os.environ.get("DVC_ROOT")
    if path == uri or not path or path.startswith("/") or path.startswith(":memory:") or not root:
        return uri
    root_dir = Path(root).resolve()
    if root_dir == Path.cwd().resolve():  # the workspace itself: keep the portable relative form
        return uri
    return f"sqlite:///{root_dir / path}"


def dvc_experiment() -> dict[str, str]:
    """The ``dvc.exp_name`` tag inside `dvc exp run` (DVC sets ``DVC_EXP_NAME`` for its stage commands)."""
    name = os.environ.get("DVC_EXP_NAME", "")
    return {"dvc.exp_name": name} if name else {}


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


def dataset_inputs(shards: str, tokenizer: str, lock: Path = Path("dvc.lock")) -> list[dict[str, Any]]:
    """What a training run reads, as MLflow dataset descriptions: names, paths, digests and counts only,
    never report text or images. The digest is the ``dvc.lock`` md5 of the stage output, so runs on
    identical data share it; without a lock entry, a sha256 of the split's shard index (tokenizer: its
    files)."""
    from pipeline.shards.reader import INDEX_FILE

    hashes = input_hashes([shards, tokenizer], lock)
    found: list[dict[str, Any]] = []
    for split in SPLIT_CONTEXTS:
        index = Path(shards) / split / INDEX_FILE
        if not index.is_file():
            continue
        meta = json.loads(index.read_text(encoding="utf-8"))
        found.append(
            _dataset(f"shards-{split}", Path(shards) / split, split, hashes.get(_lock_key(shards)), [index])
            | {"profile": {"samples": meta.get("n_samples"), "shards": len(meta.get("shards", []))}}
        )
    if Path(tokenizer).is_dir():
        files = folder_files(tokenizer)
        found.append(
            _dataset("tokenizer", Path(tokenizer), "train", hashes.get(_lock_key(tokenizer)), files)
            | {"profile": {"files": len(files)}}
        )
    return found


def _lock_key(path: str) -> str:
    return f"input.{os.path.normpath(path)}.md5"


def _dataset(name: str, source: Path, context: str, md5: str | None, files: list[Path]) -> dict[str, Any]:
    digest, kind = (md5, "dvc-md5") if md5 else (files_digest(files)[:DIGEST_LENGTH], "sha256")
    return {"name": name, "source": str(source), "context": context, "digest": digest, "digest_kind": kind}


def log_datasets(specs: list[dict[str, Any]]) -> None:
    """`dataset_inputs` into the active run: the MLflow UI's Dataset column and dataset drawer."""
    import mlflow
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.data.sources import LocalArtifactDatasetSource

    class InputDataset(MetaDataset):
        def __init__(self, spec: dict[str, Any]) -> None:
            super().__init__(LocalArtifactDatasetSource(spec["source"]), spec["name"], spec["digest"])
            self._profile = spec.get("profile")

        @property
        def profile(self) -> Any:
            return self._profile

        def to_dict(self) -> dict[str, str]:
            return super().to_dict() | ({"profile": json.dumps(self._profile)} if self._profile else {})

    for spec in specs:
        mlflow.log_input(InputDataset(spec), context=spec["context"], tags={"digest": spec["digest_kind"]})


def system_metrics_enabled() -> bool:
    """On unless ``MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING`` says otherwise (e.g. ``false`` for a quiet test)."""
    value = os.environ.get("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "true")
    return value.strip().lower() in {"1", "true", "yes", "on"}


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


def _experiment_id(name: str, uri: str) -> str:
    import mlflow

    experiment = mlflow.get_experiment_by_name(name)
    if experiment is None:
        return mlflow.create_experiment(name, artifact_location=artifact_root(uri))
    return experiment.experiment_id


@contextlib.contextmanager
def start_training_run(cfg: Any, request: Any, out: Path) -> Iterator[MlflowTracker]:
    """Open (or reopen, after a crash) the method's run and record parameters, tags, inputs and
    environment; system metrics (``system/*``) are sampled every `SYSTEM_METRICS_INTERVAL_S` seconds."""
    import mlflow

    uri = resolve_uri(cfg.train.tracking_uri)
    check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    os.environ.setdefault("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", str(SYSTEM_METRICS_INTERVAL_S))
    experiment_id = _experiment_id(cfg.train.experiment, uri)
    resumed = _resumable_run(out, uri)
    seed = cfg.train.seed
    with mlflow.start_run(
        run_id=resumed,
        experiment_id=experiment_id,
        run_name=None if resumed else f"{cfg.method}-seed{seed}",
        log_system_metrics=system_metrics_enabled(),
    ) as run:
        run_id = run.info.run_id
        record = {"run_id": run_id, "experiment_id": experiment_id, "tracking_uri": uri}
        write_json(out / STATE_RUN_FILE, record)
        write_json(out / RUN_FILE, record)
        if not resumed:
            mlflow.log_params(flatten(cfg.as_dict()))
            inputs = input_hashes([request.shards, request.tokenizer])
            tags = {"method": cfg.method, "seed": str(seed), "stage": "train", **dvc_experiment()}
            mlflow.set_tags(tags | git_state() | inputs | environment())
            log_datasets(dataset_inputs(request.shards, request.tokenizer))
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
    with mlflow.start_run(run_id=run["run_id"], log_system_metrics=False):
        mlflow.log_metrics(numeric_metrics(metrics, "eval."))
        mlflow.set_tags({**flatten(params, "evaluate."), "evaluated": "true"})
        for path in artifacts:
            if path.is_dir():
                mlflow.log_artifacts(str(path), artifact_path=f"evaluation/{path.name}")
            elif path.is_file():
                mlflow.log_artifact(str(path), artifact_path="evaluation")


def comparison_metrics(comparison: Mapping[str, Any]) -> dict[str, float]:
    """The numbers of ``compare.json`` under flat names: ``<metric>.<method>.{mean,sd,low,high}`` and
    ``pairs.<metric>.<a>-vs-<b>.{delta,low,high,p,p_holm}``; undefined values (sd of one seed) left out."""
    flat: dict[str, float] = {}
    for method, block in comparison.get("methods", {}).items():
        for metric, summary in block.get("metrics", {}).items():
            for key in ("mean", "sd", "low", "high"):
                flat[f"{metric}.{method}.{key}"] = summary.get(key)
    for metric, rows in comparison.get("pairs", {}).items():
        for row in rows:
            for key in ("delta", "low", "high", "p", "p_holm"):
                flat[f"pairs.{metric}.{row['a']}-vs-{row['b']}.{key}"] = row.get(key)
    return {k: float(v) for k, v in flat.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def log_comparison(
    comparison: Mapping[str, Any], runs: Mapping[str, list[Mapping[str, str]]], experiment: str,
    tracking_uri: str | None = None,
) -> str:  # fmt: skip
    """One parent run per comparison (numbers as metrics, ``compare.json`` as artifact) with every method ×
    seed training run (`runs`: method → run.json records) nested under it via ``mlflow.parentRunId``. A run
    reused by a later comparison moves under the latest parent; each parent's ``comparison.child_runs``
    still names its own. `tracking_uri` None: the store the runs were recorded in. Runs missing from the
    store are left out with a warning (all missing: wrong store, an error). Returns the parent run id."""
    import mlflow

    records = [(method, record) for method, method_runs in runs.items() for record in method_runs]
    uri = resolve_uri(tracking_uri or next((r.get("tracking_uri") for _, r in records), None))
    check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient(uri)
    children = [r["run_id"] for _, r in records if _run_exists(client, r["run_id"])]
    missing = [f"{m}:{r['run_id']}" for m, r in records if r["run_id"] not in children]
    if records and not children:
        raise TrackingError(
            f"none of the {len(records)} training runs (e.g. {missing[0]}) is in {uri}; set "
            f"MLFLOW_TRACKING_URI (or train.tracking_uri) to the store they were trained into, or retrain"
        )
    if missing:  # e.g. a wiped store with cached models: the comparison is still worth recording
        print(f"warning: training runs not in {uri}, left out: {', '.join(missing)}", file=sys.stderr)
    methods, seeds = list(comparison.get("methods", runs)), list(comparison.get("seeds", []))
    tags = {
        "stage": "compare",
        "methods": ",".join(methods),
        "seeds": ",".join(str(s) for s in seeds),
        "comparison.child_runs": ",".join(children),
        **({"comparison.missing_runs": ",".join(missing)} if missing else {}),
        **dvc_experiment(),
        **git_state(),
    }
    with mlflow.start_run(
        experiment_id=_experiment_id(experiment, uri),
        run_name=f"compare-{len(methods)}x{len(seeds)}",
        tags=tags,
        log_system_metrics=False,
    ) as parent:
        mlflow.log_params(
            flatten(comparison.get("bootstrap", {}), "bootstrap.")
            | {"n_studies": str(comparison.get("n_studies"))}
        )
        mlflow.log_metrics(comparison_metrics(comparison))
        mlflow.log_dict(dict(comparison), "compare.json")
        mlflow.log_dict({m: [dict(r) for r in rs] for m, rs in runs.items()}, "runs.json")
        parent_id = parent.info.run_id
    for run_id in children:
        client.set_tag(run_id, "mlflow.parentRunId", parent_id)
    return parent_id


def _run_exists(client: Any, run_id: str) -> bool:
    try:
        client.get_run(run_id)
    except Exception:  # MlflowException RESOURCE_DOES_NOT_EXIST (or a malformed id)
        return False
    return True


def run_info(out: str | Path) -> dict[str, str]:
    """The training run of an output folder (what evaluation logs into)."""
    path = Path(out) / RUN_FILE
    if not path.is_file():
        raise TrackingError(f"{path}: no training run recorded (run the train stage first)")
    return json.loads(path.read_text(encoding="utf-8"))


if __name__ == "__main__":  # pragma: no cover - `python -m pipeline.tracking <uri>`: check a server
    check_reachable(resolve_uri(sys.argv[1] if len(sys.argv) > 1 else None))
