"""The library trainer: resolved config → model, loss, loaders → `Trainer.fit` → best checkpoint, metrics.

`run_training` is what one process runs (rank-aware under torchrun); `launch` runs it in-process or starts a
fresh process (`pipeline.training.worker`, under torchrun for ``train.nproc_per_node × train.nnodes > 1``).
Outputs in `out` (written by rank 0): ``best/`` (see `export_best`), ``metrics.json`` (best-epoch validation
metrics), ``history.csv`` (one row per epoch) and ``run.json`` (the MLflow run, for evaluation to log into).
``state/`` holds the resume files.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from pipeline.config import ConfigError
from pipeline.data import check_shard_resolution, create_eval_loader, create_train_loader
from pipeline.errors import PipelineError
from pipeline.io import folder_digest, write_csv, write_json
from pipeline.losses import create_loss
from pipeline.models import create_model, load_tokenizer
from pipeline.training import distributed as ddp
from pipeline.training.checkpoint import export_best
from pipeline.training.config import ResolvedConfig, TrainRequest, fingerprint, input_digest, resolve_config
from pipeline.training.loop import Progress, Trainer
from pipeline.training.params import check_rendezvous, create_loader_config

WORKER_MODULE = "pipeline.training.worker"


def choose_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", ddp.current().local_rank)
    return torch.device("cpu")


def check_inputs(shards: Path, image_size: int) -> None:
    for split in ("train", "validate"):
        if not (shards / split / "index.json").is_file():
            raise PipelineError(f"{shards / split}: no shards index (run the `shards` stage first)")
        check_shard_resolution(shards / split, image_size)


def build_trainer(request: TrainRequest, cfg: ResolvedConfig, tracker=None) -> Trainer:
    shards, out = Path(request.shards), Path(request.out)
    size, tokens = cfg.model.image.img_size, cfg.model.text.max_length
    check_inputs(shards, size)
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


def method_info(trainer: Trainer, cfg: ResolvedConfig, summary: dict[str, Any]) -> dict[str, Any]:
    """What evaluation and inference must know beyond the weights: the loss config, the input
    normalisation the model was trained with, the seed, and our own vocabulary's hash."""
    loader = create_loader_config(cfg.train, cfg.model.image.img_size, cfg.model.text.max_length, 1)
    info = {
        "epoch": summary["best_epoch"],
        "seed": cfg.train.seed,
        "val": summary["val"],
        "loss_config": dataclasses.asdict(cfg.method_cfg),
        "image_mean": loader.mean,
        "image_std": loader.std,
    }
    if cfg.model.text.name_or_path is None:  # our own vocabulary: evaluation must use the same one
        info["tokenizer_sha256"] = folder_digest(cfg.model.text.tokenizer)
    return info


def write_outputs(trainer: Trainer, cfg: ResolvedConfig, request: TrainRequest) -> dict[str, Any]:
    best = trainer.best_state()
    if best is None:
        raise PipelineError(f"{trainer.state_dir}: no best checkpoint after training")
    trainer.model.load_state_dict(best["model"])
    trainer.loss.load_state_dict(best["loss"])
    summary = summarize(trainer.progress)
    info = method_info(trainer, cfg, summary)
    export_best(Path(request.out) / "best", trainer.model.cpu(), trainer.loss.cpu(), cfg.method, info)
    write_json(request.metrics_path, summary)
    write_csv(request.history_path, pd.DataFrame(trainer.progress.history))
    return summary


def resolved(request: TrainRequest, cfg: ResolvedConfig | None) -> ResolvedConfig:
    """The caller's resolved config, or the request's params resolved now (library callers, tests)."""
    return cfg or resolve_config(request.method, request.params, request.tokenizer, request.seed)


def run_training(request: TrainRequest, cfg: ResolvedConfig | None = None) -> dict[str, Any]:
    """Train in this process (one rank of a torchrun job, or the only one); resumes from `out/state`."""
    from pipeline import tracking

    cfg = resolved(request, cfg)
    info = ddp.init_distributed()
    out = Path(request.out)
    try:
        writer = ddp.main_host()
        if not info.is_main:
            trainer = build_trainer(request, cfg)
            trainer.fit()
            if info.local_rank == 0:  # the first process of a node that writes nothing: say who did
                print(
                    f"{request.method}: training done; this node ({socket.gethostname()}) wrote no outputs, "
                    f"global rank 0 on {writer} wrote them into its {out}",
                    flush=True,
                )
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


def launch(request: TrainRequest, cfg: ResolvedConfig | None = None) -> dict[str, Any]:
    """Run training here, in a child process (loader workers), or under torchrun (more than one rank)."""
    cfg = resolved(request, cfg)
    train = cfg.train
    check_rendezvous(train)
    if train.world_size == 1 and train.workers == 0:
        return run_training(request, cfg)
    # DataLoader workers forked from a process that runs Prefect's threads die at start, so loader workers
    # (and DDP ranks) get a fresh process of their own.
    argv = [request.to_json()]
    if train.world_size > 1:
        cmd = ddp.torchrun_command(
            WORKER_MODULE, argv, train.nproc_per_node, train.nnodes, train.rdzv_endpoint, train.rdzv_id
        )
    else:
        cmd = [sys.executable, "-m", WORKER_MODULE, *argv]
    result = subprocess.run(cmd, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"training process exited with {result.returncode}: {' '.join(cmd)}")
    if train.nnodes > 1 and not request.metrics_path.is_file():
        # Global rank 0 ran on another node and wrote the outputs there (the worker named it).
        return {}
    return json.loads(request.metrics_path.read_text(encoding="utf-8"))
