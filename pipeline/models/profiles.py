"""Model profiles (``tiny`` for CPU runs, ``paper`` for the published setting), the factory, save and load.

A saved model is a folder: ``config.json`` (the profile and the text backbone's HF config, enough to
rebuild the architecture with no download) and ``model.safetensors`` (all weights).
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from pipeline.config import ConfigError, build, read_params
from pipeline.errors import PipelineError
from pipeline.io import atomic_dir
from pipeline.models.dual import DualEncoder
from pipeline.models.encoders import (
    ImageEncoderConfig,
    TextEncoderConfig,
    create_image_encoder,
    create_text_encoder,
    image_weights_file,
    text_model_path,
)
from pipeline.models.heads import HeadConfig, create_head

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


@dataclass(frozen=True)
class ModelConfig:
    image: ImageEncoderConfig = field(default_factory=ImageEncoderConfig)
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    head: HeadConfig = field(default_factory=HeadConfig)

    def with_head(self, kind: str, logvar_init: float | None = None) -> ModelConfig:
        """This config with another head kind (and, for a method that needs it, its own log σ² init)."""
        head = dataclasses.replace(self.head, kind=kind)
        if logvar_init is not None:
            head = dataclasses.replace(head, logvar_init=logvar_init)
        return dataclasses.replace(self, head=head)


# A random tiny ViT does not generalise from ~1k studies and its CLS token (like a random BERT's) is nearly
# input-independent, so the CPU profile uses a quarter-width ResNet-10-T (a convolutional prior; at 64 px it
# learns faster per CPU-second than at half width or 96 px) and mean-pooled text.
TINY = ModelConfig(
    image=ImageEncoderConfig(
        arch="resnet10t",
        img_size=64,
        patch_size=None,
        depth=None,
        embed_dim=None,
        num_heads=None,
        channels=(16, 32, 64, 128),
        stem_width=8,
        pool="avg",
    ),
    text=TextEncoderConfig(pool="mean"),
)
PAPER = ModelConfig(
    image=ImageEncoderConfig(
        arch="vit_base_patch16_224.augreg_in21k",
        pretrained=True,
        img_size=224,
        patch_size=None,
        depth=None,
        embed_dim=None,
        num_heads=None,
        channels=None,
        stem_width=None,
        pool="token",
    ),
    text=TextEncoderConfig(
        name_or_path="microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract-fulltext",
        tokenizer="microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract-fulltext",
        max_length=256,
        pool="cls",
    ),
    head=HeadConfig(dim=512),
)
PROFILES = {"tiny": TINY, "paper": PAPER}


@dataclass(frozen=True)
class ModelParams:
    """The ``model`` section of params.yaml: which profile to use and per-profile overrides."""

    profile: str = "tiny"
    tiny: ModelConfig = TINY
    paper: ModelConfig = PAPER

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"profile must be one of {sorted(PROFILES)}, got {self.profile!r}")

    def selected(self) -> ModelConfig:
        return getattr(self, self.profile)


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        out[key] = (
            _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


def model_params(section: dict[str, Any] | None, where: str = "params.yaml:model") -> ModelParams:
    """Build ``ModelParams``; a profile's keys override that profile's own defaults (not tiny's)."""
    section = dict(section or {})
    for name, defaults in PROFILES.items():
        override = section.get(name) or {}
        if not isinstance(override, dict):
            raise ConfigError(f"{where}.{name}: expected a mapping")
        section[name] = _merge(dataclasses.asdict(defaults), override)
    return build(ModelParams, section, where)


class ModelFolderError(PipelineError, FileNotFoundError):
    """A saved model folder that is missing or damaged."""


def load_model_params(path: str | Path = "params.yaml") -> ModelParams:
    return model_params(read_params(path).get("model"), f"{path}:model")


def create_model(
    cfg: ModelConfig,
    *,
    head: str | None = None,
    logvar_init: float | None = None,
    seed: int | None = None,
    pretrained: bool | None = None,
) -> DualEncoder:
    """Build the dual encoder of ``cfg`` (``head`` / ``logvar_init`` override its head; ``seed`` fixes the
    random init). Missing pretrained weights raise `WeightsNotFoundError` before anything is built.
    """
    if head or logvar_init is not None:
        cfg = cfg.with_head(head or cfg.head.kind, logvar_init)
    use_pretrained = cfg.image.pretrained if pretrained is None else pretrained
    if use_pretrained:
        image_weights_file(cfg.image)
    if cfg.text.name_or_path is not None and pretrained is not False:
        text_model_path(cfg.text)
    return _build(cfg, use_pretrained, None, seed)


def _build(cfg: ModelConfig, pretrained: bool, text_config: dict | None, seed: int | None) -> DualEncoder:
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        image = create_image_encoder(cfg.image, pretrained=pretrained)
        text = create_text_encoder(cfg.text, backbone_config=text_config)
        image_head = create_head(cfg.head, image.num_features)
        text_head = create_head(cfg.head, text.num_features)
    return DualEncoder(image, text, image_head, text_head, cfg)


def save_model(model: DualEncoder, path: str | Path) -> None:
    """Write the model folder atomically; equal weights give byte-identical files."""
    from safetensors.torch import save_file

    text_config = model.text.backbone.config.to_dict()
    meta = {"model": dataclasses.asdict(model.config), "text_backbone": text_config}
    with atomic_dir(path) as tmp:
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS_FILE))
        (tmp / CONFIG_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> DualEncoder:
    """Rebuild a model saved by `save_model` from its folder alone (no hub, no pretrained download)."""
    from safetensors.torch import load_file

    path = Path(path)
    if not (path / CONFIG_FILE).is_file() or not (path / WEIGHTS_FILE).is_file():
        raise ModelFolderError(f"{path}: not a saved model folder (needs {CONFIG_FILE} and {WEIGHTS_FILE})")
    meta = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
    cfg = build(ModelConfig, meta["model"], f"{path / CONFIG_FILE}:model")
    model = _build(cfg, False, meta["text_backbone"], seed=0)
    try:
        model.load_state_dict(load_file(str(path / WEIGHTS_FILE), device=str(map_location)))
    except Exception as exc:  # safetensors raises its own types for truncated or foreign files
        raise ModelFolderError(
            f"{path / WEIGHTS_FILE}: unreadable or not this architecture's weights ({exc}); retrain it "
            "(dvc repro) or restore it (dvc checkout)"
        ) from exc
    return model
