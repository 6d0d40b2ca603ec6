"""Everything about one patient's studies, from (seed, subject_id, study_id) alone: equal bytes for any
worker count.

Workers get batches of patients and return their rows already formatted as CSV text, so the parent only
concatenates and compresses; each patient's report folder is created once and reports are written with
bare `os.open`/`os.write` (the whole tree is built inside a temporary directory that is swapped in later).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from pipeline.mimic.schema import LABEL_COLUMNS, subject_group
from pipeline.synthetic import images as imaging
from pipeline.synthetic.findings import StudyState, create_anatomy, sample_state
from pipeline.synthetic.labels import label_rows
from pipeline.synthetic.metadata import image_meta, patient_dates, procedure_for, sample_views
from pipeline.synthetic.reports import ReportFlags, compose_report
from pipeline.synthetic.rng import Rng

# Streams of the per-study random generators; separate streams keep e.g. `images: false` from changing text.
_DATES, _STUDY, _PATIENT, _IMAGE, _RADIOLOGIST = 2, 3, 4, 5, 6
_FINDING_LABEL = {
    "cardiomegaly": "Cardiomegaly",
    "mediastinum": "Enlarged Cardiomediastinum",
    "effusion": "Pleural Effusion",
    "consolidation": "Consolidation",
    "pneumonia": "Pneumonia",
    "atelectasis": "Atelectasis",
    "edema": "Edema",
    "opacity": "Lung Opacity",
    "pneumothorax": "Pneumothorax",
    "lesion": "Lung Lesion",
    "fracture": "Fracture",
    "pleural_other": "Pleural Other",
}
_OPACITIES = ("opacity", "consolidation", "pneumonia", "atelectasis", "edema", "lesion")
TRUTH_COLUMNS = [
    "subject_id",
    "study_id",
    "split",
    "findings",
    "impression",
    "labels_section",
    *LABEL_COLUMNS,
    "state",
]
RARE_VIEW, NON_ASCII, EMPTY = "rare_view", "non_ascii", "empty"


class PatientTask(NamedTuple):
    subject_id: int
    split: str
    study_ids: tuple[int, ...]
    specials: tuple[tuple[int, str], ...] = ()  # (study index, RARE_VIEW | NON_ASCII | EMPTY)


@dataclass(frozen=True)
class RunConfig:
    seed: int
    images: bool
    image_scale: float
    jpg_root: str
    reports_root: str


class BatchOutput(NamedTuple):
    """CSV text (no header) of each release file for a batch of patients, plus the sidecar rows."""

    metadata: str
    split: str
    image_filenames: str
    chexpert: str
    negbio: str
    radiologist: str
    image_sums: list[tuple[str, str]]
    truth: list[tuple]


def radiologist_labels(state: StudyState, rng: Rng) -> dict[str, float | None]:
    """Test-set labels from the true state (not from text): hedged findings sometimes read as uncertain."""
    row: dict[str, float | None] = {}
    for name, label in _FINDING_LABEL.items():
        if name in state.findings:
            row[label] = -1.0 if state.findings[name].hedged and rng.random() < 0.5 else 1.0
        else:
            row[label] = 0.0 if rng.random() < 0.7 else None
    if any(n in state.findings for n in _OPACITIES):
        row["Lung Opacity"] = 1.0
    row["Support Devices"] = 1.0 if state.devices else (0.0 if rng.random() < 0.5 else None)
    row["No Finding"] = None if state.abnormal else 1.0
    return {k: row[k] for k in LABEL_COLUMNS}


def _write_new(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


class _Writers:
    def __init__(self) -> None:
        self.buffers = {k: io.StringIO() for k in ("metadata", "split", "chexpert", "negbio", "radiologist")}
        self.csv = {k: csv.writer(b, lineterminator="\n") for k, b in self.buffers.items()}
        self.paths: list[str] = []
        self.sums: list[tuple[str, str]] = []
        self.truth: list[tuple] = []

    def output(self) -> BatchOutput:
        text = {k: v.getvalue() for k, v in self.buffers.items()}
        text["image_filenames"] = "".join(f"{p}\n" for p in self.paths)
        return BatchOutput(**text, image_sums=self.sums, truth=self.truth)


def _study(cfg: RunConfig, task: PatientTask, j: int, date: int, time: float, anatomy, out: _Writers) -> None:
    study_id, subject_id = task.study_ids[j], task.subject_id
    special = {kind for i, kind in task.specials if i == j}
    rng = Rng.of(cfg.seed, _STUDY, study_id)
    views = sample_views(rng, RARE_VIEW in special)
    portable = "AP" in views and "PA" not in views
    procedure = procedure_for(views, rng)
    state = sample_state(rng, anatomy, task.split, portable, j > 0)
    flags = ReportFlags(non_ascii=NON_ASCII in special, empty=EMPTY in special)
    report = compose_report(state, list(views), procedure or "", rng, flags)
    metas = [image_meta(v, rng, cfg.image_scale, portable) for v in views]

    patient_dir = f"files/{subject_group(subject_id)}/p{subject_id}"
    _write_new(f"{cfg.reports_root}/{patient_dir}/s{study_id}.txt", report.text.encode("utf-8"))
    for i, m in enumerate(metas):
        img_rel = f"{patient_dir}/s{study_id}/{m.dicom_id}.jpg"
        ids = (m.dicom_id, subject_id, study_id)
        image = (m.view or None, m.rows, m.cols, date, time, procedure, m.view_meaning, m.orientation)
        out.csv["metadata"].writerow((*ids, procedure, *image))
        out.csv["split"].writerow((m.dicom_id, study_id, subject_id, task.split))
        out.paths.append(img_rel)
        if cfg.images:
            img_rng = np.random.default_rng([cfg.seed, _IMAGE, study_id, i])
            data = imaging.encode_jpeg(imaging.render(state, m.view, m.rows, m.cols, img_rng))
            if i == 0:
                os.mkdir(f"{cfg.jpg_root}/{patient_dir}/s{study_id}")
            _write_new(f"{cfg.jpg_root}/{img_rel}", data)
            out.sums.append((img_rel, hashlib.sha256(data).hexdigest()))

    shipped: dict[str, float | None] = dict.fromkeys(LABEL_COLUMNS)
    if report.labels_section != "none":
        shipped, negbio = label_rows(report.label_sentences)
        out.csv["chexpert"].writerow((subject_id, study_id, *(shipped[k] for k in LABEL_COLUMNS)))
        out.csv["negbio"].writerow((subject_id, study_id, *(negbio[k] for k in LABEL_COLUMNS)))
    state_json = json.dumps(state.to_json_dict(), sort_keys=True)
    section_texts = (report.findings, report.impression, report.labels_section)
    out.truth.append(
        (subject_id, study_id, task.split, *section_texts, *(shipped[k] for k in LABEL_COLUMNS), state_json)
    )
    if task.split == "test":
        rad_rng = Rng.of(cfg.seed, _RADIOLOGIST, study_id)
        if rad_rng.random() < 0.5:
            rad = radiologist_labels(state, rad_rng)
            out.csv["radiologist"].writerow((study_id, *(rad[k] for k in LABEL_COLUMNS)))


def build_patients(cfg: RunConfig, tasks: list[PatientTask]) -> BatchOutput:
    """All studies of a batch of patients: report files (and images) on disk, rows returned as text."""
    out = _Writers()
    for task in tasks:
        anatomy = create_anatomy(Rng.of(cfg.seed, _PATIENT, task.subject_id))
        dates, times = patient_dates(Rng.of(cfg.seed, _DATES, task.subject_id), len(task.study_ids))
        patient_dir = f"files/{subject_group(task.subject_id)}/p{task.subject_id}"
        os.mkdir(f"{cfg.reports_root}/{patient_dir}")
        if cfg.images:
            os.mkdir(f"{cfg.jpg_root}/{patient_dir}")
        for j in range(len(task.study_ids)):
            _study(cfg, task, j, dates[j], times[j], anatomy, out)
    return out.output()
