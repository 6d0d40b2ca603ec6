"""AdamW over the model's and the loss's parameter groups, and a per-step cosine schedule with warm-up."""

from __future__ import annotations

import math

import torch
from torch import nn


def create_optimizer(model: nn.Module, loss: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """Groups come from their owners: the model knows which weights skip decay, the loss owns a, b, τ."""
    groups = [g for g in model.param_groups(weight_decay) + loss.param_groups(weight_decay) if g["params"]]
    # foreach: one multi-tensor kernel per step instead of a Python loop over parameters (the CPU default).
    return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay, foreach=True)


def cosine_factor(step: int, warmup: int, total: int, floor: float) -> float:
    """LR multiplier at optimiser step `step` (0-based): linear warm-up, then cosine down to `floor`."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    span = max(total - warmup, 1)
    progress = min(max(step - warmup, 0) / span, 1.0)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def create_scheduler(
    optimizer: torch.optim.Optimizer, warmup: int, total: int, floor: float = 0.0
) -> torch.optim.lr_scheduler.LambdaLR:
    """Stepped once per optimiser step (the reference code steps it per epoch, which keeps LR ~constant)."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: cosine_factor(step, min(warmup, total), total, floor)
    )
