"""Label many reports (optionally over a process pool); the CheXpert labeler's CSV-in, CSV-out interface."""

from __future__ import annotations

import io
import multiprocessing
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.io import write_csv
from pipeline.mimic import schema
from pipeline.mimic.labeler.aggregate import TABLES, create_resolution_table
from pipeline.mimic.labeler.batch import label_chunk

SECTIONS = ("impression", "findings", "last_paragraph")
_CHUNK = 2048


def _pool_context() -> multiprocessing.context.BaseContext:
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def label_reports(
    texts: Iterable[str | bytes | None], aggregation: str = "chexpert", workers: int = 1
) -> pd.DataFrame:
    """Labels for each report text: 14 float columns (1.0/0.0/-1.0/NaN) named as `schema.LABEL_COLUMNS`.

    `workers` > 1 labels chunks in a process pool (<= 0: one per CPU); the result does not depend on it.
    `frame.attrs["labeler"]` counts empty reports and reports whose bytes were not valid UTF-8.
    """
    if aggregation not in TABLES:
        create_resolution_table(aggregation)
    index = texts.index if isinstance(texts, pd.Series) else None
    values = list(texts)
    workers = os.cpu_count() or 1 if workers <= 0 else workers
    chunks = [(values[i : i + _CHUNK], aggregation) for i in range(0, len(values), _CHUNK)]
    if workers > 1 and len(chunks) > 1:
        with ProcessPoolExecutor(min(workers, len(chunks)), mp_context=_pool_context()) as pool:
            results = list(pool.map(label_chunk, chunks))
    else:
        results = [label_chunk(chunk) for chunk in chunks]
    width = len(schema.LABEL_COLUMNS)
    array = np.asarray([row for r in results for row in r[0]], dtype=np.float64).reshape(-1, width)
    frame = pd.DataFrame(array, columns=list(schema.LABEL_COLUMNS), index=index)
    frame.attrs["labeler"] = {
        "reports": len(values),
        "empty": int(sum(r[1] for r in results)),
        "non_utf8": int(sum(r[2] for r in results)),
        "aggregation": aggregation,
    }
    return frame


def choose_label_section(
    findings: str | None,
    impression: str | None,
    last_paragraph: str | None,
    order: Sequence[str] = SECTIONS,
) -> tuple[str, str]:
    """(section name, text) of the first non-blank section in `order`; ("none", "") when all are blank."""
    available = {"findings": findings, "impression": impression, "last_paragraph": last_paragraph}
    for name in order:
        if name not in available:
            raise ValueError(f"unknown section {name!r} in order; choose from {sorted(available)}")
        value = available[name]
        if isinstance(value, str) and value.strip():
            return name, value
    return "none", ""


def choose_label_text(
    findings: str | None,
    impression: str | None,
    last_paragraph: str | None,
    order: Sequence[str] = SECTIONS,
) -> str:
    """The text the release labelled: impression, else findings, else the last paragraph (by default)."""
    return choose_label_section(findings, impression, last_paragraph, order)[1]


HEADERLESS_COLUMN = "Reports"  # what CheXpert's labeler names the text column of headerless input


def _read_report_csv(path: Path, text_column: str) -> tuple[pd.DataFrame, str, int]:
    """(rows, name of the text column, number of repaired bytes)."""
    raw = path.read_bytes()
    try:
        data, repaired = raw.decode("utf-8-sig"), 0
    except UnicodeDecodeError:
        data = raw.decode("utf-8-sig", errors="replace")
        repaired = data.count("\ufffd") - raw.decode("utf-8-sig", errors="ignore").count("\ufffd")
    if not data.strip():
        return pd.DataFrame({text_column: pd.Series([], dtype=object)}), text_column, repaired
    frame = pd.read_csv(io.StringIO(data), dtype=str, keep_default_na=False)
    if text_column not in frame.columns:
        if len(frame.columns) != 1:
            raise ValueError(
                f"{path}: no column {text_column!r} among {list(frame.columns)}; "
                "pass text_column, or give one report per row in a single-column file without header"
            )
        frame = pd.read_csv(
            io.StringIO(data), dtype=str, keep_default_na=False, header=None, names=[HEADERLESS_COLUMN]
        )
        return frame, HEADERLESS_COLUMN, repaired
    return frame, text_column, repaired


def label_csv(
    in_csv: str | os.PathLike,
    out_csv: str | os.PathLike,
    text_column: str = "Report Impression",
    aggregation: str = "chexpert",
    workers: int = 1,
) -> dict[str, int | str]:
    """The CheXpert labeler's interface: one report per row in, the same rows plus 14 labels out.

    A file with a `text_column` header keeps all its columns; a single-column file without that header
    is read as one report per row (CheXpert's own input) and, as CheXpert writes it, comes out under a
    `Reports` column. Label columns follow in CheXpert's order; any existing columns of those names are
    replaced. Returns counts for the log.
    """
    in_csv = Path(in_csv)
    if not in_csv.is_file():
        raise FileNotFoundError(f"{in_csv}: report CSV not found")
    frame, text_column, repaired = _read_report_csv(in_csv, text_column)
    labels = label_reports(frame[text_column].tolist(), aggregation=aggregation, workers=workers)
    out = frame.drop(columns=[c for c in schema.CHEXPERT_ORDER if c in frame.columns and c != text_column])
    out = pd.concat(
        [out.reset_index(drop=True), labels[schema.CHEXPERT_ORDER].reset_index(drop=True)], axis=1
    )
    write_csv(out_csv, out)
    stats = dict(labels.attrs["labeler"])
    stats["non_utf8"] = int(stats["non_utf8"]) + int(repaired)
    return stats
