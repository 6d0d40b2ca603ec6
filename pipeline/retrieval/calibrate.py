"""Per-query confidence and outcome under the gallery protocol, and the thresholds chosen from them.

Both the gallery stage (validation queries → threshold) and the evaluation (test queries → realised
risk and coverage) call `query_outcomes`, so the two see one definition; the statistics are in
`pipeline.metrics.abstention`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from pipeline.metrics.abstention import Calibration, learn_then_test, start_coverage, threshold_grid
from pipeline.metrics.ranking import Ranking
from pipeline.metrics.selective import confidence_score
from pipeline.retrieval.search import GalleryScorer, ranks_against_gallery

if TYPE_CHECKING:
    from pipeline.retrieval.bundle import Bundle

CONFIDENCE_TEXT = {
    "variance": "total predicted variance Σσ² of the query embedding (uncertainty = Σσ²)",
    "top1": "best gallery score (uncertainty = 1 − top-1 score)",
    "margin": "best minus second-best gallery score (uncertainty = 1 − margin)",
}


def query_confidence(kind: str, query: Mapping[str, Tensor], top_scores: Tensor) -> Tensor:
    """Confidence [Q] (float64, higher = surer) from the query embedding and its top gallery scores,
    by `pipeline.metrics.selective.confidence_score` (the evaluation's definition)."""
    n = top_scores.shape[0]
    shim = Ranking(
        torch.zeros(n, dtype=torch.long),
        torch.zeros(n),
        torch.zeros_like(top_scores, dtype=torch.long),
        top_scores,
        top_scores.shape[1],
    )
    cpu_query = {key: value.detach().cpu() for key, value in query.items()}
    return confidence_score(kind, shim, cpu_query).detach().double().cpu()


def uncertainty(kind: str, confidence: Tensor | np.ndarray | float) -> Tensor | np.ndarray | float:
    """What users see, higher = less sure: Σσ² for `variance`, 1 − score for `top1` / `margin`."""
    return -confidence if kind == "variance" else 1.0 - confidence


def gallery_positions(own_ids: Tensor, gallery_ids: Tensor) -> Tensor:
    """Position of each own study id in the gallery, −1 when absent."""
    index = {int(s): i for i, s in enumerate(gallery_ids.tolist())}
    return torch.tensor([index.get(int(s), -1) for s in own_ids.tolist()], dtype=torch.long)


def query_outcomes(
    scorer: GalleryScorer,
    kind: str,
    queries: Mapping[str, Tensor],
    own: Mapping[str, Tensor],
    own_ids: Tensor,
    gallery_ids: Tensor,
) -> tuple[np.ndarray, np.ndarray]:
    """(confidence float64 [Q], rank int64 [Q]): each query searches the gallery with its own item in
    place (`ranks_against_gallery`); a query is correct at K when rank < K."""
    exclude = gallery_positions(own_ids, gallery_ids)
    rank, top = ranks_against_gallery(scorer, queries, own, exclude, k=2)
    return query_confidence(kind, queries, top).numpy(), rank.numpy().astype(np.int64)


def calibrate(
    reference: np.ndarray,
    confidence: np.ndarray,
    rank: np.ndarray,
    k: int,
    target_risk: float,
    delta: float,
    levels: int = 50,
    min_coverage: float = 0.05,
) -> Calibration:
    """Learn-then-Test at (K, target, δ): candidates from the grid half's confidences (``reference``),
    tested on the calibration half's (confidence, rank). One home for the gallery stage, the evaluation
    and `Retriever`, which recompute it for any K or target from the stored halves."""
    first = start_coverage(target_risk, delta, len(confidence), min_coverage)
    grid = threshold_grid(reference, levels, first)
    return learn_then_test(confidence, np.asarray(rank) < k, grid, target_risk, delta)


def calibrate_bundle(bundle: Bundle, direction: str, k: int, target_risk: float, delta: float) -> Calibration:
    """`calibrate` on a bundle's stored halves for one direction, with its grid settings: the gallery
    stage, the evaluation and `Retriever` (any K or target) all call this."""
    p = bundle.info["params"]
    reference, (confidence, rank) = bundle.grid[direction], bundle.calibration[direction]
    return calibrate(reference, confidence, rank, k, target_risk, delta, p["grid_levels"], p["min_coverage"])
