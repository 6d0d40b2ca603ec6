"""DVC stage `shards`: study CSVs + MIMIC-CXR-JPG images → WebDataset shards, index, rejects."""

from __future__ import annotations

import argparse

from pipeline.config import load_section
from pipeline.errors import run_cli
from pipeline.shards import ShardsConfig, create_shards


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--studies", required=True, help="folder with {train,validate,test}.csv")
    parser.add_argument(
        "--mimic-root", required=True, help="MIMIC-CXR-JPG root the CSV image paths are under"
    )
    parser.add_argument("--out", required=True, help="output folder (one sub-folder per split)")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    cfg = load_section(ShardsConfig, "shards", args.params)
    summary = create_shards(args.studies, args.mimic_root, args.out, cfg)
    for split, info in summary["splits"].items():
        print(f"{split}: {info['n_samples']} studies, {info['n_images']} images in shards")
    print(f"rejected: {summary['n_rejected_studies']} studies, {summary['n_rejected_images']} images")


if __name__ == "__main__":
    run_cli(main)
