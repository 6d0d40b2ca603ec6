"""Method losses, registered by name and built from their ``params.yaml`` block.

loss = create_loss("medprobclip", params["losses"]["medprobclip"], embed_dim=512)
terms = loss(model(images, input_ids, attention_mask), batch)   # {"loss": total, <term>: ...}
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from pipeline.config import ConfigError, build, suggest
from pipeline.losses.base import ContrastiveLoss, LossInputError
from pipeline.losses.clip import ClipLoss
from pipeline.losses.cxrclip import CxrClipLoss
from pipeline.losses.mcsl import McslLoss
from pipeline.losses.medprobclip import MedProbClipLoss
from pipeline.losses.pcmepp import PcmeppLoss
from pipeline.losses.probabilistic import ProbabilisticLoss

LOSSES: dict[str, type[ContrastiveLoss]] = {
    cls.name: cls for cls in (ClipLoss, CxrClipLoss, PcmeppLoss, MedProbClipLoss, McslLoss)
}


def loss_config(name: str, cfg: Mapping[str, Any] | Any | None = None, where: str | None = None) -> Any:
    """Typed config of loss ``name`` from a params mapping (unknown keys rejected), an instance or None."""
    cls = _loss_class(name)
    if cfg is None or isinstance(cfg, Mapping):
        return build(cls.Config, dict(cfg or {}), where or f"losses.{name}")
    if not (dataclasses.is_dataclass(cfg) and isinstance(cfg, cls.Config)):
        expected = cls.Config.__name__
        raise ConfigError(f"loss '{name}' expects a mapping or {expected}, got {type(cfg).__name__}")
    return cfg


def create_loss(name: str, cfg: Mapping[str, Any] | Any | None = None, *, embed_dim: int | None = None):
    """Build the loss of method ``name``; ``embed_dim`` is the head's output dimension D."""
    cfg = loss_config(name, cfg)
    try:
        return _loss_class(name)(cfg, embed_dim=embed_dim)
    except ValueError as exc:
        raise ConfigError(f"losses.{name}: {exc}") from exc


def _loss_class(name: str) -> type[ContrastiveLoss]:
    if name not in LOSSES:
        raise ConfigError(f"unknown loss '{name}'{suggest(name, LOSSES)}; registered: {sorted(LOSSES)}")
    return LOSSES[name]


__all__ = ["LOSSES", "ContrastiveLoss", "LossInputError", "ProbabilisticLoss", "create_loss", "loss_config"]
