"""Image (timm) and text (transformers) encoder factories that never touch the network.

Pretrained weights come from a local path or the local HF/timm cache; when neither has them the factory
fails before building anything, with a message saying what to put where.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from pipeline.errors import PipelineError

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")
IMAGE_POOLS = ("token", "avg")
TEXT_POOLS = ("cls", "mean")


class WeightsNotFoundError(PipelineError, FileNotFoundError):
    """Pretrained weights are needed but are neither at the configured path nor in the local cache."""


@dataclass(frozen=True)
class ImageEncoderConfig:
    """A timm architecture plus overrides; None leaves the architecture's own value.

    ``img_size`` is the loader's input size; it is passed to timm only for fixed-input-size architectures
    (ViTs with position embeddings), since CNNs take any size and reject the argument. ``channels`` and
    ``stem_width`` narrow a ResNet, ``patch_size`` … ``num_heads`` shrink a ViT.
    """

    arch: str = "vit_tiny_patch16_224"
    pretrained: bool = False
    weights: str | None = None  # local file or folder with timm weights; None = the HF cache
    img_size: int = 64
    patch_size: int | None = 8
    depth: int | None = 2
    embed_dim: int | None = 64
    num_heads: int | None = 2
    channels: Sequence[int] | None = None  # Sequence, not tuple: params may set it to null
    stem_width: int | None = None
    pool: str = "token"  # token = CLS feature (ViT), avg = mean of patch tokens / global average pool
    drop_path_rate: float = 0.0

    def __post_init__(self) -> None:
        if self.pool not in IMAGE_POOLS:
            raise ValueError(f"image pool must be one of {IMAGE_POOLS}, got {self.pool!r}")
        if self.channels is not None:
            object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))


@dataclass(frozen=True)
class TextEncoderConfig:
    name_or_path: str | None = None  # HF repo id or local folder; None = a random BERT from the fields below
    tokenizer: str = "models/tokenizer"
    vocab_size: int = 4096  # ≥ the tokenizer's vocabulary size
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 2
    intermediate_size: int = 128
    max_length: int = 128
    pool: str = "cls"  # cls = first token (~constant in a random tiny BERT), mean = masked token mean

    def __post_init__(self) -> None:
        if self.pool not in TEXT_POOLS:
            raise ValueError(f"text pool must be one of {TEXT_POOLS}, got {self.pool!r}")


def cached_file(repo_id: str, filename: str) -> str | None:
    """Path of ``filename`` of ``repo_id`` in the local HF cache, without any network access."""
    from huggingface_hub import try_to_load_from_cache

    hit = try_to_load_from_cache(repo_id, filename)
    return hit if isinstance(hit, str) else None


def image_weights_file(cfg: ImageEncoderConfig) -> str:
    """Locate pretrained timm weights locally or raise `WeightsNotFoundError` saying where they belong."""
    import timm

    if cfg.weights:
        path = Path(cfg.weights)
        found = [path / f for f in WEIGHT_FILES if (path / f).is_file()] if path.is_dir() else []
        if path.is_file() or found:
            return str(path if path.is_file() else found[0])
        raise WeightsNotFoundError(
            f"image encoder '{cfg.arch}': no weights at '{path}'. Put the timm checkpoint there as a file "
            f"or as {' / '.join(WEIGHT_FILES)} inside that folder."
        )
    pretrained_cfg = timm.models.get_pretrained_cfg(cfg.arch)
    hub_id = getattr(pretrained_cfg, "hf_hub_id", None)
    for filename in WEIGHT_FILES if hub_id else ():
        hit = cached_file(hub_id, filename)
        if hit:
            return hit
    where = f"the HF cache as '{hub_id}'" if hub_id else "timm's registry (no hub id for this arch)"
    raise WeightsNotFoundError(
        f"image encoder '{cfg.arch}': pretrained weights not found offline in {where}. Either set "
        f"model.<profile>.image.weights to a local folder holding model.safetensors, or on a machine with "
        f"internet run `hf download {hub_id or 'timm/<arch>'}` and copy the HF cache here (HF_HOME)."
    )


def _is_repo_id(name: str) -> bool:
    return name.count("/") == 1 and not name.startswith((".", "/"))


def text_model_path(cfg: TextEncoderConfig) -> str:
    """Local folder or cached repo id of the text backbone, or `WeightsNotFoundError`."""
    assert cfg.name_or_path is not None
    path = Path(cfg.name_or_path)
    if (path / "config.json").is_file() and any((path / f).is_file() for f in WEIGHT_FILES):
        return str(path)
    if not path.exists() and _is_repo_id(cfg.name_or_path) and cached_file(cfg.name_or_path, "config.json"):
        return cfg.name_or_path
    raise WeightsNotFoundError(
        f"text encoder '{cfg.name_or_path}': not found offline. Put a transformers model folder (config.json "
        f"+ {' or '.join(WEIGHT_FILES)} + tokenizer files) there and point model.<profile>.text.name_or_path "
        f"and .tokenizer at it, or on a machine with internet run `hf download {cfg.name_or_path}` and copy "
        f"the HF cache here (HF_HOME)."
    )


class ImageEncoder(nn.Module):
    """timm backbone with one input channel, returning its pooled feature [N, F]."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.num_features = int(backbone.num_features)

    def forward(self, images: Tensor) -> Tensor:
        return self.backbone(images)


