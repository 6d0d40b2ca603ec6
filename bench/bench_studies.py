"""Benchmark: sections + studies on a full-MIMIC-scale synthetic release (metadata + reports, no images).

Goal: sections + studies ≤ 60 s on a 2-core machine for 377k image rows and 227k reports. Baselines,
measured in the same run: sectioning in one process, and a per-study Python loop for the assembly (on a
sample, extrapolated linearly).

    .venv/bin/python bench/bench_studies.py [--source DIR] [--n-patients 65379]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import pandas as pd

from pipeline.mimic import readers, schema
from pipeline.mimic.labels import load_shipped_labels
from pipeline.mimic.reports import iter_report_files, section_reports
from pipeline.studies import StudiesParams, assemble_studies


def ensure_source(source: Path, n_patients: int) -> Path:
    if not (source / "mimic-cxr-jpg/2.1.0" / schema.METADATA_FILE).is_file():
        from pipeline.synthetic.generate import SynthesizeParams, synthesize

        t = time.perf_counter()
        synthesize(SynthesizeParams(n_patients=n_patients, images=False), source)
        print(f"generated metadata+reports source in {time.perf_counter() - t:.1f} s")
    return source


def naive_assembly(metadata: pd.DataFrame, split: pd.DataFrame, sections: pd.DataFrame, n: int) -> float:
    """Row-by-row assembly of the first `n` studies, the way a first script usually does it."""
    t = time.perf_counter()
    studies = split["study_id"].drop_duplicates().head(n)
    sec = sections.set_index("study_id")
    rows = []
    for study in studies:
        imgs = metadata[metadata["study_id"] == study]
        frontal = imgs[imgs["ViewPosition"].isin(["PA", "AP"])]
        if frontal.empty or study not in sec.index:
            continue
        paths = [
            schema.image_relpath(r.subject_id, r.study_id, r.dicom_id)
            for r in imgs.sort_values("ViewPosition").itertuples()
        ]
        rows.append((study, ";".join(paths), sec.at[study, "findings"], sec.at[study, "impression"]))
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", type=Path, default=Path("/tmp/medprobclip-fullscale"))
    parser.add_argument("--n-patients", type=int, default=65379)
    args = parser.parse_args()
    source = ensure_source(args.source, args.n_patients)
    root, reports = source / "mimic-cxr-jpg/2.1.0", source / "mimic-cxr-reports"
    cores = os.cpu_count() or 1

    t0 = time.perf_counter()
    n_bytes = sum(len(Path(p).read_bytes()) for _, _, p in iter_report_files(reports))
    t_warm = time.perf_counter() - t0
    print(f"warm-up read of the reports: {t_warm:.1f} s ({n_bytes / 1e6:.0f} MB); timings below are warm")

    t0 = time.perf_counter()
    sections = section_reports(reports, workers=0, progress=False)
    t_sections = time.perf_counter() - t0

    t0 = time.perf_counter()
    section_reports(reports, workers=1, progress=False)
    t_sections_1 = time.perf_counter() - t0

    t0 = time.perf_counter()
    metadata, split = readers.read_metadata(root), readers.read_split(root)
    labels = load_shipped_labels(root, "chexpert")
    image_list = readers.read_image_filenames(root)
    t_read = time.perf_counter() - t0
    t0 = time.perf_counter()
    tables = assemble_studies(metadata, split, sections, labels, StudiesParams(), image_list=image_list)
    t_assemble = time.perf_counter() - t0

    n_studies = split["study_id"].nunique()
    n_naive = 2_000
    t_naive = naive_assembly(metadata, split, sections, n_naive) * n_studies / n_naive

    total = t_sections + t_read + t_assemble
    print(
        f"rows: {len(metadata):,} image rows, {len(sections):,} reports, {n_studies:,} studies; {cores} cores"
    )
    print(f"sections ({cores} procs): {t_sections:6.1f} s  {len(sections) / t_sections:9,.0f} reports/s")
    print(f"sections (1 proc)      : {t_sections_1:6.1f} s  -> speed-up {t_sections_1 / t_sections:.2f}x")
    print(f"read release files     : {t_read:6.1f} s  {len(metadata) / t_read:9,.0f} rows/s")
    print(f"assemble studies       : {t_assemble:6.1f} s  {len(metadata) / t_assemble:9,.0f} image rows/s")
    print(
        f"naive per-study loop   : {t_naive:6.1f} s (extrapolated from {n_naive:,} studies)"
        f" -> ours {t_naive / t_assemble:.0f}x faster"
    )
    out = tables.summary["output_studies"]
    print(f"output: {out['total']:,} studies, {tables.summary['rejected_studies']:,} rejects")
    print(f"TOTAL sections + studies: {total:.1f} s (goal <= 60 s) -> {'OK' if total <= 60 else 'MISSED'}")


if __name__ == "__main__":
    main()
