"""`medprobclip` command line: the study CSV generator and other tools usable outside DVC."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from pipeline.config import ConfigError
from pipeline.errors import user_message
from pipeline.mimic import readers, schema
from pipeline.mimic.labels import load_shipped_labels
from pipeline.mimic.reports import section_reports
from pipeline.studies import (
    TEXT_REQUIREMENTS,
    StudiesParams,
    TextPolicy,
    ViewPolicy,
    assemble_studies,
    write_tables,
)


def _studies_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "studies",
        help="MIMIC-CXR-JPG + reports → study CSVs (train/validate/test + rejects)",
        description="Build MedProbCLIP-style study CSVs from a MIMIC-CXR-JPG copy and its reports.",
    )
    p.add_argument(
        "--mimic-root", required=True, help="MIMIC-CXR-JPG root (holds files/ and the csv.gz files)"
    )
    p.add_argument("--reports-root", required=True, help="unzipped mimic-cxr-reports (holds files/)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--labels", choices=("chexpert", "negbio", "none"), default="chexpert")
    p.add_argument("--no-require-frontal", action="store_true", help="keep studies without a PA/AP image")
    p.add_argument("--exclude-lateral", action="store_true")
    p.add_argument("--include-other", action="store_true", help="keep decubitus/oblique/blank-view images")
    p.add_argument("--max-images", type=int, default=4)
    p.add_argument("--text", choices=TEXT_REQUIREMENTS, default="either", help="sections a study must have")
    p.add_argument("--fill-from-last-paragraph", action="store_true")
    p.add_argument("--absolute-paths", action="store_true")
    p.add_argument("--no-image-list", action="store_true", help="do not check images against IMAGE_FILENAMES")
    p.add_argument("--workers", type=int, default=0, help="processes for report parsing (0 = all cores)")
    p.set_defaults(func=_run_studies)


def _run_studies(args: argparse.Namespace) -> None:
    from pipeline.io import write_json, write_parquet

    try:
        params = StudiesParams(
            views=ViewPolicy(
                require_frontal=not args.no_require_frontal,
                include_lateral=not args.exclude_lateral,
                include_other=args.include_other,
                max_images=args.max_images,
            ),
            text=TextPolicy(require=args.text, fill_from_last_paragraph=args.fill_from_last_paragraph),
            path_style="absolute" if args.absolute_paths else "relative",
            check_image_list=not args.no_image_list,
        )
    except ValueError as exc:  # the options' own checks (e.g. --max-images 0)
        raise ConfigError(f"medprobclip studies: {exc}") from exc
    root, out = Path(args.mimic_root), Path(args.out)
    metadata, split = readers.read_metadata(root), readers.read_split(root)
    sections = section_reports(args.reports_root, workers=args.workers)
    if args.labels == "none":
        labels = pd.DataFrame(columns=schema.LABEL_FILE_COLUMNS)
    else:
        labels = load_shipped_labels(root, args.labels)
    image_list = readers.read_image_filenames(root) if params.check_image_list else None
    tables = assemble_studies(
        metadata, split, sections, labels, params, image_list=image_list, mimic_root=root
    )
    write_tables(tables, out)
    write_parquet(out / "sections.parquet", sections)
    write_json(out / "summary.json", tables.summary)
    counts = tables.summary["output_studies"]
    print(
        f"wrote {counts['total']} studies (train {counts['train']}, validate {counts['validate']}, "
        f"test {counts['test']}) and {tables.summary['rejected_studies']} rejects to {out}"
    )


def _label_parser(sub: argparse._SubParsersAction) -> None:
    from pipeline.mimic.labeler.__main__ import add_arguments, run

    p = sub.add_parser(
        "label-reports",
        help="CheXpert-style 14 labels for a CSV of report texts (the CheXpert labeler's interface)",
        description="One report per row in; the same rows plus the 14 CheXpert label columns out.",
    )
    add_arguments(p)
    p.set_defaults(func=run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medprobclip", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _studies_parser(sub)
    _label_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except Exception as exc:
        message = user_message(exc)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
