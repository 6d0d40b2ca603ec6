"""Label one chunk of reports: the unit of work of the process pool.

Kept free of pandas and numpy so that pool workers start by importing a few regex modules only.
"""

from __future__ import annotations

import math
from typing import Any

from pipeline.mimic import schema
from pipeline.mimic.labeler.aggregate import aggregate
from pipeline.mimic.labeler.classify import classify
from pipeline.mimic.labeler.rules import clean_text

BLANK = (math.nan,) * len(schema.LABEL_COLUMNS)


def as_text(value: Any) -> tuple[str, bool]:
    """Report text and whether bytes had to be repaired; None/NaN is an empty report."""
    if isinstance(value, str):
        return value, False
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode("utf-8"), False
        except UnicodeDecodeError:
            return bytes(value).decode("utf-8", errors="replace"), True
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "", False
    raise TypeError(f"report text must be str or bytes, got {type(value).__name__}")


def label_text(text: str, aggregation: str = "chexpert") -> list[float]:
    """14 labels (`schema.LABEL_COLUMNS` order) for one report; an empty report gets all blanks."""
    cleaned = clean_text(text)
    return aggregate(classify(cleaned, cleaned=True), aggregation) if cleaned else list(BLANK)


def label_chunk(args: tuple[list[Any], str]) -> tuple[list[list[float]], int, int]:
    """(rows of 14 labels, number of empty reports, number of reports with non-UTF-8 bytes)."""
    texts, aggregation = args
    rows, empty, repaired = [], 0, 0
    for value in texts:
        text, was_repaired = as_text(value)
        repaired += was_repaired
        cleaned = clean_text(text)
        empty += not cleaned
        rows.append(aggregate(classify(cleaned, cleaned=True), aggregation) if cleaned else list(BLANK))
    return rows, empty, repaired
