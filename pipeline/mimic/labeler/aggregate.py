"""Per-report aggregation of mention labels, as the CheXpert labeler does it (NegBio variant optional).

Each observation collects the set of its mention labels; the set decides the report label. CheXpert
checks {negative, uncertain} first, so {positive, negative, uncertain} is uncertain; NegBio resolves
{negative, uncertain} to negative with the same precedence. No Finding is 1 only when nothing other
than Support Devices is positive or uncertain, else blank; never 0 or -1.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from pipeline.mimic import schema
from pipeline.mimic.labeler.classify import NEGATIVE, POSITIVE, UNCERTAIN, Mention, is_heart_failure
from pipeline.mimic.labeler.vocab import CARDIOMEGALY, NO_FINDING, SUPPORT_DEVICES

AGGREGATIONS = ("chexpert", "negbio")
_BIT = {POSITIVE: 1, NEGATIVE: 2, UNCERTAIN: 4}
_COLUMN = {name: i for i, name in enumerate(schema.LABEL_COLUMNS)}
_NO_FINDING = _COLUMN[NO_FINDING]
_CARDIOMEGALY = _COLUMN[CARDIOMEGALY]


def _resolve(mask: int, conflict: float) -> float:
    pos, neg, unc = mask & 1, mask & 2, mask & 4
    if not mask:
        return math.nan
    if neg and unc:
        return conflict
    if pos:
        return POSITIVE
    return NEGATIVE if neg else UNCERTAIN


def create_resolution_table(aggregation: str = "chexpert") -> tuple[float, ...]:
    """Report label for every set of mention labels, indexed by bit mask (1 pos, 2 neg, 4 unc)."""
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
    conflict = UNCERTAIN if aggregation == "chexpert" else NEGATIVE
    return tuple(_resolve(mask, conflict) for mask in range(8))


TABLES = {name: create_resolution_table(name) for name in AGGREGATIONS}


def aggregate(mentions: Iterable[Mention], aggregation: str = "chexpert") -> list[float]:
    """14 labels in `schema.LABEL_COLUMNS` order from one report's classified mentions."""
    table = TABLES[aggregation] if aggregation in TABLES else create_resolution_table(aggregation)
    masks = [0] * len(schema.LABEL_COLUMNS)
    finding = False
    for mention in mentions:
        bit = _BIT[mention.label]
        if mention.label != NEGATIVE and mention.observation != SUPPORT_DEVICES:
            finding = True
        if is_heart_failure(mention):
            masks[_CARDIOMEGALY] |= _BIT[UNCERTAIN]
        column = _COLUMN.get(mention.observation)
        if column is not None:
            masks[column] |= bit
    labels = [table[m] for m in masks]
    labels[_NO_FINDING] = math.nan if finding else POSITIVE
    return labels
