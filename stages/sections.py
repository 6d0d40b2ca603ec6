"""DVC stage `sections`: reports tree → data/interim/sections.parquet."""

from __future__ import annotations

import argparse

from pipeline.config import load_section
from pipeline.errors import run_cli
from pipeline.io import output_lock, write_parquet
from pipeline.mimic.reports import SectionsParams, section_reports
from pipeline.prefect_env import data_executor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reports-root", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    params = load_section(SectionsParams, "sections", args.params)
    with output_lock(args.out):
        with data_executor(params.workers):  # DASK_SCHEDULER_ADDRESS: the chunks run on that cluster
            frame = section_reports(args.reports_root, workers=params.workers)
        write_parquet(args.out, frame)


if __name__ == "__main__":
    run_cli(main)