ARCH_OVERRIDES = ("patch_size", "depth", "embed_dim", "num_heads", "channels", "stem_width")


def has_fixed_input_size(arch: str) -> bool:
    """Whether timm builds ``arch`` for one input size (position embeddings) rather than any size."""
    import timm

    if not timm.is_model(arch):
        raise ValueError(f"image encoder: unknown timm architecture '{arch}'")
    return bool(getattr(timm.models.get_pretrained_cfg(arch), "fixed_input_size", False))


def create_image_encoder(cfg: ImageEncoderConfig, pretrained: bool | None = None) -> ImageEncoder:
    import timm

    pretrained = cfg.pretrained if pretrained is None else pretrained
    kwargs: dict[str, Any] = {k: getattr(cfg, k) for k in ARCH_OVERRIDES if getattr(cfg, k) is not None}
    if has_fixed_input_size(cfg.arch):
        kwargs["img_size"] = cfg.img_size
    if pretrained:
        kwargs["pretrained_cfg_overlay"] = {"file": image_weights_file(cfg)}
    try:
        backbone = timm.create_model(
            cfg.arch,
            pretrained=pretrained,
            num_classes=0,
            in_chans=1,
            global_pool=cfg.pool,
            drop_path_rate=cfg.drop_path_rate,
            **kwargs,
        )
    except TypeError as err:
        raise ValueError(
            f"image encoder '{cfg.arch}' rejects an override ({err}); set the fields it does not take "
            f"({', '.join(sorted(kwargs))} given) to null in model.<profile>.image"
        ) from err
    return ImageEncoder(backbone)


class TextEncoder(nn.Module):
    """transformers encoder returning the CLS (or masked-mean) feature [N, H]."""

    def __init__(self, backbone: nn.Module, pool: str) -> None:
        super().__init__()
        if getattr(backbone, "pooler", None) is not None:
            backbone.pooler = None  # unused; would leave parameters without gradients under DDP
        self.backbone = backbone
        self.pool = pool
        self.num_features = int(backbone.config.hidden_size)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pool == "cls":
            return hidden[:, 0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)


def text_backbone_config(cfg: TextEncoderConfig) -> Any:
    from transformers import BertConfig

    return BertConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        intermediate_size=cfg.intermediate_size,
        max_position_embeddings=cfg.max_length,
    )


def create_text_encoder(cfg: TextEncoderConfig, backbone_config: dict | None = None) -> TextEncoder:
    """Random BERT from ``cfg`` or pretrained from ``cfg.name_or_path``; ``backbone_config`` (a saved HF
    config dict) rebuilds the architecture without weights, for loading a checkpoint."""
    from transformers import AutoConfig, AutoModel

    if backbone_config is not None:
        config = AutoConfig.for_model(**backbone_config)
        backbone = AutoModel.from_config(config)
    elif cfg.name_or_path is None:
        backbone = AutoModel.from_config(text_backbone_config(cfg))
    else:
        backbone = AutoModel.from_pretrained(text_model_path(cfg), local_files_only=True)
    return TextEncoder(backbone, cfg.pool)


def load_tokenizer(cfg: TextEncoderConfig) -> Any:
    """The profile's tokenizer (our WordPiece folder for tiny, the backbone's for paper), offline only."""
    from transformers import AutoTokenizer

    source = cfg.tokenizer
    fix = (
        "run the `tokenizer` stage (tiny profile) or provide the backbone's tokenizer folder (paper profile)"
    )
    if not Path(source).is_dir() and not (_is_repo_id(source) and cached_file(source, "config.json")):
        raise WeightsNotFoundError(f"tokenizer '{source}' not found: {fix}")
    if Path(source).is_dir() and not any((Path(source) / f).is_file() for f in TOKENIZER_FILES):
        raise WeightsNotFoundError(f"tokenizer '{source}': no {' or '.join(TOKENIZER_FILES)} in it; {fix}")
    try:
        return AutoTokenizer.from_pretrained(source, local_files_only=True)
    except (OSError, ValueError, RuntimeError) as exc:  # a damaged folder, not a missing one
        raise WeightsNotFoundError(f"tokenizer '{source}' cannot be loaded ({exc}); {fix}") from exc
