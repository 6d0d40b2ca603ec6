"""Projection heads: deterministic (L2-normalised point) or Gaussian (μ and clamped log σ²)."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

HEAD_KINDS = ("deterministic", "gaussian")
LOGVAR_RANGE = (-6.0, 6.0)


@dataclass(frozen=True)
class HeadConfig:
    kind: str = "gaussian"
    dim: int = 64  # D, the shared embedding dimension
    hidden: int = 0  # 0 = a single Linear; > 0 = Linear → GELU → Linear with this width
    logvar_init: float = 0.0  # initial bias of the log σ² projection (Gaussian head)

    def __post_init__(self) -> None:
        if self.kind not in HEAD_KINDS:
            raise ValueError(f"head kind must be one of {HEAD_KINDS}, got {self.kind!r}")


def projection(in_features: int, out_features: int, hidden: int = 0) -> nn.Module:
    if hidden <= 0:
        return nn.Linear(in_features, out_features)
    return nn.Sequential(nn.Linear(in_features, hidden), nn.GELU(), nn.Linear(hidden, out_features))


class DeterministicHead(nn.Module):
    def __init__(self, in_features: int, dim: int, hidden: int = 0) -> None:
        super().__init__()
        self.proj = projection(in_features, dim, hidden)

    def forward(self, features: Tensor) -> dict[str, Tensor]:
        return {"emb": F.normalize(self.proj(features), dim=-1)}


class GaussianHead(nn.Module):
    """Separate μ and log σ² projections; log σ² is clamped so variances stay in [e⁻⁶, e⁶]."""

    def __init__(self, in_features: int, dim: int, hidden: int = 0, logvar_init: float = 0.0) -> None:
        super().__init__()
        self.mu = projection(in_features, dim, hidden)
        self.logvar = projection(in_features, dim, hidden)
        last = self.logvar if isinstance(self.logvar, nn.Linear) else self.logvar[-1]
        nn.init.constant_(last.bias, logvar_init)

    def forward(self, features: Tensor) -> dict[str, Tensor]:
        return {"mu": self.mu(features), "logvar": self.logvar(features).clamp(*LOGVAR_RANGE)}


def create_head(cfg: HeadConfig, in_features: int) -> nn.Module:
    if cfg.kind == "gaussian":
        return GaussianHead(in_features, cfg.dim, cfg.hidden, cfg.logvar_init)
    return DeterministicHead(in_features, cfg.dim, cfg.hidden)
