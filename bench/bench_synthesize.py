"""Benchmark of the synthetic MIMIC-CXR-JPG generator.

Times (1) the metadata+reports-only mode at full MIMIC scale (65,379 patients, ~227k studies) and (2) the
default scale with images. With `--baseline-rev` (default: the commit that introduced the generator) the
previous implementation is extracted from git into a temporary package and timed in the same run, at the
default scale and at a reduced metadata-only scale (the old full-scale run takes ~15 min), for ratios.

    .venv/bin/python bench/bench_synthesize.py [--full-patients 65379] [--baseline-rev REV | --no-baseline]
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.synthetic.generate import SynthesizeParams, synthesize  # noqa: E402

BASELINE_REV = "1cdb65ac2afdbecb3b3efda4c4975c8426242d54"
LEGACY = "legacy_synthetic"


def load_baseline(rev: str, into: Path) -> tuple[type, Callable] | None:
    """The generator as of `rev`, importable as `legacy_synthetic` (None when git cannot provide it)."""
    pkg = into / LEGACY
    pkg.mkdir(parents=True)
    try:
        names = subprocess.run(
            ["git", "ls-tree", "--name-only", rev, "pipeline/synthetic/"],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
        for name in names:
            src = subprocess.run(
                ["git", "show", f"{rev}:{name}"], cwd=ROOT, check=True, capture_output=True, text=True
            ).stdout
            (pkg / Path(name).name).write_text(src.replace("pipeline.synthetic", LEGACY))
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"baseline {rev[:12]} unavailable ({exc}); reporting absolute numbers only")
        return None
    (pkg / "__init__.py").touch()
    sys.path.insert(0, str(into))
    module = importlib.import_module(f"{LEGACY}.generate")
    return module.SynthesizeParams, module.synthesize


def timed(label: str, params_cls: type, run: Callable, out: Path, **kw) -> float:
    params = params_cls(**kw)
    start = time.perf_counter()
    counts = run(params, out)
    wall = time.perf_counter() - start
    print(
        f"{label:<44} {wall:8.1f} s  {counts['studies'] / wall:8.0f} studies/s  ({counts['studies']} studies)"
    )
    return wall  # outputs are removed at the end: fresh deletions make ext4 inode allocation slower


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--full-patients", type=int, default=65_379)
    parser.add_argument("--default-patients", type=int, default=500)
    parser.add_argument("--baseline-patients", type=int, default=3_000, help="metadata-only baseline scale")
    parser.add_argument("--baseline-rev", default=BASELINE_REV)
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_synth_") as tmp_dir:
        tmp = Path(tmp_dir)
        old = None if args.no_baseline else load_baseline(args.baseline_rev, tmp / "legacy")
        new = (SynthesizeParams, synthesize)
        w = args.workers
        timed(
            "new  metadata+reports, full scale",
            *new,
            tmp / "full",
            n_patients=args.full_patients,
            images=False,
            workers=w,
        )
        if old:
            n = args.baseline_patients
            t_new = timed(
                f"new  metadata+reports, {n} patients", *new, tmp / "a", n_patients=n, images=False, workers=w
            )
            t_old = timed(
                f"old  metadata+reports, {n} patients", *old, tmp / "b", n_patients=n, images=False, workers=w
            )
            print(f"metadata+reports speed-up vs {args.baseline_rev[:12]}: {t_old / t_new:.1f}x")
        n = args.default_patients
        t_new = timed(f"new  with images, {n} patients", *new, tmp / "c", n_patients=n, workers=w)
        if old:
            t_old = timed(f"old  with images, {n} patients", *old, tmp / "d", n_patients=n, workers=w)
            print(f"with-images speed-up vs {args.baseline_rev[:12]}: {t_old / t_new:.2f}x")


if __name__ == "__main__":
    main()
