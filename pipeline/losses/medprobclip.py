"""MedProbCLIP (paper eq. 1-4): ELK distance between Gaussian embeddings, per-pair sigmoid NLL over the
four image-text pairs, intra-image and intra-text terms, and a VIB penalty for each modality.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from pipeline.losses.base import Batch, Outputs, symmetric_infonce, view
from pipeline.losses.distances import elk_distance, identity_targets
from pipeline.losses.probabilistic import ProbabilisticLoss, kl_to_standard_normal

PAIR_LOSSES = ("sigmoid", "softmax")


@dataclass(frozen=True)
class MedProbClipConfig:
    head: str = "gaussian"
    pair_loss: str = "sigmoid"  # paper eq. 2; "softmax" = the reference code's symmetric cross-entropy
    lambda_image: float = 1.0
    lambda_text: float = 0.1
    beta_image: float = 1e-4
    beta_text: float = 1e-4
    a_init: float = 1.0
    # None = ½·D·ln 2, the ELK distance of two unit-variance Gaussians with equal means: initial logits sit
    # near 0 instead of near −D/3 (where every sigmoid saturates). The distance keeps the paper's form.
    b_init: float | None = None
    a_min: float = 1e-3

    def __post_init__(self) -> None:
        if self.pair_loss not in PAIR_LOSSES:
            raise ValueError(f"pair_loss must be one of {PAIR_LOSSES}, got {self.pair_loss!r}")


def initial_offset(cfg: MedProbClipConfig, embed_dim: int | None) -> float:
    if cfg.b_init is not None:
        return cfg.b_init
    if embed_dim is None:
        raise ValueError("medprobclip with b_init: null needs embed_dim (b_init = ½·D·ln 2)")
    return 0.5 * embed_dim * math.log(2.0)


class MedProbClipLoss(ProbabilisticLoss):
    name = "medprobclip"
    display_name = "MedProbCLIP"
    Config = MedProbClipConfig
    views = 2
    sections = 2
    distance_fn = staticmethod(elk_distance)

    def __init__(self, cfg: MedProbClipConfig, embed_dim: int | None = None) -> None:
        super().__init__(cfg, embed_dim, cfg.a_init, initial_offset(cfg, embed_dim), cfg.a_min)

    def pair(self, x: Outputs, y: Outputs) -> Tensor:
        """Pair loss averaged over both directions and all (local × global) pairs.

        The paper prints the negative term as log σ(−a·d − b); read literally that pulls negatives
        together, so this is the standard BCE with logits −a·d + b (targets = identity).
        """
        logits_xy, logits_yx, offset = self.pair_logits(x, y)
        if self.cfg.pair_loss == "softmax":
            return symmetric_infonce(logits_xy, logits_yx, offset)
        targets = identity_targets(logits_xy.shape[0], logits_xy.shape[1], offset, logits_xy)
        return 0.5 * (
            F.binary_cross_entropy_with_logits(logits_xy, targets)
            + F.binary_cross_entropy_with_logits(logits_yx, targets)
        )

    def forward(self, outputs: Outputs, batch: Batch) -> dict[str, Tensor]:
        del batch
        img = [view(outputs, f"img_{v}") for v in range(2)]
        txt = [view(outputs, f"txt_{s}") for s in range(2)]
        inter = sum(self.pair(i, t) for i in img for t in txt) / 4
        intra_image = self.pair(img[0], img[1])
        intra_text = self.pair(txt[0], txt[1])
        kl_image = sum(kl_to_standard_normal(*self.prepare(i)).sum(-1).mean() for i in img) / 2
        kl_text = sum(kl_to_standard_normal(*self.prepare(t)).sum(-1).mean() for t in txt) / 2
        cfg = self.cfg
        loss = (
            inter
            + cfg.lambda_image * intra_image
            + cfg.lambda_text * intra_text
            + cfg.beta_image * kl_image
            + cfg.beta_text * kl_text
        )
        terms = {"inter": inter, "intra_image": intra_image, "intra_text": intra_text}
        terms |= {"kl_image": kl_image, "kl_text": kl_text}
        return {"loss": loss, **{k: v.detach() for k, v in terms.items()}}
