"""DVC stage `labels`: 14 CheXpert labels per study → data/interim/labels.parquet."""

from __future__ import annotations

import argparse

from pipeline.config import load_section
from pipeline.errors import run_cli
from pipeline.io import output_lock, read_parquet_input, write_json, write_parquet
from pipeline.mimic.labels import LabelsParams, build_labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mimic-root", required=True)
    parser.add_argument("--sections", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--metrics", required=True)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    params = load_section(LabelsParams, "labels", args.params)
    with output_lock(args.out, args.metrics):
        sections = read_parquet_input(args.sections, "sections")
        labels, metrics = build_labels(sections, args.mimic_root, params)
        write_parquet(args.out, labels)
        write_json(args.metrics, metrics)


if __name__ == "__main__":
    run_cli(main)
