"""DDP: 2 gloo CPU processes with half the global batch each give the 1-process loss and gradients."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from test_train import TINY, FakeData

from pipeline.losses import LOSSES, create_loss
from pipeline.models import create_model
from pipeline.training.loop import TrainStep

METHODS = tuple(sorted(LOSSES))
BATCH = 8


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def batch() -> dict:
    return FakeData(n=BATCH, batch=BATCH, seed=5).train(0)[0]


def loss_and_grads(method: str, part: dict, ddp: bool) -> tuple[float, dict[str, torch.Tensor]]:
    loss = create_loss(method, {}, embed_dim=TINY.head.dim)
    model = create_model(TINY, head=loss.heads[0], seed=0)
    step = TrainStep(model, loss)
    module = torch.nn.parallel.DistributedDataParallel(step) if ddp else step
    inputs = {k: v[:, : loss.views] if k == "images" else v for k, v in part.items()}
    inputs |= {k: part[k][:, : loss.sections] for k in ("input_ids", "attention_mask")}
    model.eval()  # no dropout: the comparison is about the gathered loss, not RNG streams
    terms, _ = module(inputs)
    terms["loss"].backward()
    grads = {n: p.grad.clone() for n, p in step.named_parameters() if p.grad is not None}
    return float(terms["loss"].detach()), grads


def worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        full = batch()
        rows = slice(rank * BATCH // world, (rank + 1) * BATCH // world)
        part = {k: v[rows] for k, v in full.items()}
        results = {}
        for method in METHODS:
            loss, grads = loss_and_grads(method, part, ddp=True)
            total = torch.tensor([loss])
            dist.all_reduce(total)
            results[method] = (float(total) / world, grads)
        if rank == 0:
            torch.save(results, out)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("ddp") / "results.pt")
    # spawn, not fork: a fork after the session's Prefect harness started (threads, an event loop) dies
    mp.start_processes(worker, args=(2, free_port(), out), nprocs=2, join=True, start_method="spawn")
    return torch.load(out, weights_only=True)


@pytest.mark.parametrize("method", METHODS)
def test_two_gloo_ranks_match_one_process(ddp_results, method):
    expected_loss, expected = loss_and_grads(method, batch(), ddp=False)
    loss, grads = ddp_results[method]
    assert loss == pytest.approx(expected_loss, rel=1e-5, abs=1e-6)
    assert grads.keys() == expected.keys() and len(grads) > 10
    for name, grad in grads.items():
        torch.testing.assert_close(grad, expected[name], rtol=1e-4, atol=1e-6, msg=name)
