"""DVC stage `report`: the comparison and every method's evaluation side by side in one Markdown file."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.config import read_params
from pipeline.errors import run_cli
from pipeline.io import write_text
from pipeline.report import render
from pipeline.results import load_results, read_json


def is_synthetic(mimic_root: Path, synthetic_dir: Path) -> bool:
    return mimic_root.resolve().is_relative_to(synthetic_dir.resolve())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--comparison", required=True, help="the compare stage's JSON")
    parser.add_argument("--metrics-dir", required=True, help="holds the evaluate/ and train/ result trees")
    parser.add_argument("--figures", required=True, help="folder of <method>/seed<seed>/ figure folders")
    parser.add_argument("--mimic-root", required=True)
    parser.add_argument("--synthetic-dir", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    params = read_params(args.params)
    results = load_results(args.metrics_dir, params.get("methods") or [], params.get("seeds") or [])
    out = Path(args.out)
    synthetic = is_synthetic(Path(args.mimic_root), Path(args.synthetic_dir))
    text = render(
        results.mean_evaluations(),
        results.mean_training(),
        synthetic,
        Path(args.figures),
        out.parent,
        read_json(Path(args.comparison)),
    )
    write_text(out, text)
    print(f"report: {out} ({len(results.methods)} methods × {len(results.seeds)} seeds)")


if __name__ == "__main__":
    run_cli(main)
