"""One training process started by `launch` (plain, or one rank under torchrun): ``python -m
pipeline.training.worker '<TrainRequest as JSON>'``. Not a user entry point: users run `stages/train.py`."""

from __future__ import annotations

import sys

from pipeline.errors import run_cli
from pipeline.training.config import TrainRequest
from pipeline.training.run import run_training


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m pipeline.training.worker '<TrainRequest JSON>'")
    request = TrainRequest.from_json(sys.argv[1])
    run_training(request)


if __name__ == "__main__":
    run_cli(main)
