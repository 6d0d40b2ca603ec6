"""DVC stage `report`: every method's evaluation side by side in one Markdown file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pipeline.errors import PipelineError, run_cli
from pipeline.io import write_text
from pipeline.report import load_all, render


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def is_synthetic(mimic_root: Path, synthetic_dir: Path) -> bool:
    return mimic_root.resolve().is_relative_to(synthetic_dir.resolve())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("methods", nargs="+")
    parser.add_argument("--evaluations", required=True, help="folder of <method>.json evaluation metrics")
    parser.add_argument("--training", required=True, help="folder of <method>.json training summaries")
    parser.add_argument("--figures", required=True, help="folder of <method>/ figure folders")
    parser.add_argument("--mimic-root", required=True)
    parser.add_argument("--synthetic-dir", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    evaluations = load_all(Path(args.evaluations), args.methods, read_json)
    missing = sorted(set(args.methods) - set(evaluations))
    if missing:
        raise PipelineError(
            f"{args.evaluations}: no evaluation for {missing}; run `dvc repro evaluate` first"
        )
    training = load_all(Path(args.training), args.methods, read_json)
    out = Path(args.out)
    synthetic = is_synthetic(Path(args.mimic_root), Path(args.synthetic_dir))
    write_text(out, render(evaluations, training, synthetic, Path(args.figures), out.parent))
    print(f"report: {out} ({len(evaluations)} methods)")


if __name__ == "__main__":
    run_cli(main)
