"""The gallery stage's calibrated abstention, scored on the evaluation's test embeddings."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline.embedding import Embedded
from pipeline.evaluation.trained import TrainedMethod
from pipeline.metrics.abstention import selective_outcome
from pipeline.retrieval.bundle import Bundle
from pipeline.retrieval.calibrate import calibrate, query_outcomes
from pipeline.retrieval.search import GalleryScorer

if TYPE_CHECKING:
    from pipeline.evaluation.runner import Evaluation


def head(embedded: dict) -> dict:
    return {k: v for k, v in embedded.items() if k != "feat"}


def evaluate_abstention(result: Evaluation, trained: TrainedMethod, test: Embedded, bundle: Bundle) -> None:
    """The gallery stage's abstention rule on the test split: each test query searches the stored
    gallery with its own report (image) added — the protocol its validation calibration used — and the
    realised selective risk (1 − R@K of accepted queries) and coverage are reported per direction."""
    info = bundle.info
    k, target, delta, kind = (
        info["params"]["k"],
        info["params"]["target_risk"],
        info["params"]["delta"],
        info["confidence"],
    )
    metrics: dict[str, Any] = {
        "k": k,
        "target_risk": target,
        "delta": delta,
        "confidence": kind,
        "gallery_reports": len(bundle.report_ids),
        "gallery_images": len(bundle.image_ids),
        "method": "learn_then_test",
    }
    for direction, query, own, gallery, ids in (
        ("i2t", test.image, test.text, bundle.reports, bundle.report_ids),
        ("t2i", test.text, test.image, bundle.images, bundle.image_ids),
    ):
        scorer = GalleryScorer(trained.loss, gallery)
        confidence, rank = query_outcomes(scorer, kind, head(query), head(own), test.study_id, ids)
        p = info["params"]
        calibration = calibrate(
            bundle.grid[direction],
            *bundle.calibration[direction],
            k,
            target,
            delta,
            p["grid_levels"],
            p["min_coverage"],
        )
        outcome = selective_outcome(confidence, rank < k, calibration.threshold)
        metrics[direction] = {
            "threshold": calibration.threshold,
            "calibration_coverage": calibration.coverage,
            "calibration_risk": calibration.risk,
            "coverage": outcome["coverage"],
            "risk": outcome["risk"],
            "n_accepted": outcome["n_accepted"],
            "n_queries": outcome["n_queries"],
            "risk_without_abstention": float(1.0 - (rank < k).mean()),
        }
    result.metrics["abstention"] = metrics
