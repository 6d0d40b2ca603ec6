"""Training-loader steady state at the paper profile against what one GPU consumes.

Synthetic data (said so in every output): studies of 2 one-channel JPEGs stored at 256 px (shorter side,
as `shards.image_size: 256` writes them) plus findings/impression text, written as real shards in a
temp dir. The loader makes 224 px views (2 views × 2 sections, tokenised at 256) exactly as training
does. Each worker count reads ≥ `--samples` samples after a warm-up of 2 batches per worker (worker
start-up and the first shard opens are not throughput), so the rate is steady state.

GPU demand: the model's FLOPs per sample are counted with `torch.utils.flop_counter.FlopCounterMode` on CPU
(random init built from configs; no download): forward at batch 1, × 3 for forward + backward. One H200
at 40 % of its dense bf16 peak (989 TFLOPS) then consumes peak × 0.4 / FLOPs samples/s; the workers
needed are that over the measured per-worker rate (the training process keeps one more core).

    .venv/bin/python bench/bench_loader.py [--studies 2400] [--workers 0 1 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from pipeline.data import LoaderConfig, create_train_loader
from pipeline.imaging import encode_jpeg
from pipeline.mimic import schema
from pipeline.shards.rows import StudyRow
from pipeline.shards.writer import ShardsConfig, build_split, finish_split

H200_BF16_TFLOPS = 989.0
UTILISATION = 0.40
SENTENCES = [
    "The lungs are clear without focal consolidation, pleural effusion or pneumothorax.",
    "Heart size is normal.",
    "The cardiomediastinal silhouette is within normal limits.",
    "There is mild pulmonary vascular congestion without frank interstitial edema.",
    "Small bilateral pleural effusions are present with adjacent atelectasis.",
    "A right internal jugular central venous catheter terminates in the mid superior vena cava.",
    "Endotracheal tube tip is approximately 4 cm above the carina.",
    "There is patchy opacity in the left lower lobe, which may reflect atelectasis or pneumonia.",
    "No acute osseous abnormality is seen.",
    "Degenerative changes are noted in the thoracic spine.",
    "The hila are unremarkable and the aorta is tortuous.",
    "Compared to the prior study there is interval improvement of the right basilar opacity.",
    "Multiple healed right rib fractures are again noted.",
    "Moderate cardiomegaly is stable.",
]


def report(rng: np.random.Generator, low: int, high: int) -> str:
    return " ".join(rng.choice(SENTENCES, size=int(rng.integers(low, high)), replace=True))


def xray(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    yy, xx = np.mgrid[0:height, 0:width]
    base = 60 + 120 * np.exp(
        -(((xx - width / 2) / (0.3 * width)) ** 2 + ((yy - height / 2) / (0.4 * height)) ** 2)
    )
    noise = rng.normal(0, 10, size=(height, width))
    return Image.fromarray(np.clip(base + noise + rng.integers(-30, 30), 0, 255).astype(np.uint8), mode="L")


def make_shards(root: Path, n: int, size: int = 256, seed: int = 0) -> tuple[Path, list[str]]:
    """`n` synthetic 2-image studies written through the shard writer at `size` px; returns (the split's
    shard folder, every report text for the tokenizer)."""
    rng = np.random.default_rng(seed)
    mimic, rows, texts = root / "mimic", [], []
    templates = [xray(rng, size, int(size * 1.22)) for _ in range(16)]  # portrait, shorter side = size
    for i in range(n):
        study, subject = 50_000_000 + i, 10_000_000 + i // 3
        paths = []
        for j in range(2):
            rel = schema.image_relpath(subject, study, f"{study:08x}-{j:04d}")
            (mimic / rel).parent.mkdir(parents=True, exist_ok=True)
            (mimic / rel).write_bytes(encode_jpeg(templates[(i + j) % len(templates)], 95))
            paths.append(rel)
        findings, impression = report(rng, 4, 9), report(rng, 1, 3)
        texts += [findings, impression]
        labels = tuple(None for _ in schema.LABEL_COLUMNS)
        rows.append(
            StudyRow(
                study,
                subject,
                "train",
                "2150-01-01",
                tuple(paths),
                ("PA", "LATERAL"),
                findings,
                impression,
                labels,
            )
        )
    cfg = ShardsConfig(image_size=size, samples_per_shard=200, splits=("train",))
    out = root / "shards" / "train"
    index, _ = build_split(rows, [], "train", str(mimic), out, cfg)
    finish_split(out, index)
    return out, texts


def tokenizer_from(texts: list[str]) -> PreTrainedTokenizerFast:
    """A BERT-style uncased WordPiece tokenizer trained on the synthetic texts (BiomedBERT's own is a
    download; a fast WordPiece tokenizer's cost barely depends on its vocabulary size)."""
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=30000, special_tokens=specials))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]"
    )


