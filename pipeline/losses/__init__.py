"""Method losses, registered by name and built from their ``params.yaml`` block.

loss = create_loss("medprobclip", params["losses"]["medprobclip"], embed_dim=512)
terms = loss(model(images, input_ids, attention_mask), batch)   # {"loss": total, <term>: ...}

A new method is one module here (a `ContrastiveLoss` subclass with a `name` and a `Config`) plus its block
under ``losses:`` in params.yaml; every module of this package is imported below, so it registers itself.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Mapping
from typing import Any

from pipeline.config import ConfigError, build, suggest
from pipeline.losses.base import LOSSES, ContrastiveLoss, LossInputError
from pipeline.losses.probabilistic import ProbabilisticLoss

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")


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


def display_name(name: str) -> str:
    """How reports name method ``name`` (its class's `display_name`; the name itself if unregistered)."""
    return LOSSES[name].display_name if name in LOSSES else name


def _loss_class(name: str) -> type[ContrastiveLoss]:
    if name not in LOSSES:
        raise ConfigError(f"unknown loss '{name}'{suggest(name, LOSSES)}; registered: {sorted(LOSSES)}")
    return LOSSES[name]


__all__ = [
    "LOSSES",
    "ContrastiveLoss",
    "LossInputError",
    "ProbabilisticLoss",
    "create_loss",
    "display_name",
    "loss_config",
]
