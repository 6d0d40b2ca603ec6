"""One method's full evaluation: embeddings → every metric of methods.md, plot tables and figures.

Each protocol is one small function over the test embeddings; `evaluate` runs them in order and returns
an `Evaluation` (metrics for JSON/MLflow, long tables for DVC plots, figures for the report, the per-query
outcome table for the comparison step). Headline metrics get percentile bootstrap CIs over test studies
(`pipeline.metrics.bootstrap`) in sibling ``*_ci`` sections. No file I/O beyond reading the shards.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd
import torch

from pipeline.comparison import PER_QUERY_COLUMNS, per_query_resamples
from pipeline.embedding import Embedded
from pipeline.evaluation.params import EvaluateParams
from pipeline.evaluation.trained import TrainedMethod, head
from pipeline.io import finite
from pipeline.metrics.bootstrap import (
    INTERVAL_METHOD,
    UNIT,
    bootstrap_indices,
    intervals,
    zero_shot_argmax_resampled,
    zero_shot_binary_resampled,
)
from pipeline.metrics.calibration import (
    expected_calibration_error,
    reliability_diagram,
    sigmoid_top1_confidence,
    softmax_top1_confidence,
)
from pipeline.metrics.classification import roc_curve
from pipeline.metrics.embedding import tsne_2d
from pipeline.metrics.probe import predict_proba, probe_metrics, train_probe
from pipeline.metrics.ranking import Ranking, rank_both_ways, rank_queries
from pipeline.metrics.retrieval import precision_at_k, recall_at_k, retrieval_metrics
from pipeline.metrics.selective import confidence_score, resolve_confidence, selective_metrics
from pipeline.metrics.zeroshot import (
    ZERO_SHOT_CLASSES,
    argmax_outcomes,
    argmax_prompts,
    binary_prompt_probability,
    binary_prompts,
    class_columns,
    zero_shot_argmax,
    zero_shot_binary,
)
from pipeline.mimic.schema import LABEL_COLUMNS
from pipeline.shards import load_index
from pipeline.transforms import create_batch_corruption

if TYPE_CHECKING:  # evaluation ↔ retrieval: the bundle is only needed when one is given
    from pipeline.retrieval.bundle import Bundle

DIRECTIONS = ("i2t", "t2i")
ROBUSTNESS_FIGURE_K = 10


@dataclass
class Evaluation:
    metrics: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # DVC plot data, one wide table each
    figures: dict[str, Callable[[], Any]] = field(default_factory=dict)  # name → builds a Figure
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per step (kept out of metrics)
    per_query: pd.DataFrame | None = None  # one row per test study: comparison.PER_QUERY_COLUMNS

    @contextlib.contextmanager
    def timed(self, step: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.seconds[step] = round(time.perf_counter() - start, 2)


def evaluate(
    trained: TrainedMethod, shards: Path, params: EvaluateParams, retrieval: Bundle | None = None
) -> Evaluation:
    """Every protocol on the test split; with the method's retrieval bundle also the calibrated
    abstention's realised risk and coverage (`evaluate_abstention`)."""
    result = Evaluation(metrics={"method": trained.method})
    with result.timed("embed_test"):
        test = trained.embed_split(shards / params.split, params, feat=True, images=True)
    n_split = int(load_index(shards / params.split)["n_samples"])
    result.metrics["evaluation_set"] = {
        "split": params.split,
        "n_studies": len(test),
        "n_excluded": n_split - len(test),
        "query_image": "first frontal (PA, else AP)",
        "query_text": params.query_text,
    }
    with result.timed("retrieval"):
        i2t, t2i = rank(trained, test, params)
        evaluate_retrieval(result, test, i2t, t2i, params)
        confidence = evaluate_selective(result, trained, test, i2t, t2i, params)
        top1 = evaluate_calibration(result, trained, i2t, t2i, params)
        result.per_query = per_query_table(test, i2t, t2i, confidence, top1)
    if retrieval is not None:
        from pipeline.evaluation.abstention import evaluate_abstention

        with result.timed("abstention"):
            evaluate_abstention(result, trained, test, retrieval, params)
    with result.timed("zero_shot"):
        threshold = trained.embed_split(shards / params.threshold_split, params, texts=False, feat=True)
        zero_shot = evaluate_zero_shot(result, trained, test, threshold, params)
    with result.timed("bootstrap"):
        evaluate_bootstrap(result, result.per_query, zero_shot, params)
    with result.timed("robustness"):
        evaluate_robustness(result, trained, test, i2t, params)
    with result.timed("probe"):
        probe_train = trained.embed_split(shards / params.probe_split, params, texts=False, feat=True)
        evaluate_probe(result, probe_train, threshold, test, params)
    with result.timed("tsne"):
        evaluate_embedding(result, test, params)
    result.metrics = finite(result.metrics)
    return result


