"""Gathering features across DDP ranks for contrastive losses.

Losses compare local rows with global columns; the positive of local row i is global column offset + i.
All helpers are no-ops when torch.distributed is not initialised, so single-process code is unchanged.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank_offset(local_rows: int) -> int:
    """Global column of this rank's first row (equal local batch sizes, as all_gather requires)."""
    return dist.get_rank() * local_rows if is_distributed() else 0


class _AllGather(torch.autograd.Function):
    """all_gather whose backward sums every rank's gradient for each slice and returns this rank's own.

    Each rank's loss (local rows × global columns) also depends on the other ranks' features through the
    columns; routing those gradient terms back to the owning rank makes DDP's averaged gradients equal the
    single-process full-batch gradients (a local-slice-only gather drops them).
    """

    @staticmethod
    def forward(ctx, tensor: Tensor) -> Tensor:
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor.contiguous())
        ctx.rows = tensor.shape[0]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)  # gloo has no reduce_scatter: sum everything, keep this rank's slice
        start = dist.get_rank() * ctx.rows
        return grad[start : start + ctx.rows]


def gather_with_grad(tensor: Tensor) -> Tensor:
    """all_gather along dim 0 that carries gradients back to the rank that owns each row."""
    if not is_distributed():
        return tensor
    return _AllGather.apply(tensor)


def gather_no_grad(tensor: Tensor) -> Tensor:
    """all_gather for tensors that carry no gradient (labels, soft-target inputs)."""
    if not is_distributed():
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)
