"""Validation retrieval: embed the validation split once, then R@K both ways and RSUM.

A small stand-in for the full metrics package; it scores with the method's own similarity (cosine or
−distance), with the ground truth on the diagonal (one image and one text per study, same order).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import Tensor

KS = (1, 5, 10)


def true_rank(scores: Tensor) -> Tensor:
    """0-based rank of each row's diagonal item; ties count against the query (a constant model scores 0)."""
    positive = scores.diagonal().unsqueeze(1)
    return (scores >= positive).sum(dim=1) - 1


def recall_at_k(scores: Tensor, ks: Iterable[int] = KS) -> dict[int, float]:
    ranks = true_rank(scores)
    return {k: float((ranks < k).float().mean()) * 100.0 for k in ks}


def retrieval_metrics(similarity: Tensor, ks: Iterable[int] = KS) -> dict[str, float]:
    """`similarity` [N images, N texts] → i2t/t2i R@K (percent), RSUM over those, and the random R@K."""
    ks = tuple(ks)
    if similarity.dim() != 2 or similarity.shape[0] != similarity.shape[1] or similarity.shape[0] == 0:
        raise ValueError(f"expected a non-empty square similarity matrix, got {tuple(similarity.shape)}")
    similarity = similarity.float()
    n = similarity.shape[0]
    out: dict[str, float] = {"n": float(n)}
    for direction, scores in (("i2t", similarity), ("t2i", similarity.T)):
        for k, value in recall_at_k(scores, ks).items():
            out[f"{direction}_r{k}"] = value
    out["rsum"] = sum(out[f"{d}_r{k}"] for d in ("i2t", "t2i") for k in ks)
    for k in ks:
        out[f"random_r{k}"] = min(k, n) / n * 100.0
    return out


def _cat(parts: list[Mapping[str, Tensor]]) -> dict[str, Tensor]:
    keys = [k for k in parts[0] if k != "feat"]
    return {k: torch.cat([p[k].float() for p in parts]) for k in keys}


@torch.no_grad()
def embed_split(model, loader: Iterable[Mapping[str, Tensor]], device: torch.device, autocast) -> tuple:
    """Image and text head outputs of every study the evaluation loader yields."""
    images, texts = [], []
    for batch in loader:
        with autocast():
            images.append(model.encode_image(batch["image"].to(device)))
            texts.append(model.encode_text(batch["input_ids"].to(device), batch["attention_mask"].to(device)))
    if not images:
        raise ValueError("the validation loader yielded no studies (empty split or all excluded)")
    return _cat(images), _cat(texts)


@torch.no_grad()
def validate(model, loss, loader, device: torch.device, autocast) -> dict[str, float]:
    was_training = model.training
    model.eval()
    try:
        img, txt = embed_split(model, loader, device, autocast)
        return retrieval_metrics(loss.similarity(img, txt).cpu())
    finally:
        model.train(was_training)
