"""Full-scale dry run: the data stages on a MIMIC-sized release, then the shard stage on 20k full-size images.

1. A metadata + reports synthetic release at MIMIC scale (65,379 patients → ~228k studies, ~372k image
   rows), then the real stage commands, each as its own process (as DVC runs them): sections → labels
   (shipped chexpert file, and the built-in rules labeler; both also score the labeler's agreement) →
   studies (with each labels table). Wall time, peak RSS (main process and largest worker) and the
   accounting (every input study in an output CSV or in rejects.csv) for each.
2. The shard stage on the first ~20k images of those study CSVs, at full resolution: a pool of full-size
   synthetic radiographs (image_scale 1.0, ~2500×3000, frontal and lateral) is generated once and each
   study image path is a hard link to a pool image of its view, so the decode work per image is real
   while the disk holds ~4 GB instead of ~60 GB (the page cache then holds the pool: the run is CPU-bound,
   see the I/O note it prints). Measured with 1 and 2 workers, extrapolated to 377,110 images on 16 cores.

    .venv/bin/python bench/dry_run_full_scale.py [--work bench/results/dryrun] [--shard-images 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.mimic import schema

ROOT = Path(__file__).resolve().parents[1]
SPLITS = ("train", "validate", "test")
MIMIC_IMAGES = 377_110
MIMIC_JPG_BYTES = 570e9  # the MIMIC-CXR-JPG 2.1.0 image tree


PAGE = os.sysconf("SC_PAGE_SIZE")


def child(argv: list[str], report: str) -> None:
    """Run one stage script in this process, then record its own peak RSS (VmHWM: reset by exec, unlike
    ru_maxrss, which a forked child inherits from its parent)."""
    sys.argv = argv
    try:
        runpy.run_path(argv[0], run_name="__main__")
    finally:
        status = Path("/proc/self/status").read_text()
        hwm = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM"))
        Path(report).write_text(json.dumps({"main_kib": hwm}))


def tree_rss(pid: int) -> int:
    """Resident bytes of `pid` and all its descendants (worker pools included)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    tree, frontier = {pid}, [pid]
    while frontier:
        kids = [p for p, parent in parents.items() if parent in frontier and p not in tree]
        tree.update(kids)
        frontier = kids
    total = 0
    for p in tree:
        try:
            total += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * PAGE
        except (OSError, IndexError, ValueError):
            continue
    return total


def run_stage(name: str, argv: list[str], work: Path, rows: list[dict]) -> dict:
    report = work / f".{name}.rss.json"
    cmd = [sys.executable, __file__, "--child", str(report), "--", str(ROOT / argv[0]), *argv[1:]]
    began = time.perf_counter()
    log = work / f".{name}.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(cmd, cwd=work, stdout=sink, stderr=subprocess.STDOUT)
        peak_tree = 0
        while proc.poll() is None:
            peak_tree = max(peak_tree, tree_rss(proc.pid))
            time.sleep(0.2)
    seconds = time.perf_counter() - began
    if proc.returncode:
        raise SystemExit(f"{name} failed:\n{log.read_text()[-3000:]}")
    rss = json.loads(report.read_text())
    row = {
        "stage": name,
        "wall_s": round(seconds, 1),
        "peak_main_mib": round(rss["main_kib"] / 1024),
        "peak_all_processes_mib": round(peak_tree / 2**20),
    }
    rows.append(row)
    print(json.dumps(row), flush=True)
    return row


def write_params(work: Path, labels_source: str, shards: dict | None = None) -> None:
    params = {
        "sections": {"workers": 0},
        "labels": {"source": labels_source, "workers": 0},
        "studies": {},
        "shards": shards or {},
    }
    (work / "params.yaml").write_text(yaml.safe_dump(params))


