"""The reports tree: find every `s<study>.txt`, read and section it in parallel, as one table."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import astuple, dataclass, fields
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from pipeline.errors import PipelineError
from pipeline.mimic.sections import ReportSections, decode_report, extract_sections

_SUBJECT_DIR = re.compile(r"p(\d{8})")
_REPORT_FILE = re.compile(r"s(\d{8})\.txt")
_GROUP_DIR = re.compile(r"p1\d")
SECTION_FIELDS = [f.name for f in fields(ReportSections)]
COLUMNS = ["study_id", "subject_id", "status", "decode_errors", "n_bytes", *SECTION_FIELDS]
MAX_REPORT_BYTES = 1 << 20


class ReportsTreeError(PipelineError, FileNotFoundError):
    pass


def iter_report_files(reports_root: str | os.PathLike) -> Iterator[tuple[int, int, str]]:
    """Yield (subject_id, study_id, path) for every report, in sorted order.

    Accepts the root (containing `files/`) or the `files/` folder itself. Image folders next to the
    reports (when both trees are unpacked together) are skipped without being listed.
    """
    root = Path(reports_root)
    files = root / "files" if (root / "files").is_dir() else root
    groups = []
    if files.is_dir():
        groups = sorted(e.name for e in os.scandir(files) if e.is_dir() and _GROUP_DIR.fullmatch(e.name))
    if not groups:
        raise ReportsTreeError(
            f"{root}: no reports tree here; expected {root}/files/p1X/p<subject_id>/s<study_id>.txt "
            "(unzip mimic-cxr-reports.zip and point data.reports_root at the folder holding files/)"
        )
    for group in groups:
        for subject in sorted(e.name for e in os.scandir(files / group) if e.is_dir()):
            m = _SUBJECT_DIR.fullmatch(subject)
            if not m:
                continue
            subject_dir = files / group / subject
            for entry in sorted(os.scandir(subject_dir), key=lambda e: e.name):
                r = _REPORT_FILE.fullmatch(entry.name)
                if r and entry.is_file():
                    yield int(m.group(1)), int(r.group(1)), entry.path


def section_report_file(path: str) -> tuple:
    """Read one report and return (status, decode_errors, n_bytes, *sections)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_REPORT_BYTES + 1)
    except OSError:
        return ("unreadable", 0, 0, *_empty_sections())
    status, n_bytes = None, len(data)
    if n_bytes > MAX_REPORT_BYTES:
        data, status = data[:MAX_REPORT_BYTES], "truncated"
    text, decoded, errors = decode_report(data)
    if decoded in ("binary", "empty"):
        return (decoded, errors, n_bytes, *_empty_sections())
    return (status or decoded, errors, n_bytes, *astuple(extract_sections(text)))


def _empty_sections() -> tuple:
    return (*([None] * (len(SECTION_FIELDS) - 1)), 0)


def _section_chunk(paths: list[str]) -> list[tuple]:
    return [section_report_file(p) for p in paths]


def section_reports(reports_root: str | os.PathLike, workers: int = 0, progress: bool = True) -> pd.DataFrame:
    """Section every report under `reports_root` → one row per study (columns `COLUMNS`)."""
    found = list(iter_report_files(reports_root))
    paths = [p for _, _, p in found]
    workers = workers or os.cpu_count() or 1
    chunk = max(1, min(2000, -(-len(paths) // (workers * 4))))
    chunks = [paths[i : i + chunk] for i in range(0, len(paths), chunk)]
    rows: list[tuple] = []
    bar = tqdm(total=len(paths), desc="sections", unit="report", disable=not progress)
    if workers == 1 or len(chunks) <= 1:
        for c in chunks:
            rows.extend(_section_chunk(c))
            bar.update(len(c))
    else:
        with ProcessPoolExecutor(workers) as pool:
            for c, result in zip(chunks, pool.map(_section_chunk, chunks), strict=True):
                rows.extend(result)
                bar.update(len(c))
    bar.close()
    frame = pd.DataFrame(rows, columns=COLUMNS[2:])
    frame.insert(0, "subject_id", pd.array([s for s, _, _ in found], dtype="int64"))
    frame.insert(0, "study_id", pd.array([s for _, s, _ in found], dtype="int64"))
    frame = frame.astype({"decode_errors": "int64", "n_bytes": "int64", "n_sections": "int64"})
    return frame.sort_values("study_id", kind="stable").reset_index(drop=True)


@dataclass(frozen=True)
class SectionsParams:
    workers: int = 0
