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


def gather_with_grad(tensor: Tensor) -> Tensor:
    """all_gather along dim 0 that keeps the gradient path of the local slice.

    Gradients reach only this rank's own rows; with every rank computing its local-rows loss and DDP
    averaging parameter gradients, that is the standard (open_clip ``local_loss``) estimator.
    """
    if not is_distributed():
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.detach().contiguous())
    parts[dist.get_rank()] = tensor
    return torch.cat(parts, dim=0)


def gather_no_grad(tensor: Tensor) -> Tensor:
    """all_gather for tensors that carry no gradient (labels, soft-target inputs)."""
    if not is_distributed():
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)
