"""Retrieval you can use: a trained method's gallery, top-k search and calibrated abstention.

Where things live (the `gallery@{method}-{seed}` DVC stage writes them):
``models/<method>/seed<seed>/best/`` is the trained model (train stage) and
``models/<method>/seed<seed>/retrieval/`` its retrieval bundle (`bundle.py`): the gallery embeddings
(train + validate reports and frontal images by default, or a user's CSV of reports), the validation
queries' confidences and ranks (half place the candidate thresholds, half test them) and the
(default) calibrated thresholds.
``Retriever.from_folder("models/<method>/seed<seed>")`` loads both.

Abstention is Learn-then-Test (`pipeline.metrics.abstention`): with probability >= 1 − δ over the
validation (calibration) queries, the share of accepted queries whose own report is not in the top k is
<= the target risk, for queries exchangeable with the validation queries.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.retrieval.params import RetrievalParams
    from pipeline.retrieval.retriever import Hit, QueryImageError, QueryResult, Retriever, read_query_image

_RETRIEVER = ("Hit", "QueryImageError", "QueryResult", "Retriever", "read_query_image")
_HOMES = dict.fromkeys(_RETRIEVER, "pipeline.retrieval.retriever")
_HOMES["RetrievalParams"] = "pipeline.retrieval.params"
__all__ = ["Hit", "QueryImageError", "QueryResult", "RetrievalParams", "Retriever", "read_query_image"]


def __getattr__(name: str) -> Any:
    """Lazy: importing `pipeline.retrieval.params` (the params registry does) must not load torch/PIL."""
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
