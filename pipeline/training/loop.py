"""The epoch loop: AMP, gradient accumulation, clipping, per-step schedule, validation, best and resume."""

from __future__ import annotations

import contextlib
import math
import random
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from pipeline.data import sample_seed
from pipeline.training import distributed as ddp
from pipeline.training.checkpoint import LAST_FILE, load_checkpoint, save_checkpoint, set_rng_state
from pipeline.training.optim import create_optimizer, create_scheduler
from pipeline.training.params import TrainParams
from pipeline.training.retrieval import validate

BEST_FILE = "best.pt"


class Tracker(Protocol):
    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None: ...


class NullTracker:
    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        del metrics, step


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype, or None for plain fp32 (the CPU default: bf16 autocast there is slow and lossy)."""
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


class TrainStep(nn.Module):
    """Model and loss as one module, so DDP also averages the loss's learnable a, b, τ."""

    def __init__(self, model: nn.Module, loss: nn.Module) -> None:
        super().__init__()
        self.model, self.loss = model, loss

    def forward(self, batch: Mapping[str, Any]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        outputs = self.model(batch["images"], batch["input_ids"], batch["attention_mask"])
        return self.loss(outputs, batch), mean_variances(outputs)


def mean_variances(outputs: Mapping[str, Mapping[str, Tensor]]) -> dict[str, Tensor]:
    """Mean σ² per modality (Gaussian heads only), a cheap collapse / blow-up indicator."""
    out = {}
    for modality, prefix in (("image", "img_"), ("text", "txt_")):
        logvars = [o["logvar"].detach() for k, o in outputs.items() if k.startswith(prefix) and "logvar" in o]
        if logvars:
            out[f"sigma2_{modality}"] = torch.stack([lv.float().exp().mean() for lv in logvars]).mean()
    return out


def epoch_metrics(record: Mapping[str, float]) -> dict[str, float]:
    """Per-epoch values under names that cannot collide with the per-step series (step = epoch here)."""
    return {k if k.startswith("val_") else f"epoch_{k}": v for k, v in record.items() if k != "epoch"}


def method_batch(batch: Mapping[str, Any], loss: nn.Module, device: torch.device, rows: int) -> dict:
    """The views/sections the method uses, the first `rows` studies (equal sizes across DDP ranks)."""
    views, sections = loss.views, loss.sections
    out = {
        "images": batch["images"][:rows, :views].to(device, non_blocking=True),
        "input_ids": batch["input_ids"][:rows, :sections].to(device, non_blocking=True),
        "attention_mask": batch["attention_mask"][:rows, :sections].to(device, non_blocking=True),
        "labels": batch["labels"][:rows].to(device, non_blocking=True),
        "study_id": batch["study_id"][:rows],
    }
    return out


@dataclass
class Progress:
    epoch: int = 0  # epochs completed
    step: int = 0  # optimiser steps taken
    best_rsum: float = -math.inf
    history: list[dict[str, float]] = field(default_factory=list)


class Trainer:
    """Trains `model` with `loss`; `train_loader(epoch)` and `eval_loader()` build this rank's loaders."""

    def __init__(
        self,
        model: nn.Module,
        loss: nn.Module,
        cfg: TrainParams,
        train_loader: Callable[[int], Iterable],
        eval_loader: Callable[[], Iterable],
        state_dir: str | Path,
        fingerprint: str = "",
        tracker: Tracker | None = None,
        device: torch.device | str = "cpu",
        dist: ddp.DistInfo | None = None,
    ) -> None:
        self.cfg, self.device, self.dist = cfg, torch.device(device), dist or ddp.current()
        self.model, self.loss = model.to(self.device), loss.to(self.device)
        self.train_loader, self.eval_loader = train_loader, eval_loader
        self.state_dir, self.fingerprint = Path(state_dir), fingerprint
        self.tracker = tracker if tracker is not None and self.dist.is_main else NullTracker()
        self.dtype = resolve_precision(cfg.precision, self.device)
        step = TrainStep(self.model, self.loss)
        if self.dist.enabled:
            ids = [self.dist.local_rank] if self.device.type == "cuda" else None
            step = nn.parallel.DistributedDataParallel(step, device_ids=ids)
        self.step_module = step
        self.batches = ddp.all_reduce_min(len(train_loader(0)), self.device)  # type: ignore[arg-type]
        self.steps_per_epoch = math.ceil(self.batches / cfg.accumulation)
        self.optimizer = create_optimizer(self.model, self.loss, cfg.lr, cfg.weight_decay)
        total = self.steps_per_epoch * cfg.epochs
        self.scheduler = create_scheduler(self.optimizer, cfg.warmup_steps, total, cfg.min_lr_ratio)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)
        self.progress = Progress()

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    # -- state -------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        p = self.progress
        return {
            "fingerprint": self.fingerprint,
            "model": self.model.state_dict(),
            "loss": self.loss.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": p.epoch,
            "step": p.step,
            "best_rsum": p.best_rsum,
            "history": p.history,
        }

    def resume(self) -> bool:
        """Continue from `last.pt` when it belongs to this configuration; False = a fresh start."""
        path = self.state_dir / LAST_FILE
        if not ddp.broadcast_flag(path.is_file(), self.device):
            return False
        ck = load_checkpoint(path, self.device)
        if ck["fingerprint"] != self.fingerprint:
            if self.dist.is_main:
                tqdm.write(
                    f"{path}: from another configuration, input data or code; starting from scratch",
                    file=sys.stderr,
                )
            ddp.barrier()
            return False
        self.model.load_state_dict(ck["model"])
        self.loss.load_state_dict(ck["loss"])
        self.optimizer.load_state_dict(ck["optimizer"])
        self.scheduler.load_state_dict(ck["scheduler"])
        self.scaler.load_state_dict(ck["scaler"])
        set_rng_state(ck["rng"])
        self.progress = Progress(ck["epoch"], ck["step"], ck["best_rsum"], list(ck["history"]))
        return True

    def best_state(self) -> dict[str, Any] | None:
        path = self.state_dir / BEST_FILE
        return load_checkpoint(path, "cpu") if path.is_file() else None

    # -- training ----------------------------------------------------------------------------------
    def fit(self) -> Progress:
        self.resume()
        for epoch in range(self.progress.epoch, self.cfg.epochs):
            # Per-epoch reseeding: dropout and mixing depend on (seed, epoch, rank) only, so a resumed run
            # replays exactly what an uninterrupted one does.
            seed_everything(sample_seed(self.cfg.seed, epoch, self.dist.rank) % 2**31, self.cfg.deterministic)
            record = {"epoch": float(epoch + 1), **self.train_epoch(epoch)}
            if self.dist.is_main:
                val = validate(self.model, self.loss, self.eval_loader(), self.device, self.autocast)
                record |= {f"val_{k}": v for k, v in val.items()}
                self.tracker.log_metrics(epoch_metrics(record), epoch + 1)
            self.end_epoch(epoch, record)
        return self.progress

    def end_epoch(self, epoch: int, record: dict[str, float]) -> None:
        p = self.progress
        p.epoch, p.history = epoch + 1, [*p.history, record]
        if self.dist.is_main:
            if record["val_rsum"] > p.best_rsum:
                p.best_rsum = record["val_rsum"]
                best = {"model": self.model.state_dict(), "loss": self.loss.state_dict(), "record": record}
                save_checkpoint(self.state_dir / BEST_FILE, **best)
            save_checkpoint(self.state_dir / LAST_FILE, **self.state())
        ddp.barrier()

    def train_epoch(self, epoch: int) -> dict[str, float]:
        cfg, p = self.cfg, self.progress
        self.step_module.train()
        loader = self.train_loader(epoch)
        bar = tqdm(
            loader,
            total=self.batches,
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            disable=None if cfg.progress and self.dist.is_main else True,  # None: only on a terminal
            leave=False,
            dynamic_ncols=True,
        )
        sums: dict[str, float] = {}
        seen = 0
        generator = torch.Generator().manual_seed(sample_seed(cfg.seed, epoch, "mix") % 2**63)
        window: dict[str, Tensor] = {}
        for index, batch in enumerate(bar):
            if index >= self.batches:
                break
            group_start = index - index % cfg.accumulation
            group = min(cfg.accumulation, self.batches - group_start)
            last_in_group = index == group_start + group - 1
            rows = ddp.all_reduce_min(batch["study_id"].shape[0], self.device) if self.dist.enabled else None
            micro = self.loss.prepare_batch(method_batch(batch, self.loss, self.device, rows), generator)
            sync = contextlib.nullcontext()
            if self.dist.enabled and not last_in_group:
                sync = self.step_module.no_sync()
            with sync:
                with self.autocast():
                    terms, variances = self.step_module(micro)
                self.scaler.scale(terms["loss"] / group).backward()
            logged = {k: v.detach().float() for k, v in (terms | variances).items()}
            for k, v in logged.items():
                window[k] = window.get(k, 0.0) + v / group
                sums[k] = sums.get(k, 0.0) + float(v)
            seen += 1
            if last_in_group:
                grad_norm = self.optimizer_step()
                if self.dist.is_main and (p.step % cfg.log_every == 0 or p.step == 1):
                    metrics = {f"train_{k}": float(v) for k, v in window.items()}
                    metrics |= {"lr": self.scheduler.get_last_lr()[0], "grad_norm": grad_norm}
                    metrics |= self.loss.logs()
                    self.tracker.log_metrics(metrics, p.step)
                bar.set_postfix(loss=f"{float(window['loss']):.4f}", refresh=False)
                window = {}
        return self.epoch_means(sums, seen)

    def optimizer_step(self) -> float:
        self.scaler.unscale_(self.optimizer)
        params = [q for g in self.optimizer.param_groups for q in g["params"]]
        clip = self.cfg.grad_clip if self.cfg.grad_clip > 0 else math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, clip))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.progress.step += 1
        return grad_norm

    def epoch_means(self, sums: dict[str, float], seen: int) -> dict[str, float]:
        keys = sorted(sums)
        totals = torch.tensor(
            [sums[k] for k in keys] + [float(seen)], dtype=torch.float64, device=self.device
        )
        if self.dist.enabled:
            torch.distributed.all_reduce(totals)
        count = max(float(totals[-1]), 1.0)
        out = {f"train_{k}": float(v) / count for k, v in zip(keys, totals[:-1].tolist(), strict=True)}
        return out | {"lr": self.scheduler.get_last_lr()[0]}
