"""`python -m pipeline.mimic.labeler IN.csv OUT.csv`: the CheXpert labeler's command-line interface."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from pipeline.mimic.labeler.aggregate import AGGREGATIONS
from pipeline.mimic.labeler.api import label_csv


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The labeler's options, for a `medprobclip label-reports` subcommand or this module."""
    parser.add_argument("in_csv", help="CSV with one report text per row")
    parser.add_argument("out_csv", help="where to write the same rows plus the 14 label columns")
    parser.add_argument("--text-column", default="Report Impression", help="column holding the report text")
    parser.add_argument("--aggregation", choices=AGGREGATIONS, default="chexpert")
    parser.add_argument("--workers", type=int, default=1, help="processes (0: one per CPU)")
    return parser


def run(args: argparse.Namespace) -> int:
    try:
        stats = label_csv(args.in_csv, args.out_csv, args.text_column, args.aggregation, args.workers)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(stats, sort_keys=True), file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.mimic.labeler", description=__doc__)
    return run(add_arguments(parser).parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
