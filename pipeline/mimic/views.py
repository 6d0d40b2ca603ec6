"""View classification and the frontal-first ordering used in the study CSVs."""

from __future__ import annotations

import pandas as pd

from pipeline.mimic import schema

UNKNOWN_VIEW = "UNKNOWN"
VIEW_RANK = {"PA": 0, "AP": 1, "LATERAL": 2, "LL": 3, "XTABLE LATERAL": 4}
OTHER_RANK = 5
UNKNOWN_RANK = 6


def view_name(position: str) -> str:
    """ViewPosition as written in the CSVs; blank becomes `UNKNOWN` so `;`-joined lists stay aligned."""
    position = position.strip().upper()
    return position or UNKNOWN_VIEW


def view_kind(name: str) -> str:
    """`frontal` (PA, AP), `lateral` (LATERAL, LL, XTABLE LATERAL) or `other` (decubitus, oblique, blank…)."""
    if name in schema.FRONTAL_VIEWS:
        return "frontal"
    if name in (*schema.LATERAL_VIEWS, "XTABLE LATERAL"):
        return "lateral"
    return "other"


def view_rank(names: pd.Series) -> pd.Series:
    """Sort key: PA, AP, LATERAL, LL, XTABLE LATERAL, other named views, then blank ones."""
    rank = names.map(VIEW_RANK).fillna(OTHER_RANK)
    return rank.where(names != UNKNOWN_VIEW, UNKNOWN_RANK).astype("int64")


def is_known_view(name: str) -> bool:
    return name == UNKNOWN_VIEW or name in schema.KNOWN_VIEWS
