"""PCME++: closed-form sampled distance on L2-normalised μ, pairwise BCE with learnable a, b (init 5, 5),
pseudo-positives (α) and a VIB penalty averaged over dimensions; optional mixup/cutmix soft targets.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from pipeline.losses.base import Batch, Outputs, gaussian, view
from pipeline.losses.distances import csd_distance
from pipeline.losses.probabilistic import ProbabilisticLoss, kl_to_standard_normal


@dataclass(frozen=True)
class PcmeppConfig:
    head: str = "gaussian"
    # log σ² of the head at init. Σσ² enters the CSD once per dimension: at 0 (σ² = 1) a D = 64 head starts
    # with d ≈ 2D, logits ≈ −5·2D, and the first steps only crush σ² to its floor; null = the model's.
    logvar_init: float | None = -5.0
    a_init: float = 10.0  # paper: 5; from random init at D = 64 that collapses (params.yaml says why)
    b_init: float = 10.0
    pseudo_positive_weight: float = 0.1
    vib_beta: float = 1e-4
    mix_fraction: float = 0.0  # share of each batch's images replaced by a mixup/cutmix sample; 0 = off
    mix_alpha: float = 1.0  # mixing ratio λ ~ Beta(α, α)
    cutmix_prob: float = 0.5  # a mixed sample uses cutmix with this probability, else mixup

    def __post_init__(self) -> None:
        if not 0.0 <= self.mix_fraction <= 1.0 or not 0.0 <= self.cutmix_prob <= 1.0:
            raise ValueError("mix_fraction and cutmix_prob must lie in [0, 1]")


def pseudo_positive_targets(logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """Targets with every column whose logit ≥ the row's positive logit promoted to the positive's value.

    A row without any positive (all-zero targets) gets no pseudo-positives. Returns (targets, count of
    promoted pairs beyond the positives). No gradient flows through the selection.
    """
    with torch.no_grad():
        value, index = targets.max(dim=1, keepdim=True)
        chosen = (logits >= logits.gather(1, index)) & (value > 0)
        promoted = torch.where(chosen, value.expand_as(targets), targets)
        count = chosen.sum() - (value > 0).sum()
    return promoted, count


def mix_images(
    images: Tensor, fraction: float, alpha: float, cutmix_prob: float, generator: torch.Generator | None
) -> tuple[Tensor, Tensor]:
    """Mix a share of the batch with random partners; returns (images, soft match targets [B, B]).

    All views of a study are mixed with the same partner and ratio. Target row i puts λ on its own text
    and 1 − λ on its partner's (λ = the kept area for cutmix).
    """
    size = images.shape[0]
    targets = torch.eye(size, dtype=images.dtype, device=images.device)
    count = round(fraction * size)
    if count == 0 or size < 2:
        return images, targets
    partner = torch.randperm(size, generator=generator)
    rows = torch.randperm(size, generator=generator)[:count].sort().values
    cut = torch.rand(count, generator=generator) < cutmix_prob
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    rng = np.random.default_rng(seed)
    height, width = images.shape[-2:]
    mixed = images.clone()
    for k, i in enumerate(rows.tolist()):
        j = int(partner[i])
        lam = float(rng.beta(alpha, alpha)) if alpha > 0 else 1.0
        if cut[k]:
            h, w = round(height * (1 - lam) ** 0.5), round(width * (1 - lam) ** 0.5)
            y0, x0 = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
            mixed[i, ..., y0 : y0 + h, x0 : x0 + w] = images[j, ..., y0 : y0 + h, x0 : x0 + w]
            lam = 1.0 - h * w / (height * width)
        else:
            mixed[i] = lam * images[i] + (1 - lam) * images[j]
        targets[i] = 0.0
        targets[i, i] += lam
        targets[i, j] += 1.0 - lam
    return mixed, targets


def _place(local: Tensor, n_cols: int, offset: int) -> Tensor:
    out = local.new_zeros(local.shape[0], n_cols)
    out[:, offset : offset + local.shape[1]] = local
    return out


class PcmeppLoss(ProbabilisticLoss):
    name = "pcmepp"
    display_name = "PCME++"
    Config = PcmeppConfig
    distance_fn = staticmethod(csd_distance)

    def __init__(self, cfg: PcmeppConfig, embed_dim: int | None = None) -> None:
        super().__init__(cfg, embed_dim, cfg.a_init, cfg.b_init)

    def prepare(self, out: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        mu, logvar = gaussian(out)
        return F.normalize(mu, dim=-1), logvar

    def prepare_batch(self, batch: Batch, generator: torch.Generator | None = None) -> Batch:
        if self.cfg.mix_fraction <= 0:
            return batch
        cfg = self.cfg
        images, targets = mix_images(
            batch["images"], cfg.mix_fraction, cfg.mix_alpha, cfg.cutmix_prob, generator
        )
        return {**batch, "images": images, "match_targets": targets}

    def forward(self, outputs: Outputs, batch: Batch) -> dict[str, Tensor]:
        img, txt = view(outputs, "img_0"), view(outputs, "txt_0")
        logits_it, logits_ti, offset = self.pair_logits(img, txt)
        local = batch.get("match_targets")
        if local is None:
            local = torch.eye(logits_it.shape[0], device=logits_it.device)
        local = local.to(logits_it.dtype)
        targets_it = _place(local, logits_it.shape[1], offset)
        targets_ti = _place(local.T, logits_ti.shape[1], offset)
        bce = F.binary_cross_entropy_with_logits
        match = bce(logits_it, targets_it) + bce(logits_ti, targets_ti)
        pseudo_it, n_it = pseudo_positive_targets(logits_it, targets_it)
        pseudo_ti, n_ti = pseudo_positive_targets(logits_ti, targets_ti)
        pseudo = bce(logits_it, pseudo_it) + bce(logits_ti, pseudo_ti)
        vib = sum(kl_to_standard_normal(*self.prepare(o)).mean() for o in (img, txt))
        loss = match + self.cfg.pseudo_positive_weight * pseudo + self.cfg.vib_beta * vib
        return {
            "loss": loss,
            "match": match.detach(),
            "pseudo_positive": pseudo.detach(),
            "vib": vib.detach(),
            "n_pseudo_positives": (n_it + n_ti).to(loss.dtype),
        }
