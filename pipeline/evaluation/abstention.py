"""The gallery stage's calibrated abstention, scored on the evaluation's test embeddings."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline.embedding import Embedded
from pipeline.errors import PipelineError
from pipeline.evaluation.trained import TrainedMethod, head
from pipeline.metrics.abstention import selective_outcome
from pipeline.metrics.selective import resolve_confidence
from pipeline.retrieval.bundle import Bundle
from pipeline.retrieval.calibrate import calibrate_bundle, query_outcomes
from pipeline.retrieval.search import GalleryScorer

if TYPE_CHECKING:
    from pipeline.evaluation.params import EvaluateParams
    from pipeline.evaluation.runner import Evaluation


def check_bundle_params(bundle: Bundle, trained: TrainedMethod, params: EvaluateParams) -> None:
    """The bundle's calibration queries must be this evaluation's queries: same report text and the same
    confidence, else the test risk would score a rule calibrated on something else."""
    info = bundle.info
    kind = resolve_confidence(params.confidence, trained.probabilistic)
    if info.get("query_text") != params.query_text or info.get("confidence") != kind:
        raise PipelineError(
            f"the retrieval bundle was calibrated with query_text={info.get('query_text')!r}, "
            f"confidence={info.get('confidence')!r}, the evaluation uses {params.query_text!r}, {kind!r}: "
            "rebuild it (dvc repro gallery)"
        )


def evaluate_abstention(
    result: Evaluation,
    trained: TrainedMethod,
    test: Embedded,
    bundle: Bundle,
    params: EvaluateParams | None = None,
) -> None:
    """The gallery stage's abstention rule on the test split: each test query searches the stored
    gallery with its own report (image) added — the protocol its validation calibration used — and the
    realised selective risk (1 − R@K of accepted queries) and coverage are reported per direction."""
    if params is not None:
        check_bundle_params(bundle, trained, params)
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
        calibration = calibrate_bundle(bundle, direction, k, target, delta)
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
