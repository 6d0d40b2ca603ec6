"""The library trainer: params → model, loss, loaders → `Trainer.fit` → best checkpoint, metrics, history.

`run_training` is what one process runs (rank-aware under torchrun); `launch` runs it in-process or starts
torchrun for `train.nproc_per_node × train.nnodes > 1`. Outputs in `out` (written by rank 0):
``best/`` (see `export_best`), ``metrics.json`` (best-epoch validation metrics), ``history.csv`` (one row per
epoch) and ``run.json`` (the MLflow run, for evaluation to log into). ``state/`` holds the resume files.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from pipeline.config import ConfigError, read_params, suggest
from pipeline.data import create_eval_loader, create_train_loader
from pipeline.errors import PipelineError, run_cli
from pipeline.io import files_digest, folder_digest, folder_files, write_csv, write_json
from pipeline.losses import create_loss, loss_config
from pipeline.models import ModelConfig, create_model, load_tokenizer, model_params
from pipeline.training import distributed as ddp
from pipeline.training.checkpoint import export_best
from pipeline.training.loop import Progress, Trainer
from pipeline.training.params import TrainParams, create_loader_config, train_params

METHODS = ("clip", "cxrclip", "pcmepp", "medprobclip", "mcsl")
PACKAGE_DIR = Path(__file__).resolve().parent
# Settings that change how a run is watched, not what it computes: excluded from the resume fingerprint.
UNTRACKED = (
    "progress",
    "log_every",
    "retries",
    "retry_delay_s",
    "experiment",
    "tracking_uri",
    "log_checkpoint",
)


@dataclass(frozen=True)
class TrainRequest:
    method: str
    params: str = "params.yaml"
    shards: str = "data/shards"
    tokenizer: str = "models/tokenizer"
    out: str = "models/clip"
    metrics: str | None = None  # None: <out>/metrics.json
    history: str | None = None  # None: <out>/history.csv

    @property
    def metrics_path(self) -> Path:
        return Path(self.metrics) if self.metrics else Path(self.out) / "metrics.json"

    @property
    def history_path(self) -> Path:
        return Path(self.history) if self.history else Path(self.out) / "history.csv"

    def argv(self) -> list[str]:
        args = [self.method, "--params", self.params, "--shards", self.shards, "--tokenizer", self.tokenizer]
        args += ["--out", self.out, "--metrics", str(self.metrics_path), "--history", str(self.history_path)]
        return args


@dataclass(frozen=True)
class ResolvedConfig:
    """Everything a run depends on, resolved from params.yaml (what MLflow records as parameters)."""

    method: str
    train: TrainParams  # the shared section with the method's own `train` overrides applied
    method_cfg: Any
    model: ModelConfig
    train_overrides: dict[str, Any] = dataclasses.field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        method_block = dataclasses.asdict(self.method_cfg)
        if self.train_overrides:
            method_block["train"] = dict(self.train_overrides)
        return {
            "method": self.method,
            "train": dataclasses.asdict(self.train),
            "losses": {self.method: method_block},
            "model": dataclasses.asdict(self.model),
        }


def resolve_config(
    method: str, params_path: str | Path, tokenizer: str | Path | None = None
) -> ResolvedConfig:
    if method not in METHODS:
        raise ConfigError(f"unknown method '{method}'; choose one of {METHODS}")
    params = read_params(params_path)
    for name in params.get("losses") or {}:
        if name not in METHODS:
            raise ConfigError(
                f"{params_path}:losses: unknown method '{name}'{suggest(str(name), METHODS)}; "
                f"the methods are {list(METHODS)}"
            )
    block, where = method_block(params, method)
    block, overrides = split_train_overrides(block, f"{params_path}:{where}")
    train = train_params({**(params.get("train") or {}), **overrides}, f"{params_path}:train")
    models = model_params(params.get("model"), f"{params_path}:model")
    profile = train.profile or models.profile
    if profile not in {f.name for f in dataclasses.fields(models)} - {"profile"}:
        raise ConfigError(f"{params_path}:train.profile: unknown profile '{profile}'")
    model = getattr(models, profile)
    if tokenizer is not None and model.text.name_or_path is None:  # our own vocabulary (tiny profile)
        model = dataclasses.replace(model, text=dataclasses.replace(model.text, tokenizer=str(tokenizer)))
    method_cfg = loss_config(method, block, f"{params_path}:{where}")
    return ResolvedConfig(method, train, method_cfg, model, overrides)


def method_block(params: dict[str, Any], method: str) -> tuple[dict | None, str]:
    """The method's params block: ``losses.<method>`` (or a top-level ``<method>`` section)."""
    if isinstance(params.get("losses"), dict) and method in params["losses"]:
        return params["losses"][method], f"losses.{method}"
    return params.get(method), method