def temperature(trained: TrainedMethod) -> float:
    """τ = 1 / (the method's logit scale): softmax temperature of deterministic scores, 1/a otherwise."""
    return 1.0 / trained.loss.score_affine()[0]


def rank(trained: TrainedMethod, test: Embedded, params: EvaluateParams) -> tuple[Ranking, Ranking]:
    k = max(params.ks + params.precision_ks)
    tau = None if trained.probabilistic else temperature(trained)
    return rank_both_ways(
        trained.similarity, head(test.image), head(test.text), k=k, chunk=params.chunk, temperature=tau
    )


def evaluate_retrieval(
    result: Evaluation, test: Embedded, i2t: Ranking, t2i: Ranking, params: EvaluateParams
) -> None:
    result.metrics["retrieval"] = retrieval_metrics(i2t, t2i, params.ks, params.rsum_short_ks)
    precision = {}
    for direction, ranking in zip(DIRECTIONS, (i2t, t2i), strict=True):
        values = precision_at_k(ranking.topk_index, test.labels, test.labels, params.precision_ks)
        precision |= {f"{direction}_{k}": v for k, v in values.items()}
    result.metrics["precision"] = precision


def confidence_kind(trained: TrainedMethod, params: EvaluateParams) -> str:
    return resolve_confidence(params.confidence, trained.probabilistic)


def evaluate_selective(
    result: Evaluation,
    trained: TrainedMethod,
    test: Embedded,
    i2t: Ranking,
    t2i: Ranking,
    params: EvaluateParams,
) -> dict[str, torch.Tensor]:
    """AURC / E-AURC per K and direction, the risk–coverage table and figure; returns the per-query
    confidence of each direction (for the per-query table)."""
    kind = confidence_kind(trained, params)
    metrics: dict[str, Any] = {"confidence": kind}
    curves: dict[str, dict[str, list[float]]] = {}
    scores: dict[str, torch.Tensor] = {}
    for direction, ranking, queries in (("i2t", i2t, test.image), ("t2i", t2i, test.text)):
        scores[direction] = confidence_score(kind, ranking, queries)
        selective = selective_metrics(ranking, scores[direction], params.ks)
        curves |= {f"{direction}_{k}": curve for k, curve in selective.pop("curves").items()}
        metrics |= {f"{direction}_{name}": value for name, value in selective.items()}
    result.metrics["selective"] = metrics
    # Same query count for every K and direction, so every curve shares one coverage grid: one wide table.
    first = next(iter(curves.values()))
    columns = {"coverage": first["coverage"]} | {f"risk_{name}": c["risk"] for name, c in curves.items()}
    result.tables["risk_coverage"] = pd.DataFrame(columns)

    def figure():
        from pipeline.figures import risk_coverage_figure

        named = {name.replace("_r", " R@"): curve for name, curve in curves.items()}
        return risk_coverage_figure(named, f"{trained.method}: risk–coverage ({kind} confidence)")

    result.figures["risk_coverage"] = figure
    return scores


def top1_confidence(trained: TrainedMethod, ranking: Ranking) -> torch.Tensor:
    if trained.probabilistic:
        return sigmoid_top1_confidence(ranking, *trained.loss.score_affine())
    return softmax_top1_confidence(ranking)


def evaluate_calibration(
    result: Evaluation, trained: TrainedMethod, i2t: Ranking, t2i: Ranking, params: EvaluateParams
) -> dict[str, torch.Tensor]:
    """ECE and reliability per direction; returns the per-query top-1 confidence of each direction."""
    metrics: dict[str, float] = {}
    diagrams: dict[str, dict[str, list]] = {}
    confidences: dict[str, torch.Tensor] = {}
    for direction, ranking in zip(DIRECTIONS, (i2t, t2i), strict=True):
        confidence, correct = top1_confidence(trained, ranking), ranking.positive_rank == 0
        confidences[direction] = confidence
        metrics[f"{direction}_ece"] = expected_calibration_error(confidence, correct, params.calibration_bins)
        metrics[f"{direction}_mean_confidence"] = float(confidence.mean())
        metrics[f"{direction}_top1_accuracy"] = float(correct.float().mean())
        diagrams[direction] = reliability_diagram(confidence, correct, params.calibration_bins)
    result.metrics["calibration"] = metrics
    i2t_bins = diagrams["i2t"]
    table = {"bin_lower": i2t_bins["bin_lower"], "bin_upper": i2t_bins["bin_upper"]}
    for direction, diagram in diagrams.items():
        table |= {f"{direction}_{key}": diagram[key] for key in ("count", "accuracy", "confidence")}
    result.tables["reliability"] = pd.DataFrame(table)

    def figure():
        from pipeline.figures import reliability_figure

        return reliability_figure(diagrams["i2t"], f"{trained.method}: reliability of top-1 image→text")

    result.figures["reliability"] = figure
    return confidences


