"""Dual-encoder models: timm image tower, transformers text tower, deterministic or Gaussian heads."""

from __future__ import annotations

from pipeline.models.dual import DualEncoder
from pipeline.models.encoders import (
    ImageEncoderConfig,
    TextEncoderConfig,
    WeightsNotFoundError,
    load_tokenizer,
)
from pipeline.models.heads import HeadConfig
from pipeline.models.profiles import (
    PAPER,
    PROFILES,
    TINY,
    ModelConfig,
    ModelParams,
    create_model,
    load_model,
    load_model_params,
    model_params,
    save_model,
)

__all__ = [
    "PAPER",
    "PROFILES",
    "TINY",
    "DualEncoder",
    "HeadConfig",
    "ImageEncoderConfig",
    "ModelConfig",
    "ModelParams",
    "TextEncoderConfig",
    "WeightsNotFoundError",
    "create_model",
    "load_model",
    "load_model_params",
    "load_tokenizer",
    "model_params",
    "save_model",
]
