"""DVC stage `shards`: study CSVs + MIMIC-CXR-JPG images → WebDataset shards, index, rejects."""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

from pipeline.buildinfo import add_build_argument, build_info, record_build, summary_line
from pipeline.config import load_section
from pipeline.errors import run_cli
from pipeline.prefect_env import data_executor
from pipeline.shards import INDEX_FILE, ShardsConfig, create_shards


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--studies", required=True, help="folder with {train,validate,test}.csv")
    parser.add_argument(
        "--mimic-root", required=True, help="MIMIC-CXR-JPG root the CSV image paths are under"
    )
    parser.add_argument("--out", required=True, help="output folder (one sub-folder per split)")
    parser.add_argument("--params", default="params.yaml")
    add_build_argument(parser)
    args = parser.parse_args()
    cfg = load_section(ShardsConfig, "shards", args.params)
    info = build_info()
    print(summary_line(info))
    # Where the pieces run (process pool, or a Dask cluster via DASK_SCHEDULER_ADDRESS) is not a param.
    with data_executor(cfg.workers) as cluster:
        summary = create_shards(args.studies, args.mimic_root, args.out, cfg)
    for split, info_split in summary["splits"].items():
        print(f"{split}: {info_split['n_samples']} studies, {info_split['n_images']} images in shards")
    print(f"rejected: {summary['n_rejected_studies']} studies, {summary['n_rejected_images']} images")
    # The split indexes list every shard's sha256, so one digest over them stands for all shard bytes.
    indexes = b"".join((Path(args.out) / split / INDEX_FILE).read_bytes() for split in cfg.splits)
    digest = hashlib.sha256(indexes).hexdigest()
    print(f"shards: sha256 of the split indexes {digest}")
    executor = cluster.record() if cluster else {"executor": "process"}
    record_build(args.build, "shards", info, indexes_sha256=digest, **executor)


if __name__ == "__main__":
    run_cli(main)
