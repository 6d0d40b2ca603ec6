"""Study CSV rows as typed records, with bad rows turned into counted rejects.

Both the shard writer and the CSV+JPEG dataset read the study CSVs, so both get the same parsing and the
same idea of which row is unusable.
"""

from __future__ import annotations

import io
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pipeline.errors import PipelineError
from pipeline.io import decode_utf8
from pipeline.mimic import schema

STUDY_COLUMNS = schema.STUDY_CSV_COLUMNS
STUDY_REJECT_REASONS = ("bad_row", "duplicate_study", "no_readable_image")
_LABEL_CELLS = {"1.0": 1.0, "1": 1.0, "0.0": 0.0, "0": 0.0, "-1.0": -1.0, "-1": -1.0, "": None}
# MIMIC ids are 8-digit positive integers; a longer one cannot be a MIMIC id and would not fit a tar
# member name (`s<study_id>.img0.jpg` in 100 bytes).
_ID = re.compile(r"[0-9]{1,8}")
# The release's largest study has a few tens of images and the CSV generator keeps at most
# `studies.views.max_images`; more than this in one row is a hand-edit or a broken export.
MAX_IMAGES_PER_STUDY = 64


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


def _id(value: str, name: str) -> int:
    """A MIMIC id: 1 to 8 digits, positive (no sign, no spaces, no 120-digit numbers)."""
    if not _ID.fullmatch(value) or int(value) == 0:
        shown = value if len(value) <= 20 else value[:17] + "..."
        raise BadRow(f"{name}={shown!r} is not a positive id of at most 8 digits")
    return int(value)


def parse_row(rec: dict[str, str], split: str) -> StudyRow:
    """A CSV record (all cells as strings) as a StudyRow; raises BadRow with a readable reason."""
    study_id = _id(rec["study_id"], "study_id")
    subject_id = _id(rec["subject_id"], "subject_id")
    paths = tuple(rec["image_paths"].split(";")) if rec["image_paths"] else ()
    views = tuple(rec["view_names"].split(";")) if rec["image_paths"] else ()
    if not paths:
        raise BadRow("image_paths is empty")
    if len(paths) > MAX_IMAGES_PER_STUDY:
        raise BadRow(f"{len(paths)} image_paths; a study has at most {MAX_IMAGES_PER_STUDY}")
    if len(paths) != len(views):
        raise BadRow(f"{len(paths)} image_paths but {len(views)} view_names")
    if len(set(paths)) != len(paths):
        twice = next(p for p in paths if paths.count(p) > 1)
        raise BadRow(f"image {twice!r} is listed more than once")
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
        subject_id=subject_id,
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
    frame = read_study_frame(path)
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


REGENERATE = "regenerate it with the `studies` stage (dvc repro studies) or fix the edit"


def read_study_frame(path: Path) -> pd.DataFrame:
    """The CSV's cells as strings; a file that is not a UTF-8 CSV at all is one ShardsError naming it."""
    if not path.is_file():
        raise ShardsError(f"{path}: study CSV not found (run the `studies` stage first)")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ShardsError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if not data.strip(b"\xef\xbb\xbf \t\r\n"):
        raise ShardsError(f"{path}: file is empty, not even a header; {REGENERATE}")
    decode_utf8(
        path,
        data,
        ShardsError,
        f"not UTF-8 (byte {{byte}}; saved as Latin-1 by an editor?); save it as UTF-8 or {REGENERATE}",
    )
    try:
        return pd.read_csv(
            io.BytesIO(data), dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8-sig"
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ShardsError(f"{path}: not a readable CSV ({reason}); {REGENERATE}") from None


def check_split_membership(splits: dict[str, list[StudyRow]], where: str | os.PathLike) -> None:
    """Each study and each patient must live in exactly one split (the official split is patient-
    disjoint); a hand-edited CSV that repeats one in another split would leak it into two sets of shards."""
    by_study: dict[int, list[str]] = {}
    by_subject: dict[int, list[str]] = {}
    for split, rows in splits.items():
        for row in rows:
            for table, key in ((by_study, row.study_id), (by_subject, row.subject_id)):
                names = table.setdefault(key, [])
                if split not in names:
                    names.append(split)
    parts = []
    for what, table in (("study id", by_study), ("patient", by_subject)):
        leaks = [f"{key} ({', '.join(names)})" for key, names in table.items() if len(names) > 1]
        if leaks:
            parts.append(f"{len(leaks)} {what}(s) in more than one split: {', '.join(leaks[:10])}")
    if parts:
        raise ShardsError(
            f"{where}: {'; '.join(parts)}; a study and a patient must each be in exactly one split, or "
            f"they leak between training and evaluation — {REGENERATE}"
        )


def _row_reject(study_id: str, split: str, reason: str, detail: str) -> dict:
    return {"study_id": study_id, "split": split, "image_path": "", "reason": reason, "detail": detail}
