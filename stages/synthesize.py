"""DVC stage `synthesize`: write the synthetic MIMIC-CXR-JPG source from the `synthesize` params section."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.config import ConfigError, load_section
from pipeline.synthetic.generate import SynthesizeParams, synthesize


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml", help="parameter file (default: params.yaml)")
    parser.add_argument("--out", default="data/synthetic", help="output directory (default: data/synthetic)")
    args = parser.parse_args(argv)
    try:
        params = load_section(SynthesizeParams, "synthesize", args.params)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    counts = synthesize(params, args.out)
    summary = ", ".join(f"{k}={v}" for k, v in counts.items())
    print(f"synthesize: {summary} -> {args.out} in {time.perf_counter() - start:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
