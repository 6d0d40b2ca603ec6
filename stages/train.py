"""DVC stage `train@{method}`: the Prefect training flow of one method → checkpoint, metrics, history."""

from __future__ import annotations

from pipeline.errors import run_cli
from pipeline.train import parse_request


def main() -> None:
    from pipeline.flows import training_flow

    request = parse_request()
    summary = training_flow(request)
    val = summary["val"]
    print(
        f"{request.method}: best epoch {summary['best_epoch']}, val RSUM {val['rsum']:.1f}, "
        f"R@10 i2t {val['i2t_r10']:.1f} t2i {val['t2i_r10']:.1f} (random {val['random_r10']:.1f})"
    )


if __name__ == "__main__":
    run_cli(main)
