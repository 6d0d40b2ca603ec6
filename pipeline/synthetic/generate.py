"""Orchestration: a deterministic synthetic MIMIC-CXR-JPG 2.1.0 tree + reports tree + truth sidecar.

Besides the release files it writes `truth.parquet` (outside both release trees): the true sections, the
shipped labels and the latent state per study, for tests of every downstream stage. The radiologist file
`mimic-cxr-2.1.0-test-set-labeled.csv` is written as `study_id` + the 14 labels in file order; that column
layout is unconfirmed (no primary source states it).

The whole output is built in a temporary sibling directory and swapped into place, so an interrupted run
never leaves a half-written dataset behind.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import struct
import zlib
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from pipeline.io import atomic_dir, write_bytes, write_parquet, write_text
from pipeline.mimic import schema
from pipeline.synthetic.metadata import assign_splits, draw_unique, studies_per_patient
from pipeline.synthetic.study import (
    EMPTY,
    NON_ASCII,
    RARE_VIEW,
    TRUTH_COLUMNS,
    BatchOutput,
    PatientTask,
    RunConfig,
    build_patients,
)

JPG_DIR = Path("mimic-cxr-jpg") / "2.1.0"
REPORTS_DIR = Path("mimic-cxr-reports")
TRUTH_FILE = "truth.parquet"
_GLOBAL = 1
P_NON_ASCII, P_EMPTY = 2e-5, 3.5e-5
FORCE_RARE_MIN_STUDIES = 1000
GZIP_LEVEL = 6


@dataclass(frozen=True)
class SplitFractions:
    train: float = 0.70
    validate: float = 0.10
    test: float = 0.20

    def __post_init__(self) -> None:
        values = (self.train, self.validate, self.test)
        if min(values) < 0 or abs(sum(values) - 1.0) > 1e-6:
            raise ValueError(f"split_fractions must be non-negative and sum to 1, got {values}")


@dataclass(frozen=True)
class SynthesizeParams:
    """The `synthesize` section of params.yaml."""

    seed: int = 42
    n_patients: int = 600
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


def _plan(params: SynthesizeParams) -> list[PatientTask]:
    """Patients, their study ids, splits and forced rarities: the only globally random part."""
    rng = np.random.default_rng([params.seed, _GLOBAL])
    n = params.n_patients
    subjects = np.sort(draw_unique(rng, 10_000_000, 20_000_000, n))
    counts = studies_per_patient(rng, n)
    fr = params.split_fractions
    splits = assign_splits(rng, n, {"train": fr.train, "validate": fr.validate, "test": fr.test})
    study_ids = draw_unique(rng, 50_000_000, 60_000_000, int(counts.sum())).tolist()
    total = len(study_ids)
    forced = rng.choice(total, size=min(4, total), replace=False) if total >= FORCE_RARE_MIN_STUDIES else []
    special: dict[int, list[str]] = {}
    for kind, extra in ((RARE_VIEW, forced[:2]), (NON_ASCII, forced[2:3]), (EMPTY, forced[3:4])):
        for k in extra:
            special.setdefault(int(k), []).append(kind)
    for kind, p in ((NON_ASCII, P_NON_ASCII), (EMPTY, P_EMPTY)):
        for k in np.flatnonzero(rng.random(total) < p):
            special.setdefault(int(k), []).append(kind)
    ends = np.cumsum(counts).tolist()
    tasks, first = [], 0
    for subject, end, split in zip(subjects.tolist(), ends, splits.tolist(), strict=True):
        marks = tuple((k - first, kind) for k in range(first, end) if k in special for kind in special[k])
        tasks.append(PatientTask(subject, split, tuple(study_ids[first:end]), marks))
        first = end
    return tasks


def _batches(tasks: list[PatientTask], studies_per_batch: int) -> list[list[PatientTask]]:
    out: list[list[PatientTask]] = [[]]
    size = 0
    for task in tasks:
        if size >= studies_per_batch:
            out.append([])
            size = 0
        out[-1].append(task)
        size += len(task.study_ids)
    return out


def _run(cfg: RunConfig, tasks: list[PatientTask], workers: int) -> Iterator[BatchOutput]:
    n = workers or os.cpu_count() or 1
    batches = _batches(tasks, 16 if cfg.images else 1024)
    bar = tqdm(total=sum(len(t.study_ids) for t in tasks), desc="synthesize", unit="study", disable=None)
    work = functools.partial(build_patients, cfg)
    with bar:
        if n == 1:
            results: Iterator[BatchOutput] = map(work, batches)
            for batch, out in zip(batches, results, strict=True):
                bar.update(sum(len(t.study_ids) for t in batch))
                yield out
            return
        with ProcessPoolExecutor(max_workers=n) as pool:
            for batch, out in zip(batches, pool.map(work, batches), strict=True):
                bar.update(sum(len(t.study_ids) for t in batch))
                yield out


class _GzipStream:
    """gzip built batch by batch while workers run; bytes equal `gzip.compress(text, 6, mtime=0)`."""

    def __init__(self, columns: list[str]) -> None:
        self._deflate = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
        self._parts = [b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03"]
        self._crc = self._size = 0
        self.add(",".join(columns) + "\n")

    def add(self, text: str) -> None:
        data = text.encode("utf-8")
        self._crc = zlib.crc32(data, self._crc)
        self._size += len(data)
        self._parts.append(self._deflate.compress(data))

    def finish(self) -> bytes:
        trailer = struct.pack("<II", self._crc, self._size & 0xFFFFFFFF)
        return b"".join([*self._parts, self._deflate.flush(), trailer])


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _truth_frame(rows: list[tuple]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=TRUTH_COLUMNS)
    for col in schema.LABEL_COLUMNS:
        frame[col] = frame[col].astype("float64")
    return frame


def synthesize(params: SynthesizeParams, out_dir: str | os.PathLike) -> dict[str, int]:
    """Write the synthetic source under `out_dir`; returns counts for the stage log."""
    with atomic_dir(out_dir) as tmp:
        jpg_root, reports_root = tmp / JPG_DIR, tmp / REPORTS_DIR
        tasks = _plan(params)
        for group in sorted({schema.subject_group(t.subject_id) for t in tasks}):
            (reports_root / "files" / group).mkdir(parents=True)
            (jpg_root / "files" / group).mkdir(parents=True, exist_ok=not params.images)
        if not params.images:
            shutil.rmtree(jpg_root / "files")
        jpg_root.mkdir(parents=True, exist_ok=True)
        cfg = RunConfig(params.seed, params.images, params.image_scale, str(jpg_root), str(reports_root))
        gz = {
            schema.METADATA_FILE: ("metadata", _GzipStream(schema.METADATA_COLUMNS)),
            schema.SPLIT_FILE: ("split", _GzipStream(schema.SPLIT_COLUMNS)),
            schema.CHEXPERT_FILE: ("chexpert", _GzipStream(schema.LABEL_FILE_COLUMNS)),
            schema.NEGBIO_FILE: ("negbio", _GzipStream(schema.LABEL_FILE_COLUMNS)),
        }
        radiologist, image_filenames, dicom_ids = [], [], []
        sums: list[tuple[str, str]] = []
        truth: list[tuple] = []
        n_label_rows = 0
        for out in _run(cfg, tasks, params.workers):
            for key, stream in gz.values():
                stream.add(getattr(out, key))
            radiologist.append(out.radiologist)
            image_filenames.append(out.image_filenames)
            dicom_ids += [line[: line.index(",")] for line in out.split.splitlines()]
            n_label_rows += out.chexpert.count("\n")
            sums += out.image_sums
            truth += out.truth
        if len(set(dicom_ids)) != len(dicom_ids):
            raise RuntimeError("dicom_id collision; choose another seed")  # 2^-160 odds, but never silent
        for name, (_, stream) in gz.items():
            write_bytes(jpg_root / name, stream.finish())
        header = ",".join(["study_id", *schema.LABEL_COLUMNS]) + "\n"
        write_text(jpg_root / schema.TEST_SET_LABELED_FILE, header + "".join(radiologist))
        write_text(jpg_root / schema.IMAGE_FILENAMES_FILE, "".join(image_filenames))
        listed = dict(sums)
        for path in jpg_root.iterdir():
            if path.is_file():
                listed[path.name] = _sha256(path)
        write_text(
            jpg_root / schema.SHA256SUMS_FILE, "".join(f"{h}  {p}\n" for p, h in sorted(listed.items()))
        )
        write_parquet(tmp / TRUTH_FILE, _truth_frame(truth))
    return {
        "patients": params.n_patients,
        "studies": len(truth),
        "images": len(dicom_ids),
        "label_rows": n_label_rows,
        "images_written": len(sums),
    }
