"""Benchmark `medprobclip retrieve` query latency against gallery size (up to MIMIC scale: 200k reports,
D = 512), cosine (CLIP's score) and −ELK (MedProbCLIP's), versus a naive full-matrix baseline, in one run.

  ours   `pipeline.retrieval.search`: the gallery prepared once for the score (`GalleryScorer`: unit
         vectors for cosine, μ and σ² for ELK), scored in blocks of 8,192 rows, the k best kept per
         block (what `Retriever` runs); preparation is timed separately (it happens once, at load)
  naive  the method's `loss.similarity` against the whole gallery at once, then a full argsort of the row
Per-query latency is the median of --repeats single-image queries (Q = 1, what the CLI and web page do)
and, amortised, of one batch of --batch queries. Only the search is timed: the query's encoder forward
(tiny profile ~4 ms measured; a paper ViT-B/16 forward, not measured here, is typically
0.1–0.3 s on CPU) comes on top.

    .venv/bin/python bench/bench_query.py [--sizes 10000 50000 200000] [--dim 512] [--k 10]
"""

from __future__ import annotations

import argparse
import statistics
import time
from functools import partial

import torch
import torch.nn.functional as F

from pipeline.losses import create_loss
from pipeline.retrieval.search import GalleryScorer, topk_search

METHODS = {"cosine": "clip", "elk": "medprobclip"}


def gallery(kind: str, n: int, dim: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(n, dim, generator=g)
    if kind == "cosine":
        return {"emb": F.normalize(mu, dim=-1)}
    return {"mu": mu, "logvar": 0.3 * torch.randn(n, dim, generator=g) - 1.0}


def naive(score_fn, query: dict, items: dict, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    scores = score_fn(query, items)
    order = scores.argsort(dim=1, descending=True, stable=True)[:, :k]
    return scores.gather(1, order), order


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000, 200_000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, D = {args.dim}, k = {args.k}")
    print(
        f"{'score':>6} {'gallery':>8} {'ours s/query':>13} {'naive s/query':>14} {'ratio':>6} "
        f"{'ours batch s/query':>19} {'naive batch':>12}"
    )
    for kind, method in METHODS.items():
        loss = create_loss(method, embed_dim=args.dim).eval()
        score_fn = loss.similarity
        for n in args.sizes:
            items = gallery(kind, n, args.dim)
            queries = gallery(kind, args.batch, args.dim, seed=1)
            one = {key: v[:1] for key, v in queries.items()}
            with torch.no_grad():
                start = time.perf_counter()
                scorer = GalleryScorer(loss, items)
                prepare = time.perf_counter() - start
                ours_top = topk_search(scorer, one, args.k)
                naive_top = naive(score_fn, one, items, args.k)
                assert torch.equal(ours_top[1], naive_top[1]), "ours and naive disagree"
                ours = timed(partial(topk_search, scorer, one, args.k), args.repeats)
                base = timed(partial(naive, score_fn, one, items, args.k), args.repeats)
                ours_b = timed(partial(topk_search, scorer, queries, args.k), 1) / args.batch
                base_b = timed(partial(naive, score_fn, queries, items, args.k), 1) / args.batch
            print(
                f"{kind:>6} {n:>8} {ours:>13.4f} {base:>14.4f} {base / ours:>5.1f}× "
                f"{ours_b:>19.4f} {base_b:>12.4f}"
                f"   (prepare once: {prepare:.2f} s)",
                flush=True,
            )


if __name__ == "__main__":
    main()