def split_train_overrides(block: Any, where: str) -> tuple[Any, dict[str, Any]]:
    """(loss settings, the method's ``train`` overrides): methods learn best at different learning rates
    (the papers tune each), and keeping the override in the method's block keeps DVC's staleness exact."""
    if not isinstance(block, dict) or "train" not in block:
        return block, {}
    block = dict(block)
    overrides = block.pop("train") or {}
    if not isinstance(overrides, dict):
        raise ConfigError(f"{where}.train: expected a mapping of train settings, got {overrides!r}")
    train_params(overrides, f"{where}.train")  # unknown keys and bad values are named where they are
    return block, overrides


def input_digest(shards: Path, tokenizer: Path) -> str:
    """Hash of the shard indexes (which carry every shard's sha256) and the tokenizer files."""
    return files_digest(sorted(shards.glob("*/index.json")) + folder_files(tokenizer))


def code_digest(package: Path = PACKAGE_DIR) -> str:
    """Hash of the library's source: a checkpoint left by other code (a changed loss, say) is not resumed."""
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()


def fingerprint(cfg: ResolvedConfig, inputs: str) -> str:
    """What a resume checkpoint must match: the resolved config, the input data and the library code."""
    resolved = cfg.as_dict()
    resolved["train"] = {k: v for k, v in resolved["train"].items() if k not in UNTRACKED}
    text = json.dumps(
        {"config": resolved, "inputs": inputs, "code": code_digest()}, sort_keys=True, default=str
    )
    return hashlib.sha256(text.encode()).hexdigest()


def choose_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", ddp.current().local_rank)
    return torch.device("cpu")


def check_inputs(shards: Path) -> None:
    for split in ("train", "validate"):
        if not (shards / split / "index.json").is_file():
            raise PipelineError(f"{shards / split}: no shards index (run the `shards` stage first)")


def build_trainer(request: TrainRequest, cfg: ResolvedConfig, tracker=None) -> Trainer:
    shards, out = Path(request.shards), Path(request.out)
    check_inputs(shards)
    info, device = ddp.current(), choose_device()
    tokenizer = load_tokenizer(cfg.model.text)
    if len(tokenizer) > cfg.model.text.vocab_size and cfg.model.text.name_or_path is None:
        raise ConfigError(
            f"tokenizer has {len(tokenizer)} tokens but model.{cfg.train.profile}.text.vocab_size is "
            f"{cfg.model.text.vocab_size}; raise vocab_size or lower tokenizer.vocab_size"
        )
    logvar_init = getattr(cfg.method_cfg, "logvar_init", None)
    model = create_model(cfg.model, head=cfg.method_cfg.head, logvar_init=logvar_init, seed=cfg.train.seed)
    loss = create_loss(cfg.method, cfg.method_cfg, embed_dim=cfg.model.head.dim)
    size, tokens = cfg.model.image.img_size, cfg.model.text.max_length
    batch = cfg.train.local_batch(info.world_size)
    train_cfg = create_loader_config(cfg.train, size, tokens, batch, views=loss.views)
    eval_cfg = create_loader_config(cfg.train, size, tokens, cfg.train.eval_batch_size, shuffle_buffer=0)
    return Trainer(
        model,
        loss,
        cfg.train,
        lambda epoch: create_train_loader(
            shards / "train", tokenizer, train_cfg, epoch, info.rank, info.world_size
        ),
        lambda: create_eval_loader(shards / "validate", tokenizer, eval_cfg),
        out / "state",
        fingerprint(cfg, input_digest(shards, Path(cfg.model.text.tokenizer))),
        tracker,
        device,
        info,
    )


