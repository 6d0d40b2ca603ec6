"""Benchmark evaluation ranking + every retrieval, selective and calibration metric, both directions, on an
N × N gallery (default 10k, D = 512) with cosine and MedProbCLIP's −ELK score.

Variants, measured in the same run, each in a fresh process (so its peak-RSS delta, peak RSS minus RSS once
the inputs exist, is its own):
  both-ways   `rank_both_ways`: one chunked pass over the scores for both directions (symmetric scores)
  per-dir     `rank_queries` image→text then text→image: two chunked passes
  naive       the full [N, N] score matrix (computed once, t2i ranks its transpose) and a full argsort of
              every row to find the positive's rank
The same metric functions run on every variant's rankings, so only ranking differs. The ELK distance costs
~10 s per 1000 × 1000 on 2 busy cores, so by default the naive and per-direction ELK runs happen at
``--small-n`` (2000) next to both-ways at that size, and their N-size numbers are extrapolated: time of the
quadratic parts × (N/n)² (argsort × (N/n)²·ln N/ln n), memory + 13 bytes per extra score-matrix entry (naive:
fp32 scores, int64 argsort, bool match mask) or unchanged (per-dir: O(N·k + chunk·N)).

    .venv/bin/python bench/bench_retrieval.py [--n 10000] [--dim 512] [--chunk 1024] [--skip-naive]
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import resource
import time
from concurrent.futures import ProcessPoolExecutor

import torch
import torch.nn.functional as F
from torch import Tensor

from pipeline.losses.distances import cosine_similarity, elk_distance
from pipeline.metrics import (
    Ranking,
    confidence_score,
    expected_calibration_error,
    rank_both_ways,
    rank_queries,
    reliability_diagram,
    retrieval_metrics,
    selective_metrics,
    sigmoid_top1_confidence,
    softmax_top1_confidence,
)

K = 100
TEMPERATURE = 0.07
NAIVE_BYTES_PER_ENTRY = 4 + 8 + 1


def embeddings(method: str, n: int, dim: int) -> tuple[dict, dict]:
    """Paired image/text embeddings: text = image + noise, so recall is neither 0 nor 100."""
    g = torch.Generator().manual_seed(0)
    mu_img = torch.randn(n, dim, generator=g)
    mu_txt = mu_img + 1.5 * torch.randn(n, dim, generator=g)
    if method == "cosine":
        return {"emb": F.normalize(mu_img, dim=-1)}, {"emb": F.normalize(mu_txt, dim=-1)}
    logvar = [0.3 * torch.randn(n, dim, generator=g) - 1.0 for _ in range(2)]
    return {"mu": mu_img, "logvar": logvar[0]}, {"mu": mu_txt, "logvar": logvar[1]}


def score_fn(method: str):
    if method == "cosine":
        return lambda q, g: cosine_similarity(q["emb"], g["emb"])
    return lambda q, g: -elk_distance(q["mu"], q["logvar"], g["mu"], g["logvar"])


def all_metrics(method: str, i2t: Ranking, t2i: Ranking, img: dict, txt: dict, dim: int) -> dict:
    """What the evaluation flow computes; returns the retrieval metrics for the agreement check."""
    kinds = ("top1", "margin") if method == "cosine" else ("variance",)
    for ranking, query in ((i2t, img), (t2i, txt)):
        for kind in kinds:
            selective_metrics(ranking, confidence_score(kind, ranking, query))
        if method == "cosine":
            confidence = softmax_top1_confidence(ranking)
        else:
            confidence = sigmoid_top1_confidence(ranking, 1.0, 0.5 * dim * math.log(2.0))
        correct = ranking.positive_rank == 0
        expected_calibration_error(confidence, correct)
        reliability_diagram(confidence, correct)
    return retrieval_metrics(i2t, t2i)


def run(variant: str, method: str, n: int, dim: int, chunk: int) -> tuple[dict, dict]:
    img, txt = embeddings(method, n, dim)
    fn, temperature = score_fn(method), TEMPERATURE if method == "cosine" else None
    with Measure() as m:
        if variant == "both-ways":
            i2t, t2i = rank_both_ways(fn, img, txt, k=K, chunk=chunk, temperature=temperature)
        elif variant == "per-dir":
            i2t = rank_queries(fn, img, txt, k=K, chunk=chunk, temperature=temperature)
            t2i = rank_queries(fn, txt, img, k=K, chunk=chunk, temperature=temperature)
        else:
            scores = fn(img, txt)
            m.lap("score")
            i2t, t2i = naive_ranking(scores, temperature), naive_ranking(scores.T, temperature)
            m.lap("argsort")
            del scores
        metrics = all_metrics(method, i2t, t2i, img, txt, dim)
    return m.result, metrics


def naive_ranking(scores: Tensor, temperature: float | None) -> Ranking:
    order = scores.argsort(dim=1, descending=True)
    rank = (order == torch.arange(len(scores))[:, None]).nonzero()[:, 1]
    top = order[:, :K].clone()
    del order
    lse = torch.logsumexp(scores / temperature, dim=1) if temperature else None
    return Ranking(rank, scores.diagonal().clone(), top, scores.gather(1, top), len(scores), lse, temperature)


class Measure:
    """Wall time (with named laps) and peak RSS growth in bytes of a block; meaningful in a fresh process."""

    def __enter__(self) -> Measure:
        self.laps: dict[str, float] = {}
        self.rss = rss_bytes()
        self.start = self.last = time.perf_counter()
        return self

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name], self.last = now - self.last, now

    def __exit__(self, *exc) -> None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        self.result = {"seconds": time.perf_counter() - self.start, "peak": peak - self.rss, **self.laps}


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def isolated(*args) -> tuple[dict, dict]:
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(run, *args).result()


def extrapolate(variant: str, r: dict, n: int, big: int) -> dict:
    """Scale a measurement at n to N = big (see the module docstring)."""
    scale = (big / n) ** 2
    if variant == "naive":
        score, argsort = r["score"] * scale, r["argsort"] * scale * math.log(big) / math.log(n)
        rest = (r["seconds"] - r["score"] - r["argsort"]) * big / n
        peak = r["peak"] + NAIVE_BYTES_PER_ENTRY * (big**2 - n**2)
        return {"seconds": score + argsort + rest, "peak": peak, "score": score, "argsort": argsort}
    return {"seconds": r["seconds"] * scale, "peak": r["peak"]}


def show(label: str, r: dict, note: str = "") -> None:
    laps = "  ".join(f"{k} {v:.1f} s" for k, v in r.items() if k not in ("seconds", "peak"))
    print(f"  {label:24s} {r['seconds']:8.1f} s  peak RSS +{r['peak'] / 2**20:7.0f} MiB  {laps}{note}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=10_000, help="queries = gallery items per direction")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--chunk", type=int, default=1024)
    parser.add_argument("--methods", nargs="+", default=["cosine", "elk"], choices=["cosine", "elk"])
    parser.add_argument(
        "--small-n", type=int, default=2000, help="naive/per-dir ELK size (extrapolated to N)"
    )
    parser.add_argument(
        "--full-elk", action="store_true", help="run every ELK variant at N (~1 h on 2 cores)"
    )
    parser.add_argument("--skip-naive", action="store_true")
    args = parser.parse_args()
    print(
        f"ranking + all metrics, both directions, N={args.n} x {args.n}, D={args.dim}, chunk={args.chunk}, "
        f"k={K}, {torch.get_num_threads()} threads"
    )
    for method in args.methods:
        print(f"{method}:")
        at_n = {"both-ways": isolated("both-ways", method, args.n, args.dim, args.chunk)}
        show(f"both-ways N={args.n}", at_n["both-ways"][0])
        small = args.n if method == "cosine" or args.full_elk else min(args.n, args.small_n)
        base = (
            at_n["both-ways"]
            if small == args.n
            else isolated("both-ways", method, small, args.dim, args.chunk)
        )
        if small != args.n:
            show(f"both-ways N={small}", base[0])
        for variant in ("per-dir", *(() if args.skip_naive else ("naive",))):
            r, metrics = isolated(variant, method, small, args.dim, args.chunk)
            show(f"{variant} N={small}", r, f"  same R@K as both-ways: {metrics == base[1]}")
            if small != args.n:
                r = extrapolate(variant, r, small, args.n)
                show(f"{variant} N={args.n} (est.)", r, "  extrapolated")
            at_n[variant] = (r, metrics)
        ours = at_n["both-ways"][0]
        for variant in [v for v in at_n if v != "both-ways"]:
            r = at_n[variant][0]
            print(
                f"  {variant} / both-ways at N={args.n}: time {r['seconds'] / ours['seconds']:.2f}x  "
                f"peak RSS {r['peak'] / ours['peak']:.1f}x"
            )


if __name__ == "__main__":
    main()
