"""Validation retrieval during training: R@1/5/10 both ways and RSUM, with the method's own similarity.

The same embedding and ranking code as the evaluation flow (`pipeline.embedding`, `pipeline.metrics`), so
the validation numbers that pick the best epoch are the evaluation's numbers on another split.
"""

from __future__ import annotations

import torch

from pipeline.embedding import embed_loader
from pipeline.metrics.ranking import rank_both_ways
from pipeline.metrics.retrieval import retrieval_metrics

KS = (1, 5, 10)


@torch.no_grad()
def validate(model, loss, loader, device: torch.device, autocast) -> dict[str, float]:
    embedded = embed_loader(model, loader, device, autocast)
    image = {k: v.to(device) for k, v in embedded.image.items()}
    text = {k: v.to(device) for k, v in embedded.text.items()}
    i2t, t2i = rank_both_ways(loss.similarity, image, text, k=max(KS))
    return retrieval_metrics(i2t, t2i, KS, KS)
