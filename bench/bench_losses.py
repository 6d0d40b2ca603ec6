"""Benchmark the pairwise ELK distance and the method losses at the paper's batch (B = 128, D = 512).

Compares the chunked-recompute ELK (`elk_distance`) with the naive broadcast (`elk_distance_naive`) in the
same run: forward+backward time, bytes autograd keeps between forward and backward, and (on CUDA) peak
allocated memory. Run: ``.venv/bin/python bench/bench_losses.py [--device cuda] [--batch 128] [--dim 512]``.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from pipeline.losses import LOSSES, create_loss
from pipeline.losses.distances import elk_distance, elk_distance_naive


def inputs(batch: int, dim: int, device: str) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(batch, dim, generator=g) * s).to(device).requires_grad_() for s in (1, 0.5, 1, 0.5)]


def saved_bytes(fn, args) -> int:
    """Bytes of tensors autograd saves for backward (unique storages)."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(*args).sum().backward()
    return sum(seen.values())


def timed(fn, args, device: str, repeats: int) -> tuple[float, int]:
    fn(*args).sum().backward()  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(repeats):
        fn(*args).sum().backward()
    if device == "cuda":
        torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() if device == "cuda" else 0
    return (time.perf_counter() - start) / repeats, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    x = inputs(args.batch, args.dim, args.device)
    print(f"ELK distance B={args.batch} D={args.dim} on {args.device}")
    results = {}
    for name, fn in (("naive", elk_distance_naive), ("chunked", elk_distance)):
        seconds, peak = timed(fn, x, args.device, args.repeats)
        results[name] = (seconds, saved_bytes(fn, x), peak)
        print(
            f"  {name:8s} fwd+bwd {seconds * 1e3:8.2f} ms  saved {results[name][1] / 2**20:8.2f} MiB"
            + (f"  peak {peak / 2**20:8.1f} MiB" if peak else "")
        )
    (tn, sn, pn), (tc, sc, pc) = results["naive"], results["chunked"]
    print(
        f"  ratio chunked/naive: time {tc / tn:.2f}x  saved memory {sc / sn:.4f}x"
        + (f"  peak {pc / pn:.3f}x" if pn else "")
    )
    print(f"method losses fwd+bwd (loss only, B={args.batch}, D={args.dim}):")
    for name in sorted(LOSSES):
        seconds, _ = timed(
            method_step(name, args.batch, args.dim, args.device), [], args.device, args.repeats
        )
        print(f"  {name:12s} {seconds * 1e3:8.2f} ms")


def method_step(name: str, batch: int, dim: int, device: str):
    cls = LOSSES[name]
    loss = create_loss(name, embed_dim=dim).to(device)
    keys = [f"img_{v}" for v in range(cls.views)] + [f"txt_{s}" for s in range(cls.sections)]
    labels = (torch.rand(batch, 14, generator=torch.Generator().manual_seed(1)) < 0.2).float().to(device)
    outs = {}
    for k in keys:
        mu, logvar = inputs(batch, dim, device)[:2]
        outs[k] = {"mu": mu, "logvar": logvar} if cls.probabilistic else {"emb": F.normalize(mu, dim=-1)}

    def step() -> torch.Tensor:
        fresh = {k: {f: t.detach().requires_grad_() for f, t in v.items()} for k, v in outs.items()}
        return loss(fresh, {"labels": labels})["loss"]

    return step


if __name__ == "__main__":
    main()
