"""Linear / small-MLP probe on frozen image features (the CLIP-XRad probe protocol).

The probe sees standardised features (train mean / std, stored as buffers so it is self-contained) and
emits one logit per label, trained with binary cross-entropy. Labels follow the CheXpert convention:
positive means == 1; uncertain (-1), negative (0) and blank (NaN) train and score as negative.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from pipeline.metrics.classification import (
    ArrayLike,
    finite_scores,
    per_label_metrics,
    positives,
    youden_threshold,
)

# A feature whose train std is below this is constant; it is centred but not scaled.
MIN_STD = 1e-8


class Probe(nn.Module):
    """Standardise → Linear (hidden = 0) or Linear → ReLU → Linear; outputs logits [N, C]."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 0) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("std", torch.ones(in_dim))
        if hidden:
            self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))
        else:
            self.net = nn.Linear(in_dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.net((x - self.mean) / self.std)


def _xy(x: ArrayLike, y: ArrayLike, name: str) -> tuple[np.ndarray, np.ndarray]:
    features = finite_scores(x, 2, f"{name}_x")
    targets = positives(y, 2, f"{name}_y")
    if features.shape[0] != targets.shape[0]:
        raise ValueError(f"{name}_x {features.shape} and {name}_y {targets.shape} need the same N")
    return features, targets


def train_probe(
    train_x: ArrayLike,
    train_y: ArrayLike,
    hidden: int = 0,
    epochs: int = 200,
    lr: float = 1e-2,
    weight_decay: float = 1e-4,
    seed: int = 0,
    batch_size: int | None = 256,
    device: str | torch.device = "cpu",
    threads: int | None = 1,
) -> Probe:
    """Fit a probe with AdamW on BCE-with-logits; returns it in eval mode on `device`.

    Initialisation and minibatch order come from `seed` alone (the global RNG is left untouched), so on
    the CPU the result is bit-identical across calls. `batch_size=None` (or >= N) trains full-batch.
    `threads` sets torch's CPU intra-op threads for the duration (restored after): the probe's matrices
    are tiny, so extra threads only add synchronisation cost and reduction-order differences.
    """
    x, y = _xy(train_x, train_y, "train")
    n, d = x.shape
    if n == 0 or d == 0 or y.shape[1] == 0:
        raise ValueError(f"need N, D, C >= 1, got train_x {x.shape} and train_y {y.shape}")
    if hidden < 0 or epochs < 1 or not lr > 0 or weight_decay < 0:
        raise ValueError("need hidden >= 0, epochs >= 1, lr > 0, weight_decay >= 0")
    if (batch_size is not None and batch_size < 1) or (threads is not None and threads < 1):
        raise ValueError(f"batch_size and threads must be >= 1 or None, got {batch_size} and {threads}")
    batch = n if batch_size is None else min(batch_size, n)
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _fit(x, y, hidden, epochs, lr, weight_decay, seed, batch, torch.device(device))
    finally:
        torch.set_num_threads(previous_threads)


def _fit(
    x: np.ndarray,
    y: np.ndarray,
    hidden: int,
    epochs: int,
    lr: float,
    weight_decay: float,
    seed: int,
    batch: int,
    device: torch.device,
) -> Probe:
    n, d = x.shape
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        probe = Probe(d, y.shape[1], hidden)
    std = x.std(axis=0)
    probe.mean.copy_(torch.from_numpy(x.mean(axis=0)))
    probe.std.copy_(torch.from_numpy(np.where(std > MIN_STD, std, 1.0)))
    probe.to(device).train()
    xt = torch.as_tensor(x, dtype=torch.float32, device=device)
    yt = torch.as_tensor(y, dtype=torch.float32, device=device)
    optimizer = torch.optim.AdamW(probe.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = nn.BCEWithLogitsLoss()
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator).to(device) if batch < n else None
        for start in range(0, n, batch):
            idx = order[start : start + batch] if order is not None else slice(None)
            optimizer.zero_grad(set_to_none=True)
            loss_fn(probe(xt[idx]), yt[idx]).backward()
            optimizer.step()
    return probe.eval()


@torch.no_grad()
def predict_proba(probe: nn.Module, x: ArrayLike) -> np.ndarray:
    """Sigmoid probabilities [N, C] of a probe, computed on the probe's device."""
    features = finite_scores(x, 2, "x")
    if isinstance(probe, Probe) and features.shape[1] != probe.mean.numel():
        raise ValueError(f"probe expects {probe.mean.numel()} features, got x {features.shape}")
    param = next(probe.parameters())
    was_training = probe.training
    probe.eval()
    logits = probe(torch.as_tensor(features, dtype=param.dtype, device=param.device))
    probe.train(was_training)
    return torch.sigmoid(logits).to("cpu", torch.float64).numpy()


def probe_metrics(
    probe: nn.Module,
    val_x: ArrayLike,
    val_y: ArrayLike,
    test_x: ArrayLike,
    test_y: ArrayLike,
    names: Sequence[str],
) -> dict[str, Any]:
    """Per-label thresholds by Youden's J on validation; AUROC and accuracy on test, plus macro means.

    Same definitions and output as `classification.per_label_metrics` (thresholds included per label).
    """
    _, val_pos = _xy(val_x, val_y, "val")
    _xy(test_x, test_y, "test")
    val_prob = predict_proba(probe, val_x)
    if val_prob.shape != val_pos.shape or len(names) != val_pos.shape[1]:
        raise ValueError(
            f"probe outputs {val_prob.shape}, val_y {val_pos.shape} and {len(names)} names disagree"
        )
    thresholds = np.array([youden_threshold(val_prob[:, c], val_pos[:, c]) for c in range(len(names))])
    return per_label_metrics(predict_proba(probe, test_x), test_y, thresholds, names)
