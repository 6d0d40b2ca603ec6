"""One-shot GPU check (called by `bench/gpu_check.sh`): paper-profile train step, loader, ELK retrieval.

On a CUDA machine: the paper-profile train step (ViT-B/16 224 px + BERT-base 256 tokens, random weights
built from configs) in bf16 autocast, eager and with `torch.compile`, samples/s and MFU against the
device's dense bf16 peak, for MedProbCLIP and CLIP; the training loader's steady state with all cores but
one (synthetic 256 px shards); ELK retrieval ranking + metrics at 10k × 10k (D = 512) with the scores on
the GPU. Without CUDA the GPU parts are skipped (the JSON says so) and the CPU parts run at small sizes.
Every part records its own error instead of stopping the others; one JSON is written at the end.

    .venv/bin/python bench/gpu_check.py --out gpu_check.json [--budget-s 450]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_train_step import fake_batch, peak_tflops, random_profile, step_flops, time_steps

from pipeline.io import write_json

NO_GPU = "skipped: no CUDA device on this machine (GPU part; numbers not measured)"


class Clock:
    """The check's time budget: parts that would not fit are skipped, and say so."""

    def __init__(self, budget_s: float) -> None:
        self.start, self.budget = time.perf_counter(), budget_s

    def left(self) -> float:
        return self.budget - (time.perf_counter() - self.start)


def guarded(part: Callable[[], dict]) -> dict:
    """Run one part; a failure becomes its record (the other parts still run)."""
    start = time.perf_counter()
    try:
        out = part()
    except Exception as exc:  # a check reports every failure and goes on
        out = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(limit=5)}
    return {**out, "part_seconds": round(time.perf_counter() - start, 1)}


