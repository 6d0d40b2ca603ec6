"""DVC stage `synthesize`: write the synthetic MIMIC-CXR-JPG source from the `synthesize` params section."""

from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path

from pipeline.buildinfo import add_build_argument, build_info, record_build, summary_line
from pipeline.config import load_section
from pipeline.errors import run_cli
from pipeline.io import output_lock
from pipeline.mimic import schema
from pipeline.synthetic.generate import JPG_DIR, SynthesizeParams, synthesize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml", help="parameter file (default: params.yaml)")
    parser.add_argument("--out", default="data/synthetic", help="output directory (default: data/synthetic)")
    add_build_argument(parser)
    args = parser.parse_args()
    params = load_section(SynthesizeParams, "synthesize", args.params)
    info = build_info()
    print(summary_line(info))
    start = time.perf_counter()
    with output_lock(args.out):
        counts = synthesize(params, args.out)
    summary = ", ".join(f"{k}={v}" for k, v in counts.items())
    print(f"synthesize: {summary} -> {args.out} in {time.perf_counter() - start:.1f}s")
    sums = Path(args.out) / JPG_DIR / schema.SHA256SUMS_FILE
    sums_digest = hashlib.sha256(sums.read_bytes()).hexdigest()
    print(f"synthesize: sha256 of {schema.SHA256SUMS_FILE} {sums_digest}")
    record_build(args.build, "synthesize", info, sha256sums_sha256=sums_digest, **counts)


if __name__ == "__main__":
    run_cli(main)