def per_query_table(
    test: Embedded,
    i2t: Ranking,
    t2i: Ranking,
    confidence: dict[str, torch.Tensor],
    top1: dict[str, torch.Tensor],
) -> pd.DataFrame:
    """One row per test study (loader order): the outcomes every retrieval, selective and calibration
    metric is a function of. Study i is image query i and text query i (the one-query-per-study
    protocol), so both directions share the row."""
    columns = {"study_id": test.study_id.numpy().astype(np.int64)}
    for direction, ranking in zip(DIRECTIONS, (i2t, t2i), strict=True):
        columns[f"{direction}_rank"] = ranking.positive_rank.cpu().numpy().astype(np.int64)
    for direction in DIRECTIONS:
        columns[f"{direction}_confidence"] = confidence[direction].detach().cpu().double().numpy()
    for direction in DIRECTIONS:
        columns[f"{direction}_top1_confidence"] = top1[direction].detach().cpu().double().numpy()
    return pd.DataFrame(columns)[list(PER_QUERY_COLUMNS)]


class ZeroShotOutcomes(NamedTuple):
    """Per-study zero-shot outcomes on the test split, for the bootstrap."""

    hits: np.ndarray  # [N, C] protocol (a): positive for the class and predicted as it
    positive: np.ndarray  # [N, C] label == 1
    probability: np.ndarray  # [N, C] protocol (b): P(present)
    thresholds: list[float]  # [C] protocol (b): Youden thresholds chosen on the threshold split


def evaluate_zero_shot(
    result: Evaluation, trained: TrainedMethod, test: Embedded, threshold: Embedded, params: EvaluateParams
) -> ZeroShotOutcomes:
    zs = params.zero_shot
    prompts = trained.embed_texts(argmax_prompts(ZERO_SHOT_CLASSES, zs.template))
    test_labels = class_columns(test.labels.numpy())
    similarity = trained.similarity(head(test.image), prompts).numpy()
    argmax = zero_shot_argmax(similarity, test_labels)
    positive, negative = (
        trained.embed_texts(p) for p in binary_prompts(ZERO_SHOT_CLASSES, zs.positive, zs.negative)
    )
    tau = temperature(trained)

    def probability(images: Embedded) -> np.ndarray:
        query = head(images.image)
        pos, neg = trained.similarity(query, positive), trained.similarity(query, negative)
        return binary_prompt_probability(pos.numpy(), neg.numpy(), tau)

    test_probability = probability(test)
    binary = zero_shot_binary(
        test_probability, test_labels, probability(threshold), class_columns(threshold.labels.numpy())
    )
    result.metrics["zero_shot"] = {"argmax": argmax, "binary": binary}
    hits, positive = argmax_outcomes(similarity, test_labels, len(ZERO_SHOT_CLASSES))
    thresholds = [binary["per_label"][name]["threshold"] for name in ZERO_SHOT_CLASSES]
    return ZeroShotOutcomes(hits, positive, test_probability, thresholds)


def evaluate_bootstrap(
    result: Evaluation, per_query: pd.DataFrame, zero_shot: ZeroShotOutcomes, params: EvaluateParams
) -> None:
    """Percentile CIs of every headline number over one shared set of study resamples (queries only; the
    gallery stays the full test set): ``retrieval_ci``, ``selective_ci``, ``calibration_ci`` and
    ``zero_shot_ci`` mirror the keys of their point-estimate sections. Zero-shot entries also carry
    ``n_undefined``, the resamples skipped because a class had no positive (or no negative) study."""
    b = params.bootstrap
    indices = bootstrap_indices(len(per_query), b.n_resamples, b.seed)
    values = per_query_resamples(per_query, indices, params.ks, params.rsum_short_ks, params.calibration_bins)
    retrieval = {f"{d}_r{k}" for d in DIRECTIONS for k in params.ks} | {"rsum", "rsum6"}
    calibration = {f"{d}_ece" for d in DIRECTIONS}
    sections = {
        "retrieval_ci": {k: v for k, v in values.items() if k in retrieval},
        "selective_ci": {k: v for k, v in values.items() if k not in retrieval | calibration},
        "calibration_ci": {k: v for k, v in values.items() if k in calibration},
    }
    result.metrics |= {name: intervals(tree, b.level) for name, tree in sections.items()}
    argmax = zero_shot_argmax_resampled(zero_shot.hits, zero_shot.positive, indices, ZERO_SHOT_CLASSES)
    binary = zero_shot_binary_resampled(
        zero_shot.probability, zero_shot.positive, zero_shot.thresholds, indices, ZERO_SHOT_CLASSES
    )
    argmax["per_class"] = {name: {"accuracy": v} for name, v in argmax["per_class"].items()}
    result.metrics["zero_shot_ci"] = intervals({"argmax": argmax, "binary": binary}, b.level, True)
    result.metrics["bootstrap"] = {
        "n_resamples": b.n_resamples,
        "seed": b.seed,
        "level": b.level,
        "method": INTERVAL_METHOD,
        "unit": UNIT,
        "gallery": "full test set (only queries are resampled)",
    }


