"""`medprobclip` command line: the study CSV generator and other tools usable outside DVC."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from pipeline.config import ConfigError
from pipeline.errors import user_message
from pipeline.io import output_lock
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
    if args.workers < 0:
        raise ConfigError(
            "medprobclip studies: --workers must be 0 (all cores) or a number of processes, "
            f"got {args.workers}"
        )
    root, out = Path(args.mimic_root), Path(args.out)
    with output_lock(out):
        _write_studies(args, params, root, out)


def _write_studies(args: argparse.Namespace, params: StudiesParams, root: Path, out: Path) -> None:
    from pipeline.io import write_json, write_parquet

    metadata, split = readers.read_metadata(root), readers.read_split(root)
    if args.labels == "none":
        labels = pd.DataFrame(columns=schema.LABEL_FILE_COLUMNS)
    else:
        labels = load_shipped_labels(root, args.labels)
    image_list = readers.read_image_filenames(root) if params.check_image_list else None
    sections = section_reports(args.reports_root, workers=args.workers)  # the slow part, once files are ok
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


def _serve_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="a local web page: upload a chest X-ray, see the top-k reports and the abstention decision",
        description="Serve one trained model's retrieval as a web page and a JSON API (research use only).",
    )
    p.add_argument("--model", help="model folder (models/<method>/seed<seed>) or MLflow URI (models:/…)")
    p.add_argument("--method", help="with --seed: the pipeline's model folder of this method")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--params", default="params.yaml", help="where data.models_dir is read (with --method)")
    p.add_argument(
        "--host", default="127.0.0.1", help="127.0.0.1 (default) keeps the reports on this machine"
    )
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--k", type=int, default=None, help="hits shown by default (default: the model's k)")
    p.add_argument("--device", default=None, help="cpu | cuda (default: cuda when present)")
    p.set_defaults(func=_run_serve)


def _run_serve(args: argparse.Namespace) -> None:
    from pipeline.retrieval.serve import serve

    if args.k is not None and args.k < 1:
        raise ConfigError(f"--k must be >= 1, got {args.k}")
    if not 0 < args.port < 65536:
        raise ConfigError(f"--port must be 1-65535, got {args.port}")
    serve(_load_retriever(args), host=args.host, port=args.port, default_k=args.k)


def _load_retriever(args: argparse.Namespace):  # -> pipeline.retrieval.Retriever
    """--model (a folder or an MLflow model URI) or --method/--seed (the pipeline's folder)."""
    model = args.model
    if model and model.startswith(("models:/", "runs:/")):
        from pipeline.retrieval.pyfunc import load_retriever_from_mlflow

        return load_retriever_from_mlflow(model, device=args.device)
    if not model:
        if not args.method:
            raise ConfigError("give --model DIR|models:/… or --method M [--seed S]")
        from pipeline.config import read_params

        models_dir = (read_params(args.params).get("data") or {}).get("models_dir", "models")
        model = str(Path(models_dir) / args.method / f"seed{args.seed}")
    import torch

    from pipeline.retrieval import Retriever

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    return Retriever.from_folder(model, device=device)


def _retrieve_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "retrieve",
        help="top-k reports for chest X-rays (or images for a report text), with calibrated abstention",
        description="Search a trained model's gallery (the gallery stage's bundle). Research use only.",
    )
    p.add_argument("images", nargs="*", metavar="IMAGE", help="JPEG/PNG chest X-ray(s): image → reports")
    p.add_argument("--text", action="append", default=[], help="a report text: text → images (repeatable)")
    p.add_argument("--model", help="model folder (models/<method>/seed<seed>) or MLflow URI (models:/…)")
    p.add_argument("--method", help="with --seed: the pipeline's model folder of this method")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--params", default="params.yaml", help="where data.models_dir is read (with --method)")
    p.add_argument(
        "--k", type=int, default=None, help="hits per query (default: the bundle's k, params retrieval.k)"
    )
    p.add_argument(
        "--target-risk", type=float, help="default: the bundle's (params.yaml retrieval.target_risk)"
    )
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument("--device", default=None, help="cpu | cuda (default: cuda when present)")
    p.set_defaults(func=_run_retrieve)


def _run_retrieve(args: argparse.Namespace) -> None:
    from pipeline.retrieval.render import render_json, render_table
    from pipeline.retrieval.retriever import QueryImageError

    if not args.images and not args.text:
        raise ConfigError('give one or more IMAGE files or --text "report text"')
    if args.k is not None and args.k < 1:
        raise ConfigError(f"--k must be >= 1, got {args.k}")
    if args.target_risk is not None:
        from pipeline.metrics.abstention import check_level

        try:
            check_level("--target-risk", args.target_risk)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    retriever = _load_retriever(args)
    if args.target_risk is not None:
        retriever = retriever.with_target_risk(args.target_risk)
    args.k = args.k or retriever.k_default  # the k the bundle's threshold is calibrated at
    images = []
    for name in args.images:
        path = Path(name)
        if not path.is_file():
            raise QueryImageError(f"{name}: no such file")
        images.append(retriever.read_image(path.read_bytes(), name))
    results = retriever.search_images(images, k=args.k, names=args.images) if images else []
    results += retriever.search_text(args.text, k=args.k) if args.text else []
    if args.format == "json":
        print(render_json(results))
    else:
        print(render_table(results, retriever, args.k))


def _gallery_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "gallery",
        help="(re)build a trained model's retrieval gallery, e.g. from your own CSV of reports",
        description="Embed a report gallery and calibrate abstention (what the gallery DVC stage runs).",
    )
    p.add_argument("--model", required=True, help="model folder (models/<method>/seed<seed>, holds best/)")
    p.add_argument("--reports", help="CSV with study_id and text (or findings/impression) to search")
    p.add_argument("--out", help="bundle folder (default <model>/retrieval)")
    p.add_argument("--params", default="params.yaml", help="retrieval + evaluate settings (required file)")
    p.add_argument("--shards", default="data/shards")
    p.add_argument("--studies", default="data/studies")
    p.add_argument("--tokenizer", default="models/tokenizer")
    p.set_defaults(func=_run_gallery)


def _run_gallery(args: argparse.Namespace) -> None:
    from pipeline.retrieval.gallery import gallery_from_params

    bundle, _ = gallery_from_params(
        args.params,
        args.model,
        args.shards,
        args.studies,
        tokenizer=args.tokenizer,
        out=args.out,
        reports=args.reports,
    )
    out = args.out or Path(args.model) / "retrieval"
    print(f"wrote a gallery of {len(bundle.report_ids)} reports to {out}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medprobclip", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _studies_parser(sub)
    _label_parser(sub)
    _serve_parser(sub)
    _retrieve_parser(sub)
    _gallery_parser(sub)
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
