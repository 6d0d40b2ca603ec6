"""DDP process-group setup (torchrun environment) and launch helpers."""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str | None = None) -> DistInfo:
    """Join the process group torchrun describes in the environment (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        cuda = (device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
        if cuda:
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group("nccl" if cuda else "gloo")
    return info


def current() -> DistInfo:
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return DistInfo()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def all_reduce_min(value: int, device: torch.device | str = "cpu") -> int:
    if not (dist.is_available() and dist.is_initialized()):
        return value
    t = torch.tensor([value], dtype=torch.long, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t.item())


def broadcast_flag(flag: bool, device: torch.device | str = "cpu") -> bool:
    """Rank 0's value of `flag` on every rank (e.g. "a crash-resume checkpoint exists")."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    t = torch.tensor([int(flag)], dtype=torch.long, device=device)
    dist.broadcast(t, src=0)
    return bool(t.item())


def main_host() -> str:
    """The host name of global rank 0, the one process that writes outputs (a collective: every rank calls
    it). c10d numbers nodes in the order they join, so which node that is differs from run to run."""
    name = [socket.gethostname()]
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.broadcast_object_list(name, src=0)
    return name[0]


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


RDZV_ENV = {"endpoint": "PET_RDZV_ENDPOINT", "id": "PET_RDZV_ID"}  # torchrun's own environment names


def torchrun_command(
    module: str,
    args: list[str],
    nproc_per_node: int,
    nnodes: int,
    rdzv_endpoint: str = "127.0.0.1:29400",
    rdzv_id: str = "medprobclip",
) -> list[str]:
    """The torchrun command line for `python -m module args` on this node.

    One node: a standalone rendezvous on a free local port. Several: every node runs the same command and
    they meet through torchrun's c10d rendezvous at `rdzv_endpoint` (a TCP store hosted by the node whose
    address it is), so no node needs a rank of its own; `PET_RDZV_ENDPOINT` / `PET_RDZV_ID` (torchrun's
    environment names) override the params per job, e.g. the first host of a SLURM allocation.
    """
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc_per_node}"]
    if nnodes > 1:
        endpoint = os.environ.get(RDZV_ENV["endpoint"]) or rdzv_endpoint
        job = os.environ.get(RDZV_ENV["id"]) or rdzv_id
        cmd += [
            f"--nnodes={nnodes}",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint={endpoint}",
            f"--rdzv-id={job}",
        ]
    else:
        cmd += ["--standalone", "--nnodes=1"]
    return [*cmd, "-m", module, *args]
