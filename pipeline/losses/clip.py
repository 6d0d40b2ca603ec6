"""CLIP: symmetric InfoNCE on cosine similarity with a learnable temperature (one image, one text)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from pipeline.losses.base import (
    Batch,
    ContrastiveLoss,
    LogitScale,
    Outputs,
    embedding,
    symmetric_infonce,
    view,
)
from pipeline.losses.distances import cosine_similarity


@dataclass(frozen=True)
class ClipConfig:
    head: str = "deterministic"
    temperature_init: float = 0.07
    max_logit_scale: float = 100.0
    learn_temperature: bool = True


class ClipLoss(ContrastiveLoss):
    name = "clip"
    display_name = "CLIP"
    Config = ClipConfig

    def __init__(self, cfg: ClipConfig, embed_dim: int | None = None) -> None:
        super().__init__(cfg, embed_dim)
        self.logit_scale = LogitScale(cfg.temperature_init, cfg.max_logit_scale, cfg.learn_temperature)

    def pair(self, x: Tensor, y: Tensor) -> Tensor:
        logits_xy, logits_yx, offset = self.cross(cosine_similarity, (x,), (y,))
        scale = self.logit_scale()
        return symmetric_infonce(scale * logits_xy, scale * logits_yx, offset)

    def forward(self, outputs: Outputs, batch: Batch) -> dict[str, Tensor]:
        del batch
        loss = self.pair(embedding(view(outputs, "img_0")), embedding(view(outputs, "txt_0")))
        return {"loss": loss, "infonce": loss.detach()}

    def logs(self) -> dict[str, float]:
        return {"temperature": float(1.0 / self.logit_scale().detach())}