def accounting(source: Path, studies: Path) -> dict:
    """Input studies vs output CSVs + rejects, and the reject reasons."""
    root = source / "mimic-cxr-jpg/2.1.0"
    ids = set()
    for name in ("mimic-cxr-2.0.0-split.csv.gz", "mimic-cxr-2.0.0-metadata.csv.gz"):
        ids |= set(pd.read_csv(root / name, usecols=["study_id"])["study_id"])
    out = {
        s: pd.read_csv(studies / f"{s}.csv", usecols=["study_id"])["study_id"]
        for s in ("train", "validate", "test")
    }
    rejects = pd.read_csv(studies / "rejects.csv")
    listed = pd.concat([*out.values(), rejects["study_id"]])
    return {
        "input_studies": len(ids),
        "output_studies": {s: len(v) for s, v in out.items()},
        "rejected": len(rejects),
        "reasons": rejects["reason"].value_counts().to_dict(),
        "every_study_once": bool(listed.is_unique and set(listed) == ids),
    }


def data_stages(work: Path, n_patients: int, rows: list[dict]) -> dict:
    from pipeline.synthetic.generate import SynthesizeParams, synthesize

    source = work / "source"
    if not (source / "mimic-cxr-jpg/2.1.0/mimic-cxr-2.0.0-metadata.csv.gz").is_file():
        began = time.perf_counter()
        counts = synthesize(SynthesizeParams(n_patients=n_patients, images=False), source)
        print(f"synthesized {counts} in {time.perf_counter() - began:.0f} s", flush=True)
    mimic, reports = str(source / "mimic-cxr-jpg/2.1.0"), str(source / "mimic-cxr-reports")
    results = {}
    write_params(work, "chexpert")
    run_stage(
        "sections",
        ["stages/sections.py", "--reports-root", reports, "--out", "interim/sections.parquet"],
        work,
        rows,
    )
    for source_name in ("chexpert", "rules"):
        write_params(work, source_name)
        labels = f"interim/labels-{source_name}.parquet"
        metrics = f"metrics/labels-{source_name}.json"
        argv = ["stages/labels.py", "--mimic-root", mimic, "--sections", "interim/sections.parquet",
                "--out", labels, "--metrics", metrics]  # fmt: skip
        run_stage(f"labels ({source_name})", argv, work, rows)
        out = f"studies-{source_name}"
        summary = f"metrics/studies-{source_name}.json"
        argv = ["stages/studies.py", "--mimic-root", mimic, "--sections", "interim/sections.parquet",
                "--labels", labels, "--out-dir", out, "--summary", summary]  # fmt: skip
        run_stage(f"studies ({source_name} labels)", argv, work, rows)
        results[source_name] = accounting(source, work / out)
        print(json.dumps({source_name: results[source_name]}), flush=True)
    agreement = json.loads((work / "metrics/labels-chexpert.json").read_text())["agreement"]
    results["labeler_agreement"] = {
        name: {k: v for k, v in a.items() if not isinstance(v, dict)} for name, a in agreement.items()
    }
    return results


def image_pool(work: Path, n_patients: int) -> dict[str, list[Path]]:
    """Full-size synthetic radiographs by view kind (generated once)."""
    from pipeline.synthetic.generate import SynthesizeParams, synthesize

    pool = work / "pool"
    if not (pool / "mimic-cxr-jpg/2.1.0/mimic-cxr-2.0.0-metadata.csv.gz").is_file():
        began = time.perf_counter()
        counts = synthesize(SynthesizeParams(n_patients=n_patients, image_scale=1.0, seed=7), pool)
        print(f"full-size pool: {counts} in {time.perf_counter() - began:.0f} s", flush=True)
    root = pool / "mimic-cxr-jpg/2.1.0"
    meta = pd.read_csv(root / "mimic-cxr-2.0.0-metadata.csv.gz", dtype=str, keep_default_na=False)
    by_kind: dict[str, list[Path]] = {"frontal": [], "lateral": []}
    for r in meta.itertuples():
        kind = "frontal" if r.ViewPosition in ("PA", "AP") else "lateral"
        by_kind[kind].append(root / schema.image_relpath(int(r.subject_id), int(r.study_id), r.dicom_id))
    return by_kind


