"""The `labels` table: 14 CheXpert labels per study from a shipped label file (or the rule labeler)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pipeline.mimic import schema
from pipeline.mimic.readers import read_label_file

LABEL_SOURCES = ("chexpert", "negbio", "rules")


@dataclass(frozen=True)
class LabelsParams:
    source: str = "chexpert"
    sections: tuple[str, ...] = ("impression", "findings", "last_paragraph")
    aggregation: str = "chexpert"
    workers: int = 0

    def __post_init__(self) -> None:
        if self.source not in LABEL_SOURCES:
            raise ValueError(f"source must be one of {LABEL_SOURCES}, got {self.source!r}")
        unknown = set(self.sections) - {"impression", "findings", "last_paragraph"}
        if unknown or not self.sections:
            raise ValueError(
                f"sections must list impression/findings/last_paragraph, got {self.sections}"
            )
        if self.aggregation not in ("chexpert", "negbio"):
            raise ValueError(f"aggregation must be 'chexpert' or 'negbio', got {self.aggregation!r}")


def shipped_label_path(mimic_root: str | os.PathLike, source: str) -> Path:
    return Path(mimic_root) / schema.LABEL_FILES[source]


def load_shipped_labels(mimic_root: str | os.PathLike, source: str) -> pd.DataFrame:
    """The release's chexpert or negbio file as study_id, subject_id, 14 float labels, sorted by study."""
    frame = read_label_file(shipped_label_path(mimic_root, source))
    return frame.sort_values("study_id", kind="stable").reset_index(drop=True)


def choose_text(sections: pd.DataFrame, order: tuple[str, ...]) -> tuple[pd.Series, pd.Series]:
    """Per study the first non-empty section in `order` (the release labelled impression → findings →
    last paragraph), and which one it was."""
    text = pd.Series(None, index=sections.index, dtype=object)
    source = pd.Series("none", index=sections.index, dtype=object)
    for name in reversed(order):
        has = sections[name].notna()
        text = text.where(~has, sections[name])
        source = source.where(~has, name)
    return text, source