def summarize(progress: Progress) -> dict[str, Any]:
    """The DVC metrics: validation metrics of the best epoch (by RSUM) and the final training loss."""
    best = max(progress.history, key=lambda r: r["val_rsum"])
    metrics = {k.removeprefix("val_"): v for k, v in best.items() if k.startswith("val_")}
    last = progress.history[-1]
    return {
        "best_epoch": int(best["epoch"]),
        "epochs": int(last["epoch"]),
        "val": metrics,
        "final_train_loss": last["train_loss"],
    }


def write_outputs(trainer: Trainer, cfg: ResolvedConfig, request: TrainRequest) -> dict[str, Any]:
    best = trainer.best_state()
    if best is None:
        raise PipelineError(f"{trainer.state_dir}: no best checkpoint after training")
    trainer.model.load_state_dict(best["model"])
    trainer.loss.load_state_dict(best["loss"])
    summary = summarize(trainer.progress)
    info = {
        "epoch": summary["best_epoch"],
        "val": summary["val"],
        "loss_config": dataclasses.asdict(cfg.method_cfg),
    }
    if cfg.model.text.name_or_path is None:  # our own vocabulary: evaluation must use the same one
        info["tokenizer_sha256"] = folder_digest(cfg.model.text.tokenizer)
    export_best(Path(request.out) / "best", trainer.model.cpu(), trainer.loss.cpu(), cfg.method, info)
    write_json(request.metrics_path, summary)
    write_csv(request.history_path, pd.DataFrame(trainer.progress.history))
    return summary


def run_training(request: TrainRequest) -> dict[str, Any]:
    """Train in this process (one rank of a torchrun job, or the only one); resumes from `out/state`."""
    from pipeline import tracking

    cfg = resolve_config(request.method, request.params, request.tokenizer)
    info = ddp.init_distributed()
    out = Path(request.out)
    try:
        if not info.is_main:
            trainer = build_trainer(request, cfg)
            trainer.fit()
            return {}
        with tracking.start_training_run(cfg, request, out) as tracker:
            trainer = build_trainer(request, cfg, tracker)
            trainer.fit()
            summary = write_outputs(trainer, cfg, request)
            files = [request.metrics_path, request.history_path]
            tracker.finish(out, trainer.progress.history, files, cfg.train.log_checkpoint)
            return summary
    finally:
        ddp.barrier()
        ddp.cleanup()


def launch(request: TrainRequest) -> dict[str, Any]:
    """Run training here, in a child process (loader workers), or under torchrun (more than one rank)."""
    train = resolve_config(request.method, request.params, request.tokenizer).train
    if train.world_size == 1 and train.workers == 0:
        return run_training(request)
    # DataLoader workers forked from a process that runs Prefect's threads die at start, so loader workers
    # (and DDP ranks) get a fresh process of their own.
    if train.world_size > 1:
        cmd = ddp.torchrun_command("pipeline.train", request.argv(), train.nproc_per_node, train.nnodes)
    else:
        cmd = [sys.executable, "-m", "pipeline.train", *request.argv()]
    result = subprocess.run(cmd, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"training process exited with {result.returncode}: {' '.join(cmd)}")
    return json.loads(request.metrics_path.read_text(encoding="utf-8"))


def parse_request(argv: list[str] | None = None) -> TrainRequest:
    parser = argparse.ArgumentParser(description="Train one method (one process / torchrun rank).")
    parser.add_argument("method", choices=METHODS)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--shards", default="data/shards")
    parser.add_argument("--tokenizer", default="models/tokenizer")
    parser.add_argument("--out", required=True, help="folder for best/, run.json and the resume state/")
    parser.add_argument("--metrics", help="best-epoch metrics JSON (default <out>/metrics.json)")
    parser.add_argument("--history", help="per-epoch history CSV (default <out>/history.csv)")
    args = parser.parse_args(argv)
    return TrainRequest(
        args.method, args.params, args.shards, args.tokenizer, args.out, args.metrics, args.history
    )


if __name__ == "__main__":
    run_cli(lambda: run_training(parse_request()))
