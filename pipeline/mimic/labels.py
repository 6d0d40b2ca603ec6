"""The `labels` table: 14 CheXpert labels per study from a shipped label file (or the rule labeler)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pipeline.mimic import schema
from pipeline.mimic.readers import ReleaseFileError, read_label_file

LABEL_SOURCES = ("chexpert", "negbio", "rules")


@dataclass(frozen=True)
class LabelsParams:
    source: str = "chexpert"
    sections: tuple[str, ...] = ("impression", "findings", "last_paragraph")
    aggregation: str = "chexpert"
    workers: int = 0
    agreement: bool = True

    def __post_init__(self) -> None:
        if self.source not in LABEL_SOURCES:
            raise ValueError(f"source must be one of {LABEL_SOURCES}, got {self.source!r}")
        unknown = set(self.sections) - {"impression", "findings", "last_paragraph"}
        if unknown or not self.sections:
            raise ValueError(f"sections must list impression/findings/last_paragraph, got {self.sections}")
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


def rule_labels(sections: pd.DataFrame, params: LabelsParams) -> pd.DataFrame:
    """Built-in labeler on each report's chosen section; reports with no usable text get no row, as in
    the release."""
    from pipeline.mimic.labeler import label_reports

    text, used = choose_text(sections, params.sections)
    usable = (used != "none").to_numpy()
    labels = label_reports(text[usable].tolist(), aggregation=params.aggregation, workers=params.workers)
    ids = sections.loc[usable, ["study_id", "subject_id"]].reset_index(drop=True)
    return pd.concat([ids, labels.reset_index(drop=True)], axis=1)


def build_labels(
    sections: pd.DataFrame, mimic_root: str | os.PathLike, params: LabelsParams
) -> tuple[pd.DataFrame, dict]:
    """The labels table for `params.source`, and metrics: counts and, when the release's label files are
    there and `params.agreement` is on, the rule labeler's agreement with each of them."""
    from pipeline.mimic.labeler import agreement

    shipped = {}
    for name in ("chexpert", "negbio"):
        if not shipped_label_path(mimic_root, name).exists():
            continue
        try:
            shipped[name] = load_shipped_labels(mimic_root, name)
        except ReleaseFileError as exc:
            if name == params.source:
                raise
            # Only the agreement metrics would read it: say so and go on without them for this file.
            print(f"warning: {exc} (agreement with {name} skipped)", file=sys.stderr)
    if params.source != "rules" and params.source not in shipped:
        raise ReleaseFileError(
            f"{shipped_label_path(mimic_root, params.source)}: label file not found; "
            "set labels.source to another file or to `rules` (the built-in labeler)"
        )
    rules = (
        rule_labels(sections, params) if params.source == "rules" or (params.agreement and shipped) else None
    )
    labels = rules if params.source == "rules" else shipped[params.source]
    metrics: dict = {"source": params.source, "studies": len(labels)}
    metrics["label_counts"] = {
        name: {
            "positive": int((labels[name] == 1).sum()),
            "negative": int((labels[name] == 0).sum()),
            "uncertain": int((labels[name] == -1).sum()),
            "blank": int(labels[name].isna().sum()),
        }
        for name in schema.LABEL_COLUMNS
    }
    if rules is not None and params.agreement:
        metrics["agreement"] = {f"rules_vs_{name}": agreement(rules, ref) for name, ref in shipped.items()}
    labels = labels.sort_values("study_id", kind="stable").reset_index(drop=True)
    return labels[schema.LABEL_FILE_COLUMNS], metrics
