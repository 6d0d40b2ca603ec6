"""Evaluation metrics: pure functions on tensors (no I/O, no model code)."""

from pipeline.metrics.bootstrap import bootstrap_indices, percentile_interval, two_sided_p_value
from pipeline.metrics.calibration import (
    ece_batch,
    expected_calibration_error,
    reliability_diagram,
    sigmoid_top1_confidence,
    softmax_top1_confidence,
)
from pipeline.metrics.ranking import Ranking, rank_both_ways, rank_queries, take_rows
from pipeline.metrics.retrieval import precision_at_k, recall_at_k, retrieval_metrics
from pipeline.metrics.selective import (
    aurc,
    aurc_batch,
    confidence_score,
    excess_aurc,
    oracle_aurc,
    risk_coverage,
    selective_metrics,
)

__all__ = [
    "Ranking",
    "aurc",
    "aurc_batch",
    "bootstrap_indices",
    "confidence_score",
    "ece_batch",
    "excess_aurc",
    "expected_calibration_error",
    "oracle_aurc",
    "percentile_interval",
    "precision_at_k",
    "rank_both_ways",
    "rank_queries",
    "recall_at_k",
    "reliability_diagram",
    "retrieval_metrics",
    "risk_coverage",
    "selective_metrics",
    "sigmoid_top1_confidence",
    "softmax_top1_confidence",
    "take_rows",
    "two_sided_p_value",
]
