"""DVC stage `tokenizer`: train the tiny profile's WordPiece vocabulary on the training reports."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from pipeline.config import ConfigError, load_section
from pipeline.tokenizer import TokenizerParams, save_tokenizer, train_wordpiece

TEXT_COLUMNS = ("findings", "impression")


def read_report_texts(path: Path) -> list[str]:
    """Findings then impression of each study, in file order (blank cells dropped by the trainer)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: training study CSV not found (run the `studies` stage first)")
    frame = pd.read_csv(path, usecols=lambda c: c in TEXT_COLUMNS, dtype=str, keep_default_na=False)
    missing = [c for c in TEXT_COLUMNS if c not in frame.columns]
    if missing:
        raise ConfigError(f"{path}: missing column(s) {missing}; expected the study CSV contract")
    return [text for row in frame.itertuples(index=False) for text in (row.findings, row.impression)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--train-csv", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        params = load_section(TokenizerParams, "tokenizer", args.params)
        tokenizer = train_wordpiece(read_report_texts(args.train_csv), params)
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        print(f"tokenizer: {exc}", file=sys.stderr)
        return 2
    save_tokenizer(tokenizer, args.out)
    print(f"tokenizer: {len(tokenizer)} tokens -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