def cpu_seconds() -> float:
    """CPU time of this process (all threads) and of its finished children (the loader's workers are
    joined when an epoch ends): what the loader costs, independent of other jobs on a shared machine."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def steady_rate(shards: Path, tok, cfg: LoaderConfig, min_samples: int) -> dict:
    """Samples/s after a warm-up of 2 batches per worker, over at least `min_samples` samples, and samples
    per CPU-second (workers' CPU counted whole, warm-up included: a slight overestimate of the cost)."""
    warmup = 2 * max(cfg.workers, 1)
    seen, start, cpu_start = 0, None, cpu_seconds()
    loader_cpu_start = cpu_start
    for index, batch in enumerate(create_train_loader(shards, tok, cfg, epoch=0)):
        if index == warmup - 1:
            start = time.perf_counter()
            if cfg.workers == 0:
                cpu_start = cpu_seconds()
        elif index >= warmup:
            seen += batch["study_id"].shape[0]
    elapsed = time.perf_counter() - start
    cpu = cpu_seconds() - (cpu_start if cfg.workers == 0 else loader_cpu_start)
    total = seen if cfg.workers == 0 else seen + warmup * cfg.batch_size
    if seen < min_samples:
        raise SystemExit(f"only {seen} steady-state samples; raise --studies")
    return {
        "workers": cfg.workers,
        "samples": seen,
        "seconds": elapsed,
        "samples_s": seen / elapsed,
        "samples_per_cpu_s": total / cpu,
    }


def model_flops(method: str) -> float:
    """Training FLOPs per sample of the paper profile: forward at batch 1, counted, × 3."""
    import torch
    from bench_train_step import fake_batch, random_profile
    from torch.utils.flop_counter import FlopCounterMode

    from pipeline.losses import create_loss
    from pipeline.models import create_model
    from pipeline.training.loop import TrainStep

    cfg = random_profile("paper")
    loss = create_loss(method, {}, embed_dim=cfg.head.dim)
    model = create_model(cfg, head=loss.heads[0], seed=0, pretrained=False)
    batch = fake_batch(cfg, 1, loss.views, loss.sections, torch.device("cpu"))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        TrainStep(model, loss).eval()(batch)
    return 3.0 * counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--studies", type=int, default=2400)
    parser.add_argument("--samples", type=int, default=2000, help="steady-state samples per worker count")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--methods", nargs="+", default=["medprobclip", "clip"])
    parser.add_argument("--views", type=int, default=2, choices=(1, 2), help="training views (CLIP: 1)")
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    result: dict = {
        "data": "synthetic (256 px shards, 2 images/study)",
        "cores": cores,
        "views": args.views,
        "loader": [],
        "gpu": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        shards, texts = make_shards(Path(tmp), args.studies)
        tok = tokenizer_from(texts)
        print(
            f"wrote {args.studies} synthetic studies as 256 px shards in {time.perf_counter() - start:.1f} s"
        )
        base = LoaderConfig(
            image_size=224, batch_size=args.batch, max_tokens=256, shuffle_buffer=1000, views=args.views
        )
        for workers in args.workers:
            rate = steady_rate(shards, tok, dataclasses.replace(base, workers=workers), args.samples)
            result["loader"].append(rate)
            print(
                f"loader, {workers} workers: {rate['samples_s']:7.1f} samples/s "
                f"({rate['samples']} samples in {rate['seconds']:.1f} s, steady state); "
                f"{rate['samples_per_cpu_s']:.1f} samples per CPU-second"
            )
    # What one busy core delivers: the best samples per CPU-second among the runs with worker processes
    # (wall-clock rates on a shared machine understate it; CPU time does not depend on other jobs).
    with_workers = [r for r in result["loader"] if r["workers"] > 0] or result["loader"]
    per_worker = max(r["samples_per_cpu_s"] for r in with_workers)
    result["per_core_samples_s"] = per_worker
    for method in args.methods:
        flops = model_flops(method)
        demand = H200_BF16_TFLOPS * 1e12 * UTILISATION / flops
        workers = math.ceil(demand / per_worker)
        result["gpu"][method] = {
            "gflop_per_sample": flops / 1e9,
            "h200_samples_s_at_40pct": demand,
            "loader_workers_needed": workers,
            "cores_needed": workers + 1,
        }
        print(
            f"{method}: {flops / 1e9:.1f} GFLOP/sample (fwd+bwd) → one H200 at 40% MFU eats {demand:.0f} "
            f"samples/s → {workers} loader cores at {per_worker:.0f} samples/s each (+1 core for training)"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
