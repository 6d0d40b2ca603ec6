"""`Retriever`: one trained method + its gallery + its calibrated abstention rule, ready for queries.

The one inference object of the project: `medprobclip retrieve`, the MLflow pyfunc model and the web page
all call it. Build it with ``Retriever.from_folder("models/<method>/seed<seed>")`` — the train stage's
folder, holding ``best/`` (the model) and ``retrieval/`` (the gallery stage's bundle, `bundle.py`).
Importable without Prefect or MLflow.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from pipeline.errors import PipelineError
from pipeline.evaluation.trained import TrainedMethod, load_trained
from pipeline.imaging import RESAMPLING, ImageReject, load_resized, shorter_side_size, to_gray8
from pipeline.metrics.abstention import GUARANTEE, Calibration, check_level
from pipeline.retrieval.bundle import (
    BUNDLE_DIR,
    TOKENIZER_DIR,
    Bundle,
    BundleError,
    check_bundle_model,
    read_bundle,
)
from pipeline.retrieval.calibrate import CONFIDENCE_TEXT, calibrate_bundle, query_confidence, uncertainty
from pipeline.retrieval.search import QUERY_BLOCK, GalleryScorer, topk_search
from pipeline.transforms import create_eval_transform

ASSUMPTIONS = (
    "Assumptions: queries are exchangeable with the validation queries the threshold was calibrated on "
    "(same distribution of studies, same gallery, each query's own report/image counted as the match); "
    "the bound holds with probability >= 1 - delta over the calibration draw (marginal, finite-sample) and "
    "is about the expected risk, not the risk of every batch. best/ was selected on the same validation "
    "split, a mild dependence the bound ignores. A new query (an uploaded X-ray) has no own report in the "
    "gallery: the bound describes queries like the validation ones, at the k fixed before looking; "
    "changing k recalibrates."
)


class QueryImageError(PipelineError):
    """A query image that cannot be used (not an image, empty, too small, undecodable)."""


@dataclass(frozen=True)
class Hit:
    study_id: int
    score: float  # the method's retrieval score (cosine, or −distance for Gaussian methods); higher = closer
    uncertainty: float | None  # the gallery item's Σσ² (Gaussian methods), else None
    text: str  # the report text (image → text) or the study's image path(s), `;`-joined (text → image)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class QueryResult:
    query: str  # the image's name / the query text
    abstain: bool  # True: the calibrated rule says do not trust these hits
    uncertainty: float  # higher = less sure (see `Retriever.describe()["confidence"]`)
    hits: list[Hit]

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of `medprobclip retrieve --format json` (one object per query)."""
        return {
            "query": self.query,
            "abstain": self.abstain,
            "uncertainty": self.uncertainty,
            "hits": [hit.to_dict() for hit in self.hits],
        }


def read_query_image(data: bytes, shorter: int, name: str = "image") -> Image.Image:
    """Bytes of a JPEG/PNG/TIFF → one 8-bit channel with its shorter side at ``shorter`` px, exactly as
    the shard stage stores images; anything unusable is one QueryImageError line."""
    try:
        if not data:
            raise ImageReject("empty_file", "no bytes")
        return load_resized(data, shorter, min_side=8)[0]
    except ImageReject as exc:
        raise QueryImageError(f"{name}: not a usable X-ray image ({exc}); give a JPEG or PNG file") from None


