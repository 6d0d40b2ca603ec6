"""DVC stage `register`: every method × seed model folder (weights + retrieval gallery + abstention
threshold) becomes an ``mlflow.pyfunc`` model logged into its training run and a version of the registered
model ``medprobclip-<method>``; alias ``best`` marks each method's best seed and ``champion`` the best
method, both by validation RSUM (what training recorded; the test split is not used to choose). Writes what
it registered to ``--out``. Re-running with unchanged model folders registers nothing new."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline import tracking
from pipeline.config import read_params
from pipeline.errors import PipelineError, run_cli
from pipeline.io import write_json
from pipeline.results import read_json, run_files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--models-dir", required=True, help="holds <method>/seed<seed>/ model folders")
    parser.add_argument("--metrics-dir", required=True, help="holds train/<method>/seed<seed>.json")
    parser.add_argument("--out", required=True, help="JSON record of the registered versions and aliases")
    args = parser.parse_args()
    params = read_params(args.params)
    from pipeline.retrieval.pyfunc import Candidate, register_models

    candidates = []
    for method in params.get("methods") or []:
        for seed in params.get("seeds") or []:
            folder = Path(args.models_dir) / method / f"seed{seed}"
            training = read_json(run_files(args.metrics_dir, method, seed).training)
            rsum = (training.get("val") or {}).get("rsum")
            if not isinstance(rsum, int | float):
                raise PipelineError(f"{method} seed {seed}: no validation RSUM in its training metrics")
            candidates.append(Candidate(method, int(seed), folder, tracking.run_info(folder), float(rsum)))
    record = register_models(candidates)
    write_json(args.out, record)
    for row in record["models"]:
        print(f"register: {row['uri']} ({row['method']} seed {row['seed']}, val RSUM {row['val_rsum']:.1f})")
    print(f"register: champion {record['champion']['uri']} = {record['champion']['method']}")


if __name__ == "__main__":
    run_cli(main)
