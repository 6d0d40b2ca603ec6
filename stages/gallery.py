"""DVC stage `gallery@{method}-{seed}`: a trained model's retrieval bundle (gallery embeddings and the
calibrated abstention thresholds) in ``<model>/retrieval/`` — what `medprobclip retrieve` loads."""

from __future__ import annotations

import argparse

from pipeline.errors import run_cli
from pipeline.retrieval.gallery import gallery_from_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("method")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--model", required=True, help="the train stage's folder (best/)")
    parser.add_argument("--shards", required=True)
    parser.add_argument("--studies", required=True, help="folder of the study CSVs")
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--out", help="bundle folder (default <model>/retrieval)")
    parser.add_argument(
        "--reports", help="a CSV of reports to search instead of the splits' (overrides params)"
    )
    args = parser.parse_args()
    bundle, params = gallery_from_params(
        args.params,
        args.model,
        args.shards,
        args.studies,
        args.tokenizer,
        args.out,
        args.method,
        args.reports,
    )
    i2t = bundle.info["calibration"]["i2t"]
    risk = "n/a" if i2t["risk"] is None else f"{i2t['risk']:.3f}"
    print(
        f"{args.method}: gallery of {len(bundle.report_ids)} reports / {len(bundle.image_ids)} images; "
        f"image→text at K={params.k}, target risk {params.target_risk} (δ {params.delta}): validation "
        f"coverage {i2t['coverage']:.3f}, risk {risk}"
    )


if __name__ == "__main__":
    run_cli(main)
