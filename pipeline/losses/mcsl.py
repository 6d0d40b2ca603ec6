"""CLIP-XRad's multi-view concept-similarity loss (MCSL, paper eq. 1-7).

Soft targets blend the identity pairing with a row-softmax of the studies' label Jaccard similarity, so
studies sharing findings are not pushed apart as hard negatives.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from pipeline.losses.base import Batch, LossInputError, Outputs, embedding, view
from pipeline.losses.clip import ClipLoss
from pipeline.losses.distances import cosine_similarity, identity_targets
from pipeline.losses.distributed import gather_no_grad, is_distributed, rank_offset


@dataclass(frozen=True)
class McslConfig:
    head: str = "deterministic"
    temperature_init: float = 0.07
    max_logit_scale: float = 100.0
    learn_temperature: bool = True
    concept_weight: float = 0.7  # λ in Ŝ = (I + λĴ) / (1 + λ)
    jaccard_temperature: float = 0.07  # τ_J of the Jaccard row-softmax (the paper reuses the symbol τ)


def binary_labels(labels: Tensor) -> Tensor:
    """Positive (1) → 1; negative, uncertain (−1) and blank (NaN) → 0, as CLIP-XRad trains."""
    return (labels == 1).to(torch.promote_types(labels.dtype, torch.float32))


def jaccard(rows: Tensor, cols: Tensor) -> Tensor:
    """|l_i ∩ l_j| / |l_i ∪ l_j| of binary label vectors, with 0/0 defined as 0."""
    inter = rows @ cols.T
    union = rows.sum(-1, keepdim=True) + cols.sum(-1) - inter
    return torch.where(union > 0, inter / union.clamp_min(1.0), torch.zeros_like(inter))


def concept_targets(rows: Tensor, cols: Tensor, offset: int, weight: float, temperature: float) -> Tensor:
    """Ŝ for local label rows × global label columns; each row sums to 1.

    Ĵ excludes the self-match; a row with no other column (a batch of one) gets Ĵ = 0 and Ŝ = the identity.
    """
    eye = identity_targets(rows.shape[0], cols.shape[0], offset, rows)
    if cols.shape[0] < 2:
        return eye
    scores = (jaccard(rows, cols) / temperature).masked_fill(eye.bool(), float("-inf"))
    return (eye + weight * scores.softmax(dim=-1)) / (1.0 + weight)


def soft_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    return -(targets * logits.log_softmax(dim=-1)).sum(-1).mean()


class McslLoss(ClipLoss):
    name = "mcsl"
    display_name = "MCSL (CLIP-XRad)"
    Config = McslConfig
    views = 2
    sections = 2

    def targets(self, labels: Tensor) -> Tensor:
        local = binary_labels(labels)
        offset = rank_offset(local.shape[0]) if is_distributed() else 0
        return concept_targets(
            local, gather_no_grad(local), offset, self.cfg.concept_weight, self.cfg.jaccard_temperature
        )

    def semantic(self, x: Tensor, y: Tensor, targets: Tensor) -> Tensor:
        logits_xy, logits_yx, _ = self.cross(cosine_similarity, (x,), (y,))
        scale = self.logit_scale()
        targets = targets.to(logits_xy.dtype)
        i2t = soft_cross_entropy(scale * logits_xy, targets)
        return 0.5 * (i2t + soft_cross_entropy(scale * logits_yx, targets))

    def forward(self, outputs: Outputs, batch: Batch) -> dict[str, Tensor]:
        if "labels" not in batch:
            raise LossInputError("mcsl needs batch['labels'] [B, 14] (CheXpert values 1/0/-1/NaN)")
        targets = self.targets(batch["labels"])
        img = [embedding(view(outputs, f"img_{v}")) for v in range(2)]
        txt = [embedding(view(outputs, f"txt_{s}")) for s in range(2)]
        loss = sum(self.semantic(i, t, targets) for i in img for t in txt) / 4
        return {"loss": loss, "mcsl": loss.detach()}
