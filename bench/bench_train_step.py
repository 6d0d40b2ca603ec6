"""Training-step throughput of the `paper` profile (random weights) for MedProbCLIP and CLIP.

Reports samples/s of the trainer's step (bf16 autocast on CUDA, fp32 on CPU) against a naive baseline
measured in the same run (fp32, each view and section through its tower separately), model FLOPs per
sample (counted with torch's FlopCounterMode) and, on a GPU, model FLOP utilisation against the device's
dense bf16 peak. `--shards DIR` also times the training loader, to show whether it keeps up.

    .venv/bin/python bench/bench_train_step.py [--batch 8] [--steps 3] [--profile paper|tiny]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from pipeline.losses import create_loss
from pipeline.models import PAPER, TINY, create_model
from pipeline.models.encoders import TextEncoderConfig
from pipeline.training.loop import TrainStep
from pipeline.training.optim import create_optimizer

PEAK_BF16_TFLOPS = {"H100 SXM": 989.0, "H100 PCIe": 756.0, "H100": 989.0, "H200": 989.0, "A100": 312.0}
BERT_BASE = TextEncoderConfig(
    name_or_path=None,
    vocab_size=28895,
    hidden_size=768,
    num_layers=12,
    num_heads=12,
    intermediate_size=3072,
    max_length=256,
    pool="cls",
)


def random_profile(name: str):
    """The profile's architecture with random weights (no download; BiomedBERT = a BERT-base shape)."""
    if name == "tiny":
        return TINY
    return dataclasses.replace(
        PAPER, image=dataclasses.replace(PAPER.image, pretrained=False), text=BERT_BASE
    )


def fake_batch(cfg, batch: int, views: int, sections: int, device: torch.device) -> dict:
    size, tokens = cfg.image.img_size, cfg.text.max_length
    ids = torch.randint(5, cfg.text.vocab_size, (batch, sections, tokens), device=device)
    return {
        "images": torch.randn(batch, views, 1, size, size, device=device),
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "labels": torch.randint(0, 2, (batch, 14), device=device).float(),
    }


class NaiveStep(TrainStep):
    """Baseline: every view and section through its tower in a separate pass."""

    def forward(self, batch):
        out = {}
        for v in range(batch["images"].shape[1]):
            out[f"img_{v}"] = self.model.encode_image(batch["images"][:, v])
        for s in range(batch["input_ids"].shape[1]):
            out[f"txt_{s}"] = self.model.encode_text(batch["input_ids"][:, s], batch["attention_mask"][:, s])
        return self.loss(out, batch), {}


def time_steps(step, optimizer, batch, steps: int, dtype, device) -> float:
    """Seconds per optimiser step (after one warm-up step)."""
    autocast = torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()

    def one() -> None:
        with autocast:
            terms, _ = step(batch)
        terms["loss"].backward()
        torch.nn.utils.clip_grad_norm_(step.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    one()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        one()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def step_flops(step, batch) -> int:
    with FlopCounterMode(display=False) as counter:
        terms, _ = step(batch)
        terms["loss"].backward()
    step.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def peak_tflops(device: torch.device, override: float | None) -> float | None:
    if override or device.type != "cuda":
        return override
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def bench_method(method: str, cfg, args, device: torch.device) -> dict:
    loss = create_loss(method, {}, embed_dim=cfg.head.dim)
    model = create_model(cfg, head=loss.heads[0], seed=0, pretrained=False).to(device)
    loss.to(device)
    batch = fake_batch(cfg, args.batch, loss.views, loss.sections, device)
    dtype = torch.bfloat16 if device.type == "cuda" else None
    optimizer = create_optimizer(model, loss, 1e-5, 1e-4)
    fast = time_steps(TrainStep(model, loss), optimizer, batch, args.steps, dtype, device)
    naive = time_steps(NaiveStep(model, loss), optimizer, batch, args.steps, None, device)
    flops = step_flops(TrainStep(model, loss), batch) / args.batch
    out = {
        "method": method,
        "samples_s": args.batch / fast,
        "naive_samples_s": args.batch / naive,
        "gflop_per_sample": flops / 1e9,
    }
    peak = peak_tflops(device, args.peak_tflops)
    if peak:
        out["mfu"] = out["samples_s"] * flops / (peak * 1e12)
    return out


def bench_loader(shards: str, tokenizer: str, cfg, batch: int, workers: int, batches: int) -> float:
    from transformers import AutoTokenizer

    from pipeline.data import create_train_loader
    from pipeline.training.params import TrainParams, create_loader_config

    tok = AutoTokenizer.from_pretrained(tokenizer, local_files_only=True)
    lcfg = create_loader_config(TrainParams(workers=workers), cfg.image.img_size, cfg.text.max_length, batch)
    start, seen = time.perf_counter(), 0
    for index, item in enumerate(create_train_loader(f"{shards}/train", tok, lcfg, epoch=0)):
        seen += item["study_id"].shape[0]
        if index + 1 >= batches:
            break
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profile", default="paper", choices=("paper", "tiny"))
    parser.add_argument("--batch", type=int, default=None, help="default: 128 on CUDA, 4 on CPU")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default: 10 CUDA, 2 CPU)")
    parser.add_argument("--methods", nargs="+", default=["medprobclip", "clip"])
    parser.add_argument("--peak-tflops", type=float, default=None, help="device peak for MFU (bf16 dense)")
    parser.add_argument("--shards", help="shard folder (with train/) to time the loader too")
    parser.add_argument("--tokenizer", default="models/tokenizer")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    args.batch = args.batch or (128 if device.type == "cuda" else 4)
    args.steps = args.steps or (10 if device.type == "cuda" else 2)
    cfg = random_profile(args.profile)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    precision = "bf16 autocast" if device.type == "cuda" else "fp32"
    print(f"device: {name}; profile {args.profile}; batch {args.batch}; {precision}")
    for method in args.methods:
        r = bench_method(method, cfg, args, device)
        mfu = f"  MFU {r['mfu']:.1%}" if "mfu" in r else ""
        print(
            f"{method:12s} {r['samples_s']:8.2f} samples/s  (naive {r['naive_samples_s']:.2f}, "
            f"×{r['samples_s'] / r['naive_samples_s']:.2f})  {r['gflop_per_sample']:.1f} GFLOP/sample{mfu}"
        )
    if args.shards:
        rate = bench_loader(args.shards, args.tokenizer, cfg, args.batch, args.workers, batches=8)
        print(f"loader       {rate:8.2f} samples/s with {args.workers} workers")


if __name__ == "__main__":
    main()
