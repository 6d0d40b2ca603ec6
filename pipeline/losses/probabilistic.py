"""Shared parts of the Gaussian-embedding losses: learnable a, b; logits −a·d + b; VIB terms."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn

from pipeline.losses.base import ContrastiveLoss, gaussian
from pipeline.losses.distances import precise


def kl_to_standard_normal(mu: Tensor, logvar: Tensor) -> Tensor:
    """Per-dimension KL(N(μ, σ²) ‖ N(0, 1)) = ½ (σ² + μ² − 1 − log σ²), shape of ``mu``."""
    mu, logvar = precise(mu, logvar)
    return 0.5 * (logvar.exp() + mu.pow(2) - 1.0 - logvar)


class ProbabilisticLoss(ContrastiveLoss):
    """A loss on Gaussian embeddings whose match logit is −a·d + b with learnable a (≥ ``a_min``) and b."""

    heads = ("gaussian",)
    probabilistic = True
    distance_fn: Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]

    def __init__(self, cfg, embed_dim: int | None, a_init: float, b_init: float, a_min: float = 0.0) -> None:
        super().__init__(cfg, embed_dim)
        if a_init <= a_min:
            raise ValueError(f"a_init must be > {a_min}, got {a_init}")
        self.a = nn.Parameter(torch.tensor(float(a_init)))
        self.b = nn.Parameter(torch.tensor(float(b_init)))
        self.a_min = a_min

    def prepare(self, out: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """(μ, log σ²) as this method's distance expects them."""
        return gaussian(out)

    def distance(self, query: Mapping[str, Tensor], gallery: Mapping[str, Tensor]) -> Tensor:
        return type(self).distance_fn(*self.prepare(query), *self.prepare(gallery))

    def scale(self) -> Tensor:
        return self.a.clamp(min=self.a_min)

    def logits(self, distance: Tensor) -> Tensor:
        return -self.scale() * distance + self.b

    def pair_logits(self, x: Mapping[str, Tensor], y: Mapping[str, Tensor]) -> tuple[Tensor, Tensor, int]:
        """Logits of local x rows vs global y columns, of local y rows vs global x columns, and the offset."""
        d_xy, d_yx, offset = self.cross(type(self).distance_fn, self.prepare(x), self.prepare(y))
        return self.logits(d_xy), self.logits(d_yx), offset

    def similarity(self, query: Mapping[str, Tensor], gallery: Mapping[str, Tensor]) -> Tensor:
        return -self.distance(query, gallery)

    def match_probability(self, query: Mapping[str, Tensor], gallery: Mapping[str, Tensor]) -> Tensor:
        """sigmoid(−a·d + b): the calibrated probability that query and gallery item match."""
        return torch.sigmoid(self.logits(self.distance(query, gallery)))

    def score_affine(self) -> tuple[float, float]:
        """logit = −a·d + b = a·score + b, since the score is −d."""
        return float(self.scale().detach()), float(self.b.detach())

    def logs(self) -> dict[str, float]:
        return {"a": float(self.scale().detach()), "b": float(self.b.detach())}