def train_step(method: str, batch_size: int, steps: int, compile_ok: bool, peak: float | None) -> dict:
    """Eager (and compiled) bf16 samples/s and MFU of one method's paper-profile train step."""
    from pipeline.losses import create_loss
    from pipeline.models import create_model
    from pipeline.training.loop import TrainStep
    from pipeline.training.optim import create_optimizer

    device = torch.device("cuda")
    cfg = random_profile("paper")
    loss = create_loss(method, {}, embed_dim=cfg.head.dim).to(device)
    model = create_model(cfg, head=loss.heads[0], seed=0, pretrained=False).to(device)
    optimizer = create_optimizer(model, loss, 1e-5, 1e-4)
    step = TrainStep(model, loss)
    flops = step_flops(step, fake_batch(cfg, 2, loss.views, loss.sections, device)) / 2
    batch = fake_batch(cfg, batch_size, loss.views, loss.sections, device)
    out: dict = {"batch": batch_size, "gflop_per_sample": flops / 1e9, "peak_tflops": peak}

    def record(name: str, seconds: float) -> None:
        rate = batch_size / seconds
        out[f"{name}_samples_s"] = rate
        out[f"{name}_mfu"] = rate * flops / (peak * 1e12) if peak else None

    record("eager", time_steps(step, optimizer, batch, steps, torch.bfloat16, device))
    out["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    if compile_ok:
        start = time.perf_counter()
        compiled = torch.compile(step)
        time_steps(compiled, optimizer, batch, 1, torch.bfloat16, device)  # compile + warm-up
        out["compile_seconds"] = time.perf_counter() - start
        record("compiled", time_steps(compiled, optimizer, batch, steps, torch.bfloat16, device))
        out["compile_helps"] = out["compiled_samples_s"] > 1.02 * out["eager_samples_s"]
    else:
        out["compiled"] = "skipped: not enough of the time budget left"
    del model, loss, optimizer, step, batch
    torch.cuda.empty_cache()
    return out


def fitting_step(method: str, args, compile_ok: bool, peak: float | None) -> dict:
    """`train_step` at `args.batch`, halving the batch while it does not fit in GPU memory."""
    batch = args.batch
    while True:
        try:
            return train_step(method, batch, args.steps, compile_ok, peak)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            if batch <= 8:
                raise
            batch //= 2


def train_steps(args, clock: Clock) -> dict:
    if not torch.cuda.is_available():
        return {"skipped": NO_GPU}
    device = torch.device("cuda")
    peak = peak_tflops(device, args.peak_tflops)
    out: dict = {"device": torch.cuda.get_device_name(device), "precision": "bf16 autocast"}
    for method in ("medprobclip", "clip"):
        # compile costs 1–2 min per model: only while enough budget is left for the later parts
        compile_ok = not args.no_compile and clock.left() > 240
        out[method] = guarded(lambda m=method, c=compile_ok: fitting_step(m, args, c, peak))
    return out


def loader(args) -> dict:
    """Steady-state loader samples/s at the paper profile with all cores but one (the trainer's)."""
    import dataclasses

    from bench_loader import make_shards, steady_rate, tokenizer_from

    from pipeline.data import LoaderConfig

    cores = len(os.sched_getaffinity(0))
    workers = args.loader_workers if args.loader_workers is not None else max(cores - 1, 1)
    with tempfile.TemporaryDirectory() as tmp:
        shards, texts = make_shards(Path(tmp), args.loader_studies)
        tok = tokenizer_from(texts)
        cfg = LoaderConfig(image_size=224, batch_size=32, max_tokens=256, shuffle_buffer=1000, views=2)
        rate = steady_rate(shards, tok, dataclasses.replace(cfg, workers=workers), args.loader_samples)
    return {
        "data": "synthetic 256 px shards, 2 views x 2 sections, 224 px, 256 tokens",
        "cores": cores,
        **rate,
    }


def elk_retrieval(args) -> dict:
    """ELK (MedProbCLIP) ranking both ways + every retrieval/selective/calibration metric, N × N."""
    from bench_retrieval import K, all_metrics, embeddings

    from pipeline.losses.distances import elk_distance
    from pipeline.metrics import rank_both_ways

    cuda = torch.cuda.is_available()
    n = args.elk_n if args.elk_n else (10_000 if cuda else 1_000)
    img, txt = embeddings("elk", n, 512)
    device = torch.device("cuda" if cuda else "cpu")

    def score(q: dict, g: dict) -> torch.Tensor:  # the quadratic part on the device, ranking on the CPU
        on = [t.to(device, non_blocking=True) for t in (q["mu"], q["logvar"], g["mu"], g["logvar"])]
        return (-elk_distance(*on)).float().cpu()

    start = time.perf_counter()
    i2t, t2i = rank_both_ways(score, img, txt, k=K, chunk=1024)
    rank_s = time.perf_counter() - start
    metrics = all_metrics("elk", i2t, t2i, img, txt, 512)
    out = {"n": n, "dim": 512, "scores_on": device.type, "rank_seconds": rank_s}
    out |= {"total_seconds": time.perf_counter() - start, "i2t_r10": metrics.get("i2t_r10")}
    if not cuda:
        out["note"] = "CPU run at a small N; the 10k x 10k number needs the GPU machine"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="gpu_check.json")
    parser.add_argument("--budget-s", type=float, default=450.0, help="time budget for all parts")
    parser.add_argument("--batch", type=int, default=128, help="train-step batch (GPU)")
    parser.add_argument("--steps", type=int, default=10, help="timed train steps (GPU)")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--peak-tflops", type=float, default=None, help="bf16 dense peak (default: by name)")
    parser.add_argument("--loader-workers", type=int, default=None, help="default: all cores but one")
    parser.add_argument("--loader-studies", type=int, default=None, help="default 2400 (GPU) / 300 (CPU)")
    parser.add_argument("--loader-samples", type=int, default=None, help="default 2000 (GPU) / 200 (CPU)")
    parser.add_argument("--elk-n", type=int, default=None, help="default 10000 (GPU) / 1000 (CPU)")
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    args.loader_studies = args.loader_studies or (2400 if cuda else 300)
    args.loader_samples = args.loader_samples or (2000 if cuda else 200)
    clock = Clock(args.budget_s)
    result: dict = {
        "host": platform.node(),
        "torch": torch.__version__,
        "cuda": cuda,
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "cores": len(os.sched_getaffinity(0)),
    }
    if not cuda:
        result["note"] = "no CUDA device: GPU parts skipped; CPU parts ran at small sizes"
        print(NO_GPU, file=sys.stderr)
    parts = {"train_step": lambda: train_steps(args, clock), "loader": lambda: loader(args)}
    parts["elk_retrieval"] = lambda: elk_retrieval(args)
    for name, part in parts.items():
        if clock.left() <= 0:
            result[name] = {"skipped": "time budget spent"}
            continue
        print(f"gpu_check: {name} …", file=sys.stderr, flush=True)
        result[name] = guarded(part)
        print(f"gpu_check: {name} done in {result[name]['part_seconds']} s", file=sys.stderr, flush=True)
    result["total_seconds"] = round(time.perf_counter() - clock.start, 1)
    write_json(args.out, result)
    print(f"gpu_check: wrote {args.out} ({result['total_seconds']} s)")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
