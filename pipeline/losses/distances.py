"""Vectorised pairwise distances and logits between two sets of embeddings.

Every function takes rows [N, D] and columns [M, D] (under DDP: local rows x gathered columns) and returns
[N, M]. They compute in at least fp32 with autocast disabled, because the ELK distance sums hundreds of
terms and mixed precision would make the logits of near-tied pairs meaningless.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import Tensor

# Elements of one [chunk, M, D] temporary of the ELK distance; bounds its transient memory (~16 MiB fp32).
ELK_CHUNK_ELEMENTS = 1 << 22


def precise(*tensors: Tensor) -> list[Tensor]:
    dtype = torch.promote_types(tensors[0].dtype, torch.float32)
    return [t.to(dtype) for t in tensors]


def _no_autocast(device: torch.device) -> contextlib.AbstractContextManager:
    return torch.autocast(device_type=device.type, enabled=False)


def cosine_similarity(rows: Tensor, cols: Tensor) -> Tensor:
    """Cosine similarity of every row with every column."""
    rows, cols = precise(rows, cols)
    with _no_autocast(rows.device):
        return F.normalize(rows, dim=-1) @ F.normalize(cols, dim=-1).T


def csd_distance(mu1: Tensor, logvar1: Tensor, mu2: Tensor, logvar2: Tensor) -> Tensor:
    """PCME++ closed-form sampled distance ‖μ1 − μ2‖² + Σσ1² + Σσ2² (μ as given; normalise before).

    It separates into norms and one matrix product, so it needs no [N, M, D] temporary at all.
    """
    mu1, logvar1, mu2, logvar2 = precise(mu1, logvar1, mu2, logvar2)
    with _no_autocast(mu1.device):
        sq = mu1.pow(2).sum(-1, keepdim=True) + mu2.pow(2).sum(-1) - 2.0 * (mu1 @ mu2.T)
        return sq.clamp_min(0.0) + logvar1.exp().sum(-1, keepdim=True) + logvar2.exp().sum(-1)


def _elk_chunk(mu1: Tensor, var1: Tensor, mu2: Tensor, var2: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    diff = mu1[:, None, :] - mu2[None, :, :]
    total = var1[:, None, :] + var2[None, :, :]
    return diff, total, total.reciprocal()


def _chunk_rows(n_cols: int, dim: int) -> int:
    return max(1, ELK_CHUNK_ELEMENTS // max(1, n_cols * dim))


class _ElkDistance(torch.autograd.Function):
    """ELK distance with row-chunked recomputation in backward.

    A plain broadcast would keep several [N, M, D] tensors alive for autograd (hundreds of MiB at
    N = M = 128, D = 512); here autograd stores only the [N, D] / [M, D] inputs.
    """

    @staticmethod
    def forward(ctx, mu1: Tensor, var1: Tensor, mu2: Tensor, var2: Tensor) -> Tensor:
        ctx.save_for_backward(mu1, var1, mu2, var2)
        out = mu1.new_empty(mu1.shape[0], mu2.shape[0])
        step = _chunk_rows(mu2.shape[0], mu2.shape[1])
        with _no_autocast(mu1.device):
            for start in range(0, mu1.shape[0], step):
                rows = slice(start, start + step)
                diff, total, inv = _elk_chunk(mu1[rows], var1[rows], mu2, var2)
                out[rows] = 0.5 * (diff.pow(2).mul_(inv).add_(total.log_())).sum(-1)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        mu1, var1, mu2, var2 = ctx.saved_tensors
        g_mu1, g_var1 = torch.empty_like(mu1), torch.empty_like(var1)
        g_mu2, g_var2 = torch.zeros_like(mu2), torch.zeros_like(var2)
        grad = grad.to(mu1.dtype)
        step = _chunk_rows(mu2.shape[0], mu2.shape[1])
        with _no_autocast(mu1.device):
            for start in range(0, mu1.shape[0], step):
                rows = slice(start, start + step)
                diff, _, inv = _elk_chunk(mu1[rows], var1[rows], mu2, var2)
                ratio = diff.mul_(inv)  # ∂d/∂μ1 = (μ1 − μ2)/s
                g = grad[rows]
                g_mu1[rows] = torch.einsum("nm,nmd->nd", g, ratio)
                g_mu2 -= torch.einsum("nm,nmd->md", g, ratio)
                dvar = inv.sub_(ratio.pow_(2)).mul_(0.5)  # ∂d/∂σ² = ½ (1/s − (μ1 − μ2)²/s²)
                g_var1[rows] = torch.einsum("nm,nmd->nd", g, dvar)
                g_var2 += torch.einsum("nm,nmd->md", g, dvar)
        return g_mu1, g_var1, g_mu2, g_var2


def elk_distance(mu1: Tensor, logvar1: Tensor, mu2: Tensor, logvar2: Tensor) -> Tensor:
    """MedProbCLIP eq. 1: ½ Σ_k [(μ1 − μ2)² / (σ1² + σ2²) + log(σ1² + σ2²)] for every row/column pair."""
    mu1, logvar1, mu2, logvar2 = precise(mu1, logvar1, mu2, logvar2)
    with _no_autocast(mu1.device):
        return _ElkDistance.apply(mu1, logvar1.exp(), mu2, logvar2.exp())


def elk_distance_naive(mu1: Tensor, logvar1: Tensor, mu2: Tensor, logvar2: Tensor) -> Tensor:
    """Broadcast reference of `elk_distance` (keeps [N, M, D] autograd state); for tests and benchmarks."""
    total = logvar1.exp()[:, None, :] + logvar2.exp()[None, :, :]
    diff = mu1[:, None, :] - mu2[None, :, :]
    return 0.5 * (diff.pow(2) / total + total.log()).sum(-1)


def identity_targets(n_rows: int, n_cols: int, offset: int, like: Tensor) -> Tensor:
    """Match matrix of local rows against global columns: row i's positive is column offset + i."""
    targets = like.new_zeros(n_rows, n_cols)
    index = torch.arange(n_rows, device=like.device)
    targets[index, index + offset] = 1.0
    return targets


def positive_index(n_rows: int, offset: int, device: torch.device) -> Tensor:
    return torch.arange(n_rows, device=device) + offset
