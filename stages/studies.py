"""DVC stage `studies` (the CSV generator): metadata + split + sections + labels → study CSVs."""

from __future__ import annotations

import argparse

from pipeline.config import load_section
from pipeline.errors import run_cli
from pipeline.io import output_lock, read_parquet_input, write_json
from pipeline.mimic import readers
from pipeline.studies import StudiesParams, assemble_studies, write_tables


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mimic-root", required=True)
    parser.add_argument("--sections", required=True)
    parser.add_argument("--labels", required=True)
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--summary", required=True)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    params = load_section(StudiesParams, "studies", args.params)
    with output_lock(args.out_dir, args.summary):
        tables = assemble_studies(
            metadata=readers.read_metadata(args.mimic_root),
            split=readers.read_split(args.mimic_root),
            sections=read_parquet_input(args.sections, "sections"),
            labels=read_parquet_input(args.labels, "labels"),
            params=params,
            image_list=readers.read_image_filenames(args.mimic_root) if params.check_image_list else None,
            mimic_root=args.mimic_root,
        )
        write_tables(tables, args.out_dir)
        write_json(args.summary, tables.summary)


if __name__ == "__main__":
    run_cli(main)