def evaluate_robustness(
    result: Evaluation, trained: TrainedMethod, test: Embedded, i2t: Ranking, params: EvaluateParams
) -> None:
    """Corrupted query images against the clean report gallery: R@K (i2t) relative to clean. Corrupts the
    kept clean inputs in batches: the split is decoded once, not once per corruption and severity."""
    clean = recall_at_k(i2t.positive_rank, params.ks)
    texts, rows = head(test.text), []
    for name in params.robustness.corruptions:
        for severity in params.robustness.severities:
            images = trained.embed_corrupted(test, create_batch_corruption(name, severity), params)
            ranking = rank_queries(trained.similarity, images, texts, k=max(params.ks), chunk=params.chunk)
            for k, value in recall_at_k(ranking.positive_rank, params.ks).items():
                ratio = value / clean[k] if clean[k] > 0 else math.nan
                rows.append(
                    {"corruption": name, "severity": severity, "k": k, "recall": value, "ratio": ratio}
                )
    table = pd.DataFrame(rows, columns=["corruption", "severity", "k", "recall", "ratio"])
    wide = table.pivot_table(index="severity", columns=["corruption", "k"], values="ratio", sort=False)
    wide.columns = [f"{name}_r{k}" for name, k in wide.columns]
    result.tables["robustness"] = wide.reset_index()
    if table.empty:
        result.metrics["robustness"] = {}
        return
    summary = {f"mean_ratio_r{k}": float(g["ratio"].mean()) for k, g in table.groupby("k")}
    for (name, k), g in table.groupby(["corruption", "k"]):
        summary[f"{name}_ratio_r{k}"] = float(g["ratio"].mean())
    result.metrics["robustness"] = summary

    def figure():
        from pipeline.figures import robustness_figure

        chosen = ROBUSTNESS_FIGURE_K if ROBUSTNESS_FIGURE_K in params.ks else params.ks[0]
        rows_k = table[table["k"] == chosen].to_dict("records")
        return robustness_figure(rows_k, f"{trained.method}: image→text R@{chosen} relative to clean")

    result.figures["robustness"] = figure


def evaluate_probe(
    result: Evaluation, train: Embedded, val: Embedded, test: Embedded, params: EvaluateParams
) -> None:
    p = params.probe
    feats = [e.image["feat"].numpy() for e in (train, val, test)]
    labels = [e.labels.numpy() for e in (train, val, test)]
    probe = train_probe(feats[0], labels[0], p.hidden, p.epochs, p.lr, p.weight_decay, seed=params.seed)
    result.metrics["probe"] = probe_metrics(probe, feats[1], labels[1], feats[2], labels[2], LABEL_COLUMNS)
    probabilities = predict_proba(probe, feats[2])

    def figure():
        from pipeline.figures import roc_figure

        curves = {}
        for c, name in enumerate(LABEL_COLUMNS):
            auc = result.metrics["probe"]["per_label"][name]["auroc"]
            if auc is not None and not (isinstance(auc, float) and math.isnan(auc)):
                fpr, tpr, _ = roc_curve(probabilities[:, c], labels[2][:, c])
                curves[name] = (fpr, tpr, auc)
        return roc_figure(curves, "linear probe on frozen image features: per-label ROC (test)")

    result.figures["probe_roc"] = figure


def evaluate_embedding(result: Evaluation, test: Embedded, params: EvaluateParams) -> None:
    n = min(len(test), params.tsne_max_points)
    if n < 3:
        return
    vectors = head(test.image)
    points = tsne_2d((vectors.get("mu", vectors.get("emb")))[:n].numpy(), params.seed, params.tsne_perplexity)
    labels = test.labels[:n].numpy()

    def figure():
        from pipeline.figures import tsne_figure

        return tsne_figure(points, labels, list(LABEL_COLUMNS), "t-SNE of test image embeddings")

    result.figures["tsne"] = figure
