"""Everything about one study, computed from (seed, study_id) alone so any worker count gives equal bytes."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.mimic.schema import LABEL_COLUMNS, image_relpath, report_relpath
from pipeline.synthetic import images as imaging
from pipeline.synthetic.findings import StudyState, create_anatomy, sample_state
from pipeline.synthetic.labels import label_row
from pipeline.synthetic.metadata import image_meta, procedure_for, sample_views
from pipeline.synthetic.reports import ReportFlags, compose_report

# Streams of the per-study random generators; separate streams keep e.g. `images: false` from changing text.
_STUDY, _PATIENT, _IMAGE, _RADIOLOGIST = 3, 4, 5, 6
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


@dataclass(frozen=True)
class StudyTask:
    seed: int
    subject_id: int
    study_id: int
    split: str
    has_prior: bool
    date: int
    time: float
    force_rare_view: bool
    flags: ReportFlags
    images: bool
    image_scale: float
    jpg_root: str
    reports_root: str


@dataclass(frozen=True)
class StudyRecord:
    metadata: list[dict]
    image_sums: list[tuple[str, str]]
    truth: dict
    chexpert: dict | None
    negbio: dict | None
    radiologist: dict | None


def radiologist_labels(state: StudyState, rng: np.random.Generator) -> dict[str, float | None]:
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


def build_study(task: StudyTask) -> StudyRecord:
    rng = np.random.default_rng([task.seed, _STUDY, task.study_id])
    anatomy = create_anatomy(np.random.default_rng([task.seed, _PATIENT, task.subject_id]))
    views = sample_views(rng, task.force_rare_view)
    portable = "AP" in views and "PA" not in views
    procedure = procedure_for(views, rng)
    state = sample_state(rng, anatomy, task.split, portable, task.has_prior)
    report = compose_report(state, list(views), procedure or "", rng, task.flags)
    metas = [image_meta(v, rng, task.image_scale, portable) for v in views]

    rel = report_relpath(task.subject_id, task.study_id)
    path = Path(task.reports_root) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(report.text.encode("utf-8"))

    rows, sums = [], []
    for i, m in enumerate(metas):
        img_rel = image_relpath(task.subject_id, task.study_id, m.dicom_id)
        rows.append(
            {
                "dicom_id": m.dicom_id,
                "subject_id": task.subject_id,
                "study_id": task.study_id,
                "PerformedProcedureStepDescription": procedure,
                "ViewPosition": m.view or None,
                "Rows": m.rows,
                "Columns": m.cols,
                "StudyDate": task.date,
                "StudyTime": task.time,
                "ProcedureCodeSequence_CodeMeaning": procedure,
                "ViewCodeSequence_CodeMeaning": m.view_meaning,
                "PatientOrientationCodeSequence_CodeMeaning": m.orientation,
                "path": img_rel,
            }
        )
        if task.images:
            img_rng = np.random.default_rng([task.seed, _IMAGE, task.study_id, i])
            data = imaging.encode_jpeg(imaging.render(state, m.view, m.rows, m.cols, img_rng))
            out = Path(task.jpg_root) / img_rel
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(data)
            sums.append((img_rel, hashlib.sha256(data).hexdigest()))

    ids = {"subject_id": task.subject_id, "study_id": task.study_id}
    chexpert = negbio = None
    if report.labels_section != "none":
        chexpert = {**ids, **label_row(report.label_sentences)}
        negbio = {**ids, **label_row(report.label_sentences, negbio=True)}
    shipped = chexpert or dict.fromkeys(LABEL_COLUMNS)
    truth = {
        **ids,
        "split": task.split,
        "findings": report.findings,
        "impression": report.impression,
        "labels_section": report.labels_section,
        **{k: shipped[k] for k in LABEL_COLUMNS},
        "state": json.dumps(state.to_json_dict(), sort_keys=True),
    }
    radiologist = None
    if task.split == "test":
        rad_rng = np.random.default_rng([task.seed, _RADIOLOGIST, task.study_id])
        if rad_rng.random() < 0.5:
            radiologist = {"study_id": task.study_id, **radiologist_labels(state, rad_rng)}
    return StudyRecord(rows, sums, truth, chexpert, negbio, radiologist)