class Retriever:
    """Top-k image → report and report → image search with calibrated abstention.

    Attributes: ``method``, ``seed``, ``k_default``, ``target_risk``, ``delta``, ``confidence`` (its kind)
    and ``threshold`` (the image → text uncertainty threshold at ``k_default``: abstain when a query's
    uncertainty is above it; None = abstain on every query, no threshold met the target).
    The threshold for another K or target is recomputed from the stored calibration queries (cached).
    """

    def __init__(
        self,
        trained: TrainedMethod,
        bundle: Bundle,
        device: str | torch.device = "cpu",
        target_risk: float | None = None,
        delta: float | None = None,
    ) -> None:
        self.trained, self.bundle, self.device = trained, bundle, torch.device(device)
        info = bundle.info
        self.method: str = info["method"]
        self.seed: int | None = info.get("seed")
        self.confidence: str = info["confidence"]
        self.k_default: int = int(info["params"]["k"])
        self.target_risk: float = _check_level(
            "target risk", target_risk if target_risk is not None else info["params"]["target_risk"]
        )
        self.delta: float = _check_level("delta", delta if delta is not None else info["params"]["delta"])
        self.shard_size: int = int(info["image"]["shard_size"])
        self.resample: str = info["image"]["resample"]
        cfg = trained.model.config
        self.transform = create_eval_transform(cfg.image.img_size)
        self.mean, self.std = float(trained.info["image_mean"]), float(trained.info["image_std"])
        trained.model.to(self.device)
        trained.loss.to(self.device)
        self.scorers = {
            "i2t": GalleryScorer(trained.loss, {k: v.to(self.device) for k, v in bundle.reports.items()}),
            "t2i": GalleryScorer(trained.loss, {k: v.to(self.device) for k, v in bundle.images.items()}),
        }
        self.item_uncertainty = {
            "i2t": _item_uncertainty(bundle.reports),
            "t2i": _item_uncertainty(bundle.images),
        }
        self._calibrations: dict[tuple[str, int, float, float], Calibration] = {}
        self.calibration(self.k_default)  # fail early on a broken bundle

    @classmethod
    def from_folder(
        cls, folder: str | Path, device: str = "cpu", target_risk: float | None = None
    ) -> Retriever:
        """Load ``<folder>/best`` and ``<folder>/retrieval`` (a train stage's output folder, e.g.
        ``models/medprobclip/seed42``, after the gallery stage)."""
        folder = Path(folder)
        if not folder.is_dir():
            raise BundleError(f"{folder}: no such model folder (expected models/<method>/seed<seed>)")
        bundle = read_bundle(folder / BUNDLE_DIR)
        best = folder / "best"
        if not (best / "method.json").is_file():
            raise BundleError(f"{best}: no trained model (method.json missing); run the train stage first")
        check_bundle_model(bundle, folder / BUNDLE_DIR, best)
        tokenizer = folder / BUNDLE_DIR / TOKENIZER_DIR
        trained = load_trained(best, tokenizer if tokenizer.is_dir() else None)
        return cls(trained, bundle, device, target_risk)

    # -- abstention -------------------------------------------------------------------------------------

    def calibration(self, k: int, direction: str = "i2t") -> Calibration:
        """Learn-then-Test on the stored validation queries for this K and the current target."""
        key = (direction, k, self.target_risk, self.delta)
        if key not in self._calibrations:
            if direction not in self.bundle.calibration:
                raise BundleError(f"the retrieval bundle has no {direction} calibration; rebuild it")
            self._calibrations[key] = calibrate_bundle(
                self.bundle, direction, k, self.target_risk, self.delta
            )
        return self._calibrations[key]

    def uncertainty_threshold(self, k: int, direction: str = "i2t") -> float | None:
        threshold = self.calibration(k, direction).threshold
        return None if threshold is None else float(uncertainty(self.confidence, threshold))

    @property
    def threshold(self) -> float | None:
        return self.uncertainty_threshold(self.k_default)

    def with_target_risk(self, target_risk: float) -> Retriever:
        """The same model and gallery under another target risk (shares the tensors)."""
        target_risk = _check_level("target risk", target_risk)
        other = object.__new__(Retriever)
        other.__dict__ |= self.__dict__ | {"target_risk": float(target_risk), "_calibrations": {}}
        other.calibration(other.k_default)
        return other

    # -- queries ----------------------------------------------------------------------------------------

    def prepare_image(self, image: Image.Image) -> torch.Tensor:
        """A PIL image → the normalised model input [1, H, W], as the evaluation loader makes it."""
        gray = to_gray8(image)
        target = shorter_side_size(gray.size, self.shard_size)
        if gray.size != target:
            gray = gray.resize(target, RESAMPLING[self.resample])
        return (self.transform(gray) - self.mean) / self.std

    def read_image(self, data: bytes, name: str = "image") -> Image.Image:
        """Decode an uploaded/query file like the shard stage does (QueryImageError when unusable)."""
        return read_query_image(data, self.shard_size, name)

    @torch.no_grad()
    def embed_images(self, images: Sequence[Image.Image]) -> dict[str, torch.Tensor]:
        self.trained.model.eval()
        parts = []
        for start in range(0, len(images), QUERY_BLOCK):
            batch = torch.stack([self.prepare_image(im) for im in images[start : start + QUERY_BLOCK]])
            out = self.trained.model.encode_image(batch.to(self.device))
            parts.append({k: v.float() for k, v in out.items() if k != "feat"})
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

    @torch.no_grad()
    def embed_texts(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        return self.trained.embed_texts(texts, QUERY_BLOCK, self.device)

    def search_images(
        self, images: Sequence[Image.Image], k: int = 5, names: Sequence[str] | None = None
    ) -> list[QueryResult]:
        """Image → report: the k closest gallery reports per image, with the abstention decision."""
        names = list(names) if names is not None else [f"image {i + 1}" for i in range(len(images))]
        if len(names) != len(images):
            raise ValueError(f"got {len(images)} images but {len(names)} names")
        if not images:
            return []
        return self._search("i2t", self.embed_images(images), names, k)

    def search_text(self, texts: Sequence[str], k: int = 5) -> list[QueryResult]:
        """Report text → images: the k closest gallery studies (image paths) per text."""
        texts = list(texts)
        if any(not isinstance(t, str) or not t.strip() for t in texts):
            raise PipelineError("a text query is empty; give the report text to search for")
        if not texts:
            return []
        return self._search("t2i", self.embed_texts(texts), texts, k)

    def _search(
        self, direction: str, queries: dict[str, torch.Tensor], names: list[str], k: int
    ) -> list[QueryResult]:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise PipelineError(f"k must be a whole number >= 1, got {k!r}")
        scores, index = topk_search(self.scorers[direction], queries, max(k, 2))
        scores, index = scores.cpu(), index.cpu()
        confidence = query_confidence(self.confidence, queries, scores).numpy()
        threshold = self.calibration(k, direction).threshold
        ids = self.bundle.report_ids if direction == "i2t" else self.bundle.image_ids
        texts = self.bundle.report_texts if direction == "i2t" else self.bundle.image_paths
        item_unc = self.item_uncertainty[direction]
        results = []
        for q, name in enumerate(names):
            hits = [
                Hit(
                    int(ids[j]),
                    float(scores[q, r]),
                    None if item_unc is None else float(item_unc[j]),
                    texts[j],
                )
                for r, j in enumerate(index[q, :k].tolist())
            ]
            abstain = threshold is None or not bool(confidence[q] >= threshold)
            results.append(
                QueryResult(name, abstain, float(uncertainty(self.confidence, confidence[q])), hits)
            )
        return results

    def describe(self) -> dict[str, Any]:
        """What a user should know before trusting an answer (the CLI's and the web page's header)."""
        i2t, t2i = self.calibration(self.k_default, "i2t"), self.calibration(self.k_default, "t2i")
        return {
            "method": self.method,
            "seed": self.seed,
            "score": self.bundle.info.get("score"),
            "gallery": self.bundle.info["gallery"]
            | {"reports": len(self.bundle.report_ids), "images": len(self.bundle.image_ids)},
            "k": self.k_default,
            "target_risk": self.target_risk,
            "delta": self.delta,
            "threshold": self.threshold,
            "thresholds": {
                "i2t": self.uncertainty_threshold(self.k_default, "i2t"),
                "t2i": self.uncertainty_threshold(self.k_default, "t2i"),
            },
            "calibration": {"i2t": _calibration_summary(i2t), "t2i": _calibration_summary(t2i)},
            "confidence": self.confidence,
            "confidence_text": CONFIDENCE_TEXT[self.confidence],
            "guarantee": f"{GUARANTEE} {ASSUMPTIONS}",
            "data": self.bundle.info.get("data", ""),
        }


def _calibration_summary(calibration: Calibration) -> dict[str, Any]:
    return {k: v for k, v in calibration.as_dict().items() if k not in ("target_risk", "delta", "threshold")}


def _item_uncertainty(gallery: dict[str, torch.Tensor]) -> np.ndarray | None:
    if "logvar" not in gallery:
        return None
    return gallery["logvar"].double().exp().sum(-1).cpu().numpy()


def _check_level(name: str, value: Any) -> float:
    """`check_level` (a level in (0, 1)) as a one-line `PipelineError`, before any calibration runs."""
    try:
        return check_level(name, value)
    except ValueError as exc:
        raise PipelineError(str(exc)) from None
