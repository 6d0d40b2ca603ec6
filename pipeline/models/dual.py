"""The dual encoder shared by every method: encoders + heads, returning a dict per view and section."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from pipeline.models.encoders import ImageEncoder, TextEncoder

NO_DECAY_NAMES = ("bias", "norm", "pos_embed", "cls_token", "position_embeddings", "LayerNorm")


class DualEncoder(nn.Module):
    """Image and text towers with their heads.

    ``forward`` takes the loader's batch tensors (images [B, V, 1, H, W], input_ids / attention_mask
    [B, S, L]) and returns ``{"img_0": {...}, ..., "txt_0": {...}, ...}``, each holding the head output
    (``emb``, or ``mu`` and ``logvar``) and the pooled backbone feature ``feat``. The views and sections
    of a batch go through their tower in one pass.
    """

    def __init__(
        self, image: ImageEncoder, text: TextEncoder, image_head: nn.Module, text_head: nn.Module, config: Any
    ) -> None:
        super().__init__()
        self.image = image
        self.text = text
        self.image_head = image_head
        self.text_head = text_head
        self.config = config

    def encode_image(self, images: Tensor) -> dict[str, Tensor]:
        """images [N, 1, H, W] → head output plus ``feat``."""
        feat = self.image(images)
        return {**self.image_head(feat), "feat": feat}

    def encode_text(self, input_ids: Tensor, attention_mask: Tensor) -> dict[str, Tensor]:
        """input_ids / attention_mask [N, L] → head output plus ``feat``."""
        feat = self.text(input_ids, attention_mask)
        return {**self.text_head(feat), "feat": feat}

    def forward(
        self, images: Tensor, input_ids: Tensor, attention_mask: Tensor
    ) -> dict[str, dict[str, Tensor]]:
        if images.dim() != 5 or input_ids.dim() != 3 or attention_mask.shape != input_ids.shape:
            raise ValueError(
                "expected images [B, V, 1, H, W] and input_ids/attention_mask [B, S, L], got "
                f"{tuple(images.shape)}, {tuple(input_ids.shape)}, {tuple(attention_mask.shape)}"
            )
        batch, views, sections = images.shape[0], images.shape[1], input_ids.shape[1]
        img = self.encode_image(images.flatten(0, 1))
        txt = self.encode_text(input_ids.flatten(0, 1), attention_mask.flatten(0, 1))
        out: dict[str, dict[str, Tensor]] = {}
        for v in range(views):
            out[f"img_{v}"] = {k: t.unflatten(0, (batch, views))[:, v] for k, t in img.items()}
        for s in range(sections):
            out[f"txt_{s}"] = {k: t.unflatten(0, (batch, sections))[:, s] for k, t in txt.items()}
        return out

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """AdamW groups: biases, norms, position embeddings and CLS tokens are not decayed."""
        decay, no_decay = [], []
        for name, param in self.named_parameters():
            if not param.requires_grad:
                continue
            skip = param.ndim <= 1 or any(key in name for key in NO_DECAY_NAMES)
            (no_decay if skip else decay).append(param)
        return [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
