"""Orchestration: a deterministic synthetic MIMIC-CXR-JPG 2.1.0 tree + reports tree + truth sidecar.

Besides the release files it writes `truth.parquet` (outside both release trees): the true sections, the
shipped labels and the latent state per study, for tests of every downstream stage. The radiologist file
`mimic-cxr-2.1.0-test-set-labeled.csv` is written as `study_id` + the 14 labels in file order; that column
layout is unconfirmed (no primary source states it).

The whole output is built in a temporary sibling directory and swapped into place, so an interrupted run
never leaves a half-written dataset behind.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from pipeline.io import atomic_dir, write_csv, write_parquet, write_text
from pipeline.mimic import schema
from pipeline.synthetic.metadata import assign_splits, draw_unique, patient_dates, studies_per_patient
from pipeline.synthetic.reports import ReportFlags
from pipeline.synthetic.study import StudyRecord, StudyTask, build_study

JPG_DIR = Path("mimic-cxr-jpg") / "2.1.0"
REPORTS_DIR = Path("mimic-cxr-reports")
TRUTH_FILE = "truth.parquet"
_GLOBAL = 1
P_NON_ASCII, P_EMPTY = 2e-5, 3.5e-5
FORCE_RARE_MIN_STUDIES = 1000


@dataclass(frozen=True)
class SplitFractions:
    train: float = 0.76
    validate: float = 0.12
    test: float = 0.12

    def __post_init__(self) -> None:
        values = (self.train, self.validate, self.test)
        if min(values) < 0 or abs(sum(values) - 1.0) > 1e-6:
            raise ValueError(f"split_fractions must be non-negative and sum to 1, got {values}")


@dataclass(frozen=True)
class SynthesizeParams:
    """The `synthesize` section of params.yaml."""

    seed: int = 42
    n_patients: int = 500
    split_fractions: SplitFractions = field(default_factory=SplitFractions)
    image_scale: float = 0.125
    images: bool = True
    workers: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.n_patients, int) or self.n_patients < 1:
            raise ValueError(f"n_patients must be a positive integer, got {self.n_patients!r}")
        if not 0.01 <= float(self.image_scale) <= 1.5:
            raise ValueError(f"image_scale must be in [0.01, 1.5], got {self.image_scale!r}")
        if not isinstance(self.workers, int) or self.workers < 0:
            raise ValueError(f"workers must be 0 (all cores) or a positive integer, got {self.workers!r}")


def _plan(params: SynthesizeParams, jpg_root: Path, reports_root: Path) -> list[StudyTask]:
    """Patients, their studies, dates and splits; the only globally random part of the generator."""
    rng = np.random.default_rng([params.seed, _GLOBAL])
    n = params.n_patients
    subjects = np.sort(draw_unique(rng, 10_000_000, 20_000_000, n))
    counts = studies_per_patient(rng, n)
    fr = params.split_fractions
    splits = assign_splits(rng, n, {"train": fr.train, "validate": fr.validate, "test": fr.test})
    study_ids = draw_unique(rng, 50_000_000, 60_000_000, int(counts.sum()))
    total = len(study_ids)
    forced = rng.choice(total, size=min(4, total), replace=False) if total >= FORCE_RARE_MIN_STUDIES else []
    rare = set(int(i) for i in forced[:2])
    non_ascii = set(np.flatnonzero(rng.random(total) < P_NON_ASCII)) | {int(i) for i in forced[2:3]}
    empty = set(np.flatnonzero(rng.random(total) < P_EMPTY)) | {int(i) for i in forced[3:4]}
    tasks, k = [], 0
    for subject, count, split in zip(subjects, counts, splits, strict=True):
        dates, times = patient_dates(np.random.default_rng([params.seed, _GLOBAL, int(subject)]), int(count))
        for j in range(int(count)):
            flags = ReportFlags(non_ascii=k in non_ascii, empty=k in empty)
            tasks.append(
                StudyTask(
                    params.seed,
                    int(subject),
                    int(study_ids[k]),
                    str(split),
                    j > 0,
                    dates[j],
                    times[j],
                    k in rare,
                    flags,
                    params.images,
                    params.image_scale,
                    str(jpg_root),
                    str(reports_root),
                )
            )
            k += 1
    return tasks


def _run(tasks: list[StudyTask], workers: int) -> Iterator[StudyRecord]:
    n = workers or os.cpu_count() or 1
    bar = dict(total=len(tasks), desc="synthesize", unit="study", disable=None)
    if n == 1:
        yield from tqdm(map(build_study, tasks), **bar)
        return
    with ProcessPoolExecutor(max_workers=n) as pool:
        yield from tqdm(pool.map(build_study, tasks, chunksize=32), **bar)


def _label_frame(rows: list[dict], columns: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=columns)
    for col in schema.LABEL_COLUMNS:
        frame[col] = frame[col].astype("float64")
    return frame


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def synthesize(params: SynthesizeParams, out_dir: str | os.PathLike) -> dict[str, int]:
    """Write the synthetic source under `out_dir`; returns counts for the stage log."""
    with atomic_dir(out_dir) as tmp:
        jpg_root, reports_root = tmp / JPG_DIR, tmp / REPORTS_DIR
        jpg_root.mkdir(parents=True)
        reports_root.mkdir(parents=True)
        tasks = _plan(params, jpg_root, reports_root)
        meta, sums, truth, chexpert, negbio, radiologist = [], [], [], [], [], []
        for rec in _run(tasks, params.workers):
            meta += rec.metadata
            sums += rec.image_sums
            truth.append(rec.truth)
            chexpert += [rec.chexpert] if rec.chexpert else []
            negbio += [rec.negbio] if rec.negbio else []
            radiologist += [rec.radiologist] if rec.radiologist else []
        ids = {r["dicom_id"] for r in meta}
        if len(ids) != len(meta):
            raise RuntimeError("dicom_id collision; choose another seed")  # 2^-160 odds, but never silent
        split_of = {t.study_id: t.split for t in tasks}
        metadata = pd.DataFrame(meta)
        write_csv(jpg_root / schema.METADATA_FILE, metadata[schema.METADATA_COLUMNS], compression="gzip")
        split = metadata[["dicom_id", "study_id", "subject_id"]].assign(split=metadata.study_id.map(split_of))
        write_csv(jpg_root / schema.SPLIT_FILE, split[schema.SPLIT_COLUMNS], compression="gzip")
        for name, rows in (("chexpert", chexpert), ("negbio", negbio)):
            frame = _label_frame(rows, schema.LABEL_FILE_COLUMNS)
            write_csv(jpg_root / schema.LABEL_FILES[name], frame, compression="gzip")
        write_csv(
            jpg_root / schema.TEST_SET_LABELED_FILE,
            _label_frame(radiologist, ["study_id", *schema.LABEL_COLUMNS]),
        )
        write_text(jpg_root / schema.IMAGE_FILENAMES_FILE, "".join(f"{p}\n" for p in metadata["path"]))
        listed = dict(sums)
        for path in jpg_root.iterdir():
            if path.is_file():
                listed[path.name] = _sha256(path)
        write_text(
            jpg_root / schema.SHA256SUMS_FILE, "".join(f"{h}  {p}\n" for p, h in sorted(listed.items()))
        )
        write_parquet(tmp / TRUTH_FILE, _label_frame(truth, list(truth[0]) if truth else []))
    return {
        "patients": params.n_patients,
        "studies": len(tasks),
        "images": len(meta),
        "label_rows": len(chexpert),
        "images_written": len(sums),
    }
