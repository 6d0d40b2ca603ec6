"""DVC stage `tokenizer`: train the tiny profile's WordPiece vocabulary on the training reports."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.config import load_section
from pipeline.errors import run_cli
from pipeline.io import output_lock
from pipeline.tokenizer import TokenizerParams, read_report_texts, save_tokenizer, train_wordpiece


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--train-csv", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    params = load_section(TokenizerParams, "tokenizer", args.params)
    with output_lock(args.out):
        tokenizer = train_wordpiece(read_report_texts(args.train_csv), params)
        save_tokenizer(tokenizer, args.out)
    print(f"tokenizer: {len(tokenizer)} tokens -> {args.out}")


if __name__ == "__main__":
    run_cli(main)
