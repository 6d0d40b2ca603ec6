"""One method's full evaluation: embeddings → every metric of methods.md, plot tables and figures.

Each protocol is one small function over the test embeddings; `evaluate` runs them in order and returns
an `Evaluation` (metrics for JSON/MLflow, long tables for DVC plots, figures for the report). No file I/O
beyond reading the shards.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from pipeline.embedding import Embedded
from pipeline.evaluation.params import EvaluateParams
from pipeline.evaluation.trained import TrainedMethod
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
from pipeline.metrics.selective import confidence_score, selective_metrics
from pipeline.metrics.zeroshot import (
    ZERO_SHOT_CLASSES,
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

DIRECTIONS = ("i2t", "t2i")
ROBUSTNESS_FIGURE_K = 10


@dataclass
class Evaluation:
    metrics: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # DVC plot data, one wide table each
    figures: dict[str, Callable[[], Any]] = field(default_factory=dict)  # name → builds a Figure
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per step (kept out of metrics)

    @contextlib.contextmanager
    def timed(self, step: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.seconds[step] = round(time.perf_counter() - start, 2)


def evaluate(trained: TrainedMethod, shards: Path, params: EvaluateParams) -> Evaluation:
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
        evaluate_selective(result, trained, test, i2t, t2i, params)
        evaluate_calibration(result, trained, i2t, t2i, params)
    with result.timed("zero_shot"):
        threshold = trained.embed_split(shards / params.threshold_split, params, texts=False, feat=True)
        evaluate_zero_shot(result, trained, test, threshold, params)
    with result.timed("robustness"):
        evaluate_robustness(result, trained, test, i2t, params)
    with result.timed("probe"):
        probe_train = trained.embed_split(shards / params.probe_split, params, texts=False, feat=True)
        evaluate_probe(result, probe_train, threshold, test, params)
    with result.timed("tsne"):
        evaluate_embedding(result, test, params)
    result.metrics = finite(result.metrics)
    return result


def head(embedded: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in embedded.items() if k != "feat"}


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
    if params.confidence == "auto":
        return "variance" if trained.probabilistic else "top1"
    return params.confidence


def evaluate_selective(
    result: Evaluation,
    trained: TrainedMethod,
    test: Embedded,
    i2t: Ranking,
    t2i: Ranking,
    params: EvaluateParams,
) -> None:
    kind = confidence_kind(trained, params)
    metrics: dict[str, Any] = {"confidence": kind}
    curves: dict[str, dict[str, list[float]]] = {}
    for direction, ranking, queries in (("i2t", i2t, test.image), ("t2i", t2i, test.text)):
        selective = selective_metrics(ranking, confidence_score(kind, ranking, queries), params.ks)
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


def top1_confidence(trained: TrainedMethod, ranking: Ranking) -> torch.Tensor:
    if trained.probabilistic:
        return sigmoid_top1_confidence(ranking, *trained.loss.score_affine())
    return softmax_top1_confidence(ranking)


def evaluate_calibration(
    result: Evaluation, trained: TrainedMethod, i2t: Ranking, t2i: Ranking, params: EvaluateParams
) -> None:
    metrics: dict[str, float] = {}
    diagrams: dict[str, dict[str, list]] = {}
    for direction, ranking in zip(DIRECTIONS, (i2t, t2i), strict=True):
        confidence, correct = top1_confidence(trained, ranking), ranking.positive_rank == 0
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


def evaluate_zero_shot(
    result: Evaluation, trained: TrainedMethod, test: Embedded, threshold: Embedded, params: EvaluateParams
) -> None:
    zs = params.zero_shot
    prompts = trained.embed_texts(argmax_prompts(ZERO_SHOT_CLASSES, zs.template))
    test_labels = class_columns(test.labels.numpy())
    argmax = zero_shot_argmax(trained.similarity(head(test.image), prompts).numpy(), test_labels)
    positive, negative = (
        trained.embed_texts(p) for p in binary_prompts(ZERO_SHOT_CLASSES, zs.positive, zs.negative)
    )
    tau = temperature(trained)

    def probability(images: Embedded) -> np.ndarray:
        query = head(images.image)
        pos, neg = trained.similarity(query, positive), trained.similarity(query, negative)
        return binary_prompt_probability(pos.numpy(), neg.numpy(), tau)

    binary = zero_shot_binary(
        probability(test), test_labels, probability(threshold), class_columns(threshold.labels.numpy())
    )
    result.metrics["zero_shot"] = {"argmax": argmax, "binary": binary}


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


def finite(tree: Any) -> Any:
    """NaN/inf → None, so the JSON is valid for every reader (DVC, browsers, jq)."""
    if isinstance(tree, dict):
        return {k: finite(v) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return [finite(v) for v in tree]
    if isinstance(tree, float | np.floating):
        return float(tree) if math.isfinite(tree) else None
    if isinstance(tree, np.integer):
        return int(tree)
    return tree
