"""Study CSV rows as typed records, with bad rows turned into counted rejects.

Both the shard writer and the CSV+JPEG dataset read the study CSVs, so both get the same parsing and the
same idea of which row is unusable.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pipeline.errors import PipelineError
from pipeline.mimic import schema

STUDY_COLUMNS = schema.STUDY_CSV_COLUMNS
STUDY_REJECT_REASONS = ("bad_row", "duplicate_study", "no_readable_image")
_LABEL_CELLS = {"1.0": 1.0, "1": 1.0, "0.0": 0.0, "0": 0.0, "-1.0": -1.0, "-1": -1.0, "": None}


class ShardsError(PipelineError):
    """The shard stage or a loader cannot produce trustworthy output; the message says what to fix."""


@dataclass(frozen=True)
class StudyRow:
    """One study as the CSV generator wrote it; labels in `schema.LABEL_COLUMNS` order, None = blank."""

    study_id: int
    subject_id: int
    split: str
    study_date: str
    image_paths: tuple[str, ...]
    view_names: tuple[str, ...]
    findings: str
    impression: str
    labels: tuple[float | None, ...]

    def label_array(self) -> list[float]:
        return [math.nan if v is None else v for v in self.labels]


class BadRow(ValueError):
    pass


def _int(value: str, name: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise BadRow(f"{name}={value!r} is not an integer") from None


def parse_row(rec: dict[str, str], split: str) -> StudyRow:
    """A CSV record (all cells as strings) as a StudyRow; raises BadRow with a readable reason."""
    study_id = _int(rec["study_id"], "study_id")
    paths = tuple(rec["image_paths"].split(";")) if rec["image_paths"] else ()
    views = tuple(rec["view_names"].split(";")) if rec["image_paths"] else ()
    if not paths:
        raise BadRow("image_paths is empty")
    if len(paths) != len(views):
        raise BadRow(f"{len(paths)} image_paths but {len(views)} view_names")
    if rec["n_images"] and _int(rec["n_images"], "n_images") != len(paths):
        raise BadRow(f"n_images={rec['n_images']} but {len(paths)} image_paths")
    if rec["split"] and rec["split"] != split:
        raise BadRow(f"split={rec['split']!r} in {split}.csv")
    labels = []
    for name in schema.LABEL_COLUMNS:
        cell = rec[name].strip()
        if cell not in _LABEL_CELLS:
            raise BadRow(f"label {name}={cell!r} is not 1.0, 0.0, -1.0 or empty")
        labels.append(_LABEL_CELLS[cell])
    findings, impression = rec["findings"].strip(), rec["impression"].strip()
    return StudyRow(
        study_id=study_id,
        subject_id=_int(rec["subject_id"], "subject_id"),
        split=split,
        study_date=rec["study_date"],
        image_paths=paths,
        view_names=views,
        findings=findings,
        impression=impression,
        labels=tuple(labels),
    )


def read_study_csv(path: str | os.PathLike, split: str) -> tuple[list[StudyRow], list[dict]]:
    """Rows of one study CSV in file order, and rejects (`bad_row`, `duplicate_study`) for the rest."""
    path = Path(path)
    if not path.is_file():
        raise ShardsError(f"{path}: study CSV not found (run the `studies` stage first)")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    missing = [c for c in STUDY_COLUMNS if c not in frame.columns]
    if missing:
        raise ShardsError(
            f"{path}: missing columns {missing}; expected the study CSV contract {STUDY_COLUMNS}"
        )
    rows: list[StudyRow] = []
    rejects: list[dict] = []
    seen: set[int] = set()
    for line, rec in enumerate(frame[STUDY_COLUMNS].to_dict("records"), start=2):
        try:
            row = parse_row(rec, split)
        except BadRow as exc:
            rejects.append(_row_reject(rec["study_id"], split, "bad_row", f"{path.name}:{line}: {exc}"))
            continue
        if row.study_id in seen:
            rejects.append(_row_reject(rec["study_id"], split, "duplicate_study", f"{path.name}:{line}"))
            continue
        seen.add(row.study_id)
        rows.append(row)
    return rows, rejects


def _row_reject(study_id: str, split: str, reason: str, detail: str) -> dict:
    return {"study_id": study_id, "split": split, "image_path": "", "reason": reason, "detail": detail}
