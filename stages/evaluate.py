"""DVC stage `evaluate@{method}`: the Prefect evaluation flow of one trained method → metrics, plots."""

from __future__ import annotations

from pipeline.errors import run_cli
from pipeline.evaluate import parse_request


def main() -> None:
    from pipeline.flows import evaluation_flow

    request = parse_request()
    metrics = evaluation_flow(request)
    r, zs = metrics["retrieval"], metrics["zero_shot"]["argmax"]["mean_accuracy"]
    print(
        f"{request.method}: test RSUM {r['rsum']:.1f} (random {r['random_rsum']:.1f}), R@10 i2t "
        f"{r['i2t_r10']:.1f} t2i {r['t2i_r10']:.1f}; zero-shot mean accuracy "
        f"{'n/a' if zs is None else f'{zs:.3f}'}; {metrics['seconds']:.0f} s "
        f"({', '.join(f'{k} {v:.1f}' for k, v in metrics['seconds_by_step'].items())})"
    )


if __name__ == "__main__":
    run_cli(main)
