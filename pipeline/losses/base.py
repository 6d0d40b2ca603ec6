"""What every method's loss shares: output access, DDP-aware pairing, learnable scalars, AdamW groups."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.losses.distances import positive_index
from pipeline.losses.distributed import gather_with_grad, is_distributed, rank_offset

Outputs = Mapping[str, Mapping[str, Tensor]]
Batch = Mapping[str, Any]


class LossInputError(ValueError):
    """The model outputs or batch do not carry what this loss needs."""


# name → loss class: the one place a method name maps to code. A subclass that sets `name` registers itself
# (timm's registry, without a decorator to forget); `pipeline.losses` imports every module of the package.
LOSSES: dict[str, type[ContrastiveLoss]] = {}


class ContrastiveLoss(nn.Module):
    """Base of the method losses: ``forward(outputs, batch) -> {"loss": total, <term>: value, ...}``.

    Subclasses set ``Config`` (a frozen dataclass, the method's params.yaml block), ``heads`` (supported
    head kinds, default first), ``probabilistic`` and how many image ``views`` / text ``sections`` they use.
    All parameters a loss owns (a, b, τ) are excluded from weight decay.
    """

    name: ClassVar[str]
    display_name: ClassVar[str]  # how tables and sentences name the method (default: `name`)
    Config: ClassVar[type]
    # A Gaussian head under a cosine loss would leave its log σ² projection without gradients (and break
    # DDP's unused-parameter check), so deterministic losses accept only the deterministic head.
    heads: ClassVar[tuple[str, ...]] = ("deterministic",)
    probabilistic: ClassVar[bool] = False
    views: ClassVar[int] = 1
    sections: ClassVar[int] = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:  # an abstract intermediate (ProbabilisticLoss)
            return
        if cls.name in LOSSES and LOSSES[cls.name] is not cls:
            raise TypeError(f"loss name '{cls.name}' is taken by {LOSSES[cls.name].__qualname__}")
        if "display_name" not in cls.__dict__:
            cls.display_name = cls.name
        LOSSES[cls.name] = cls

    def __init__(self, cfg: Any, embed_dim: int | None = None) -> None:
        super().__init__()
        head = getattr(cfg, "head", self.heads[0])
        if head not in self.heads:
            raise LossInputError(f"loss '{self.name}' supports heads {self.heads}, got head: {head!r}")
        self.cfg = cfg
        self.embed_dim = embed_dim

    def no_decay_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """AdamW groups for the loss's own parameters (none of them is decayed)."""
        del weight_decay
        params = self.no_decay_parameters()
        return [{"params": params, "weight_decay": 0.0}] if params else []

    def prepare_batch(self, batch: Batch, generator: torch.Generator | None = None) -> Batch:
        """Hook for batch-level augmentation that changes the targets (PCME++ mixing); identity here."""
        del generator
        return batch

    def similarity(self, query: Mapping[str, Tensor], gallery: Mapping[str, Tensor]) -> Tensor:
        """Retrieval score [Q, G]: cosine here, −distance for probabilistic losses."""
        from pipeline.losses.distances import cosine_similarity

        return cosine_similarity(embedding(query), embedding(gallery))

    def score_affine(self) -> tuple[float, float]:
        """(scale, bias) turning a `similarity` score into the method's match logit (τ⁻¹ and 0 here):
        what calibration and two-prompt zero-shot need to read scores the way training did."""
        scale = getattr(self, "logit_scale", None)
        return (float(scale().detach()) if scale is not None else 1.0), 0.0

    def logs(self) -> dict[str, float]:
        """Current values of the learnable scalars, for tracking."""
        return {}

    @staticmethod
    def cross(fn: Callable[..., Tensor], x: tuple[Tensor, ...], y: tuple[Tensor, ...]):
        """(fn(x_local, y_global), fn(y_local, x_global), offset) for a symmetric pairwise ``fn``."""
        if not is_distributed():
            m = fn(*x, *y)
            return m, m.T, 0
        x_all = tuple(gather_with_grad(t) for t in x)
        y_all = tuple(gather_with_grad(t) for t in y)
        return fn(*x, *y_all), fn(*y, *x_all), rank_offset(x[0].shape[0])


def view(outputs: Outputs, key: str) -> Mapping[str, Tensor]:
    if key not in outputs:
        raise LossInputError(f"model outputs lack '{key}' (have {sorted(outputs)}); pass more views/sections")
    return outputs[key]


def embedding(out: Mapping[str, Tensor]) -> Tensor:
    """L2-normalised embedding: the deterministic head's ``emb``, else the Gaussian head's normalised μ
    (evaluation of probabilistic models with cosine similarity)."""
    if "emb" in out:
        return out["emb"]
    if "mu" in out:
        return F.normalize(out["mu"], dim=-1)
    raise LossInputError(f"expected 'emb' or 'mu' in head output, got {sorted(out)}")


def gaussian(out: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
    if "mu" not in out or "logvar" not in out:
        raise LossInputError(f"probabilistic loss needs a gaussian head ('mu', 'logvar'), got {sorted(out)}")
    return out["mu"], out["logvar"]


def symmetric_infonce(logits_xy: Tensor, logits_yx: Tensor, offset: int) -> Tensor:
    """Mean of the two softmax cross-entropies; row i's positive is column offset + i."""
    target = positive_index(logits_xy.shape[0], offset, logits_xy.device)
    return 0.5 * (F.cross_entropy(logits_xy, target) + F.cross_entropy(logits_yx, target))


class LogitScale(nn.Module):
    """CLIP's learnable inverse temperature, stored as log(1/τ) and clamped to ``max_scale``."""

    def __init__(self, temperature: float, max_scale: float = 100.0, learnable: bool = True) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)), requires_grad=learnable)
        self.max_scale = max_scale

    def forward(self) -> Tensor:
        return self.log_scale.exp().clamp(max=self.max_scale)