def shard_subset(work: Path, n_images: int, pool: dict[str, list[Path]]) -> tuple[Path, Path, int, int]:
    """Study CSVs holding the first `n_images` images of the dry run's CSVs, each image a hard link."""
    src, dst = work / "studies-chexpert", work / f"shard-studies-{n_images}"
    tree = work / f"shard-tree-{n_images}"
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir(parents=True)
    frames = {
        s: pd.read_csv(src / f"{s}.csv", dtype=str, keep_default_na=False)
        for s in ("train", "validate", "test")
    }
    budget, n_bytes, counter = n_images, 0, 0
    for split, frame in frames.items():
        share = round(n_images * len(frame) / sum(len(f) for f in frames.values()))
        take = frame["n_images"].astype(int).cumsum() <= min(share, budget)
        subset = frame.loc[take]
        budget -= int(subset["n_images"].astype(int).sum())
        for paths, views in zip(subset["image_paths"], subset["view_names"], strict=True):
            for rel, view in zip(paths.split(";"), views.split(";"), strict=True):
                kind = "frontal" if view in ("PA", "AP") else "lateral"
                target = tree / rel
                if not target.exists():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    source = pool[kind][counter % len(pool[kind])]
                    os.link(source, target)
                n_bytes += target.stat().st_size
                counter += 1
        subset.to_csv(dst / f"{split}.csv", index=False)
    return dst, tree, counter, n_bytes


def shard_runs(work: Path, n_images: int, pool_patients: int, image_size: int, rows: list[dict]) -> dict:
    pool = image_pool(work, pool_patients)
    studies, tree, count, n_bytes = shard_subset(work, n_images, pool)
    small, small_tree, small_count, _ = shard_subset(work, max(n_images // 5, 1), pool)
    results = {"images": count, "mean_jpeg_mib": round(n_bytes / count / 2**20, 2), "image_size": image_size}
    for workers, csvs, root, n in ((2, studies, tree, count), (1, small, small_tree, small_count)):
        out = work / f"shards-{workers}w"
        shutil.rmtree(out, ignore_errors=True)
        write_params(work, "chexpert", {"image_size": image_size, "workers": workers})
        argv = ["stages/shards.py", "--studies", str(csvs), "--mimic-root", str(root), "--out", str(out)]
        row = run_stage(f"shards ({n} images, {workers} worker{'s' * (workers > 1)})", argv, work, rows)
        results[f"{workers}w_images_per_s"] = round(n / row["wall_s"], 1)
        summary = json.loads((out / "summary.json").read_text())
        results[f"{workers}w_accounting"] = {k: summary[k] for k in ("n_studies_in", "n_rejected_studies",
                                             "n_images_in", "n_rejected_images")}  # fmt: skip
    per_core = results["1w_images_per_s"]
    efficiency = results["2w_images_per_s"] / (2 * per_core)
    rate16 = 16 * per_core * min(efficiency, 1.0)
    results["scaling_efficiency_2w"] = round(efficiency, 2)
    results["extrapolated_16_cores_min"] = round(MIMIC_IMAGES / rate16 / 60, 1)
    results["read_bandwidth_needed_mb_s"] = round(rate16 * MIMIC_JPG_BYTES / MIMIC_IMAGES / 1e6)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", type=Path, default=ROOT / "bench/results/dryrun")
    parser.add_argument("--n-patients", type=int, default=65_379)
    parser.add_argument("--shard-images", type=int, default=20_000)
    parser.add_argument("--pool-patients", type=int, default=200, help="patients of the full-size image pool")
    parser.add_argument("--image-size", type=int, default=256, help="shards.image_size (the paper profile's)")
    parser.add_argument("--skip-shards", action="store_true")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    report = {"cores": len(os.sched_getaffinity(0)), "data": data_stages(args.work, args.n_patients, rows)}
    if not args.skip_shards:
        report["shards"] = shard_runs(args.work, args.shard_images, args.pool_patients, args.image_size, rows)
    report["stages"] = rows
    (args.work / "report.json").write_text(json.dumps(report, indent=2))
    print(pd.DataFrame(rows).to_string(index=False))
    print(json.dumps({k: v for k, v in report.items() if k != "stages"}, indent=2))


if __name__ == "__main__":
    if len(sys.argv) > 3 and sys.argv[1] == "--child":
        child(sys.argv[4:], sys.argv[2])
    else:
        main()
