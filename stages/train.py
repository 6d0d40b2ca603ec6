"""DVC stage `train@{method}-{seed}`: the Prefect training flow of one method and seed → checkpoint,
metrics, history. ``--in-process`` trains here without Prefect (what tests and debugging use)."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.errors import run_cli
from pipeline.io import output_lock
from pipeline.losses import LOSSES
from pipeline.training.config import ResolvedConfig, TrainRequest, resolve_config
from pipeline.training.params import check_rendezvous


def preflight(request: TrainRequest, cfg: ResolvedConfig) -> None:
    """The user errors that can be found without training, found before any Prefect server starts (it
    takes seconds, and an error raised inside a flow reaches the user behind Prefect's log and traceback)."""
    from pipeline.models.encoders import load_tokenizer
    from pipeline.shards import load_index

    cfg.train.local_batch(cfg.train.world_size)  # batch divisible by the DDP ranks
    check_rendezvous(cfg.train)  # several nodes cannot meet at a loopback address
    for split in ("train", "validate"):
        load_index(Path(request.shards) / split)
    load_tokenizer(cfg.model.text)


def parse_args(argv: list[str] | None = None) -> tuple[TrainRequest, bool]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("method", choices=sorted(LOSSES))
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--seed", type=int, help="training seed (default: train.seed)")
    parser.add_argument("--shards", default="data/shards")
    parser.add_argument("--tokenizer", default="models/tokenizer")
    parser.add_argument("--out", required=True, help="folder for best/, run.json and the resume state/")
    parser.add_argument("--metrics", help="best-epoch metrics JSON (default <out>/metrics.json)")
    parser.add_argument("--history", help="per-epoch history CSV (default <out>/history.csv)")
    parser.add_argument("--in-process", action="store_true", help="train here, without the Prefect flow")
    args = parser.parse_args(argv)
    request = TrainRequest(
        args.method, args.params, args.shards, args.tokenizer, args.out, args.metrics, args.history, args.seed
    )
    return request, args.in_process


def main() -> None:
    request, in_process = parse_args()
    cfg = resolve_config(request.method, request.params, request.tokenizer, request.seed)
    preflight(request, cfg)
    with output_lock(request.out, request.metrics_path, request.history_path):
        if in_process:
            from pipeline.training.run import launch

            summary = launch(request, cfg)
        else:
            from pipeline.prefect_env import load_flows

            summary = load_flows().training_flow(request, cfg)
    if not summary:  # a multi-node run: global rank 0 ran on another node and reports there
        return
    val = summary["val"]
    print(
        f"{request.method} (seed {cfg.train.seed}): best epoch {summary['best_epoch']}, val RSUM "
        f"{val['rsum']:.1f}, R@10 i2t {val['i2t_r10']:.1f} t2i {val['t2i_r10']:.1f} "
        f"(random {val['random_r10']:.1f})"
    )


if __name__ == "__main__":
    run_cli(main)
