"""Built-in NegBio/CheXpert-style labeler: 14 CheXpert labels from radiology report text.

`label_reports` is what the `labels` stage calls with `labels.source: rules`; `agreement` compares its
output with a shipped label file; `label_csv` is the CheXpert labeler's CSV interface.
"""

from __future__ import annotations

from pipeline.mimic.labeler.aggregate import AGGREGATIONS, aggregate
from pipeline.mimic.labeler.agreement import agreement, agreement_table
from pipeline.mimic.labeler.api import (
    choose_label_section,
    choose_label_text,
    label_csv,
    label_reports,
)
from pipeline.mimic.labeler.batch import label_text
from pipeline.mimic.labeler.classify import Mention, classify
from pipeline.mimic.labeler.rules import clean_text

__all__ = [
    "AGGREGATIONS",
    "Mention",
    "aggregate",
    "agreement",
    "agreement_table",
    "choose_label_section",
    "choose_label_text",
    "classify",
    "clean_text",
    "label_csv",
    "label_reports",
    "label_text",
]
