"""The ``train`` params section shared by every method, and the loader settings derived from it."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.config import ConfigError, build
from pipeline.data import LoaderConfig

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# Loader fields the trainer sets itself (from this section or the model profile); setting them under
# `train.loader` would be silently overridden, so it is refused instead.
DERIVED_LOADER_KEYS = {
    "batch_size": "train.batch_size",
    "workers": "train.workers",
    "seed": "train.seed",
    "shuffle_buffer": "train.shuffle_buffer",
    "image_size": "model.<profile>.image.img_size",
    "max_tokens": "model.<profile>.text.max_length",
    "views": "the method (its loss's number of views)",
}


@dataclass(frozen=True)
class TrainParams:
    """Optimisation, schedule, precision, parallelism and tracking settings (``train`` in params.yaml)."""

    profile: str | None = None  # None: model.profile
    epochs: int = 10
    batch_size: int = 32  # global batch of one micro-step (split evenly over DDP ranks)
    eval_batch_size: int = 64
    accumulation: int = 1  # micro-steps per optimiser step
    lr: float = 3e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 20
    min_lr_ratio: float = 0.0  # cosine floor as a fraction of lr
    grad_clip: float = 1.0  # max global grad norm; 0 = off
    precision: str = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    seed: int = 42
    deterministic: bool = True
    workers: int = 0  # DataLoader processes per rank
    shuffle_buffer: int = 1000
    nproc_per_node: int = 1
    nnodes: int = 1
    rdzv_endpoint: str = (
        "127.0.0.1:29400"  # nnodes > 1: torchrun c10d rendezvous host:port (a node's address)
    )
    rdzv_id: str = "medprobclip"  # nnodes > 1: the job id every node of one run shares
    log_every: int = 10  # optimiser steps between per-step metric logs
    progress: bool = True
    retries: int = 2  # Prefect retries of the training task (each retry resumes)
    retry_delay_s: float = 5.0
    experiment: str = "medprobclip"
    tracking_uri: str | None = None  # None: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the project
    log_checkpoint: bool = True  # upload the best checkpoint to MLflow as an artifact
    loader: dict[str, Any] = field(default_factory=dict)  # other LoaderConfig fields (augmentation, ...)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        positive = ("epochs", "batch_size", "eval_batch_size", "accumulation", "nproc_per_node", "nnodes")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.weight_decay < 0 or self.grad_clip < 0 or self.warmup_steps < 0:
            raise ValueError("need lr > 0, weight_decay >= 0, grad_clip >= 0, warmup_steps >= 0")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must lie in [0, 1], got {self.min_lr_ratio}")
        if self.workers < 0 or self.retries < 0 or self.log_every < 1:
            raise ValueError("need workers >= 0, retries >= 0, log_every >= 1")
        host, _, port = self.rdzv_endpoint.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"rdzv_endpoint must be host:port, got {self.rdzv_endpoint!r}")
        if not self.rdzv_id or not all(c.isalnum() or c in "-_." for c in self.rdzv_id):
            raise ValueError(f"rdzv_id must be letters, digits, '-', '_' or '.', got {self.rdzv_id!r}")

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.nnodes

    def local_batch(self, world_size: int) -> int:
        if self.batch_size % world_size:
            raise ConfigError(
                f"train.batch_size {self.batch_size} is not divisible by the {world_size} DDP ranks; "
                "make it a multiple of nproc_per_node × nnodes"
            )
        return self.batch_size // world_size


RDZV_ENDPOINT_ENV = "PET_RDZV_ENDPOINT"  # torchrun's own per-job override of train.rdzv_endpoint


def is_loopback(endpoint: str) -> bool:
    """Whether `host:port` names this machine's loopback (reachable from no other node)."""
    host = endpoint.rpartition(":")[0].strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name
        return False


def check_rendezvous(params: TrainParams, environ: Mapping[str, str] | None = None) -> None:
    """Refuse a multi-node run whose nodes would each meet at their own loopback: every node would host a
    store of its own and wait for the others forever. An explicit $PET_RDZV_ENDPOINT is trusted (several
    "nodes" on one host, as tests/test_multinode.py runs them)."""
    env = os.environ if environ is None else environ
    if params.nnodes > 1 and not env.get(RDZV_ENDPOINT_ENV) and is_loopback(params.rdzv_endpoint):
        raise ConfigError(
            f"train.rdzv_endpoint {params.rdzv_endpoint} is a loopback address but train.nnodes is "
            f"{params.nnodes}: set it (or {RDZV_ENDPOINT_ENV}) to host:port of one node the others can reach"
        )


def train_params(section: dict[str, Any] | None, where: str = "params.yaml:train") -> TrainParams:
    params = build(TrainParams, section, where)
    build(LoaderConfig, params.loader, f"{where}.loader")  # unknown keys / bad values fail here, early
    for key, owner in DERIVED_LOADER_KEYS.items():
        if key in params.loader:
            raise ConfigError(f"{where}.loader.{key}: set by the trainer from {owner}; set it there instead")
    return params


def create_loader_config(
    params: TrainParams,
    image_size: int,
    max_tokens: int,
    batch_size: int,
    shuffle_buffer: int | None = None,
    views: int = 2,
) -> LoaderConfig:
    base = build(LoaderConfig, params.loader, "train.loader")
    return dataclasses.replace(
        base,
        image_size=image_size,
        max_tokens=max_tokens,
        batch_size=batch_size,
        workers=params.workers,
        seed=params.seed,
        shuffle_buffer=params.shuffle_buffer if shuffle_buffer is None else shuffle_buffer,
        views=views,
    )
