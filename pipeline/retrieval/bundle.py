"""The retrieval bundle on disk: ``<model folder>/retrieval/`` beside the train stage's ``best/``.

    retrieval/
      retrieval.json        method, seed, model digest, confidence kind, params, thresholds, guarantee
      gallery.safetensors   reports.<head key> / images.<head key> embeddings (μ and log σ², or unit
                            vectors), reports.study_id / images.study_id, and per direction the
                            calibration half's confidence and rank plus the grid half's confidences
      reports.csv           study_id, split, text   (row i = reports.* row i; the text users see)
      images.csv            study_id, split, image_paths   (row i = images.* row i)
      tokenizer/            a copy of the tokenizer the model was trained with (tiny profile)

Everything a `Retriever` needs besides ``best/``; written atomically, byte-identical for equal inputs.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from pipeline.errors import PipelineError
from pipeline.io import atomic_dir, files_digest, folder_files, write_csv, write_json

FORMAT_VERSION = 1
DIRECTIONS = ("i2t", "t2i")
BUNDLE_DIR = "retrieval"
TOKENIZER_DIR = "tokenizer"


class BundleError(PipelineError):
    """A retrieval bundle that is missing, damaged or does not belong to its model."""


def model_digest(best: str | Path) -> str:
    """sha256 of a trained model's files (``best/`` and ``best/model/``): ties a bundle to its model."""
    best = Path(best)
    return files_digest(folder_files(best) + folder_files(best / "model"))


def check_bundle_model(bundle: Bundle, bundle_dir: str | Path, best: str | Path) -> None:
    """A bundle is only valid for the exact model files it was built from (`model_digest`)."""
    if bundle.info.get("model_sha256") != model_digest(best):
        raise BundleError(
            f"{bundle_dir}: built for another version of {best}; rebuild it (dvc repro gallery)"
        )


@dataclass
class Bundle:
    info: dict[str, Any]
    reports: dict[str, Tensor]  # head output of the report gallery
    report_ids: Tensor
    report_texts: list[str]
    report_splits: list[str]
    images: dict[str, Tensor]
    image_ids: Tensor
    image_paths: list[str]
    image_splits: list[str]
    calibration: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # confidence, rank
    grid: dict[str, np.ndarray] = field(default_factory=dict)

    def tensors(self) -> dict[str, Tensor]:
        out = {f"reports.{k}": v for k, v in self.reports.items()} | {
            f"images.{k}": v for k, v in self.images.items()
        }
        out |= {"reports.study_id": self.report_ids, "images.study_id": self.image_ids}
        for direction, (confidence, rank) in self.calibration.items():
            out[f"calibration.{direction}.confidence"] = torch.from_numpy(np.asarray(confidence, np.float64))
            out[f"calibration.{direction}.rank"] = torch.from_numpy(np.asarray(rank, np.int64))
        for direction, grid in self.grid.items():
            out[f"grid.{direction}"] = torch.from_numpy(np.asarray(grid, np.float64))
        return {k: v.detach().cpu().contiguous() for k, v in sorted(out.items())}


def write_bundle(bundle: Bundle, out: str | Path, tokenizer: str | Path | None) -> None:
    from safetensors.torch import save_file

    with atomic_dir(out) as tmp:
        save_file(bundle.tensors(), str(tmp / "gallery.safetensors"))
        reports = {
            "study_id": bundle.report_ids.numpy(),
            "split": bundle.report_splits,
            "text": bundle.report_texts,
        }
        write_csv(tmp / "reports.csv", pd.DataFrame(reports))
        images = {
            "study_id": bundle.image_ids.numpy(),
            "split": bundle.image_splits,
            "image_paths": bundle.image_paths,
        }
        write_csv(tmp / "images.csv", pd.DataFrame(images))
        if tokenizer is not None and Path(tokenizer).is_dir():
            (tmp / TOKENIZER_DIR).mkdir()
            for path in folder_files(tokenizer):
                shutil.copyfile(path, tmp / TOKENIZER_DIR / path.name)
        write_json(tmp / "retrieval.json", bundle.info | {"format_version": FORMAT_VERSION})


def _split(tensors: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {
        k.split(".", 1)[1]: v
        for k, v in tensors.items()
        if k.startswith(prefix + ".") and not k.endswith(".study_id")
    }


def read_bundle(folder: str | Path) -> Bundle:
    """Load ``retrieval/``; anything missing or inconsistent is one BundleError saying what to rerun."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    fix = "build it with the gallery stage (dvc repro gallery) or `medprobclip gallery`"
    if not (folder / "retrieval.json").is_file():
        raise BundleError(f"{folder}: no retrieval bundle (retrieval.json missing); {fix}")
    try:
        info = json.loads((folder / "retrieval.json").read_text(encoding="utf-8"))
        tensors = load_file(str(folder / "gallery.safetensors"))
        reports = pd.read_csv(
            folder / "reports.csv", keep_default_na=False, dtype={"text": str, "split": str}
        )
        images = pd.read_csv(
            folder / "images.csv", keep_default_na=False, dtype={"image_paths": str, "split": str}
        )
    except (OSError, ValueError, SafetensorError, pd.errors.ParserError) as exc:
        raise BundleError(f"{folder}: damaged retrieval bundle ({str(exc).splitlines()[0]}); {fix}") from None
    if info.get("format_version") != FORMAT_VERSION:
        raise BundleError(
            f"{folder}: retrieval bundle format {info.get('format_version')}, "
            f"expected {FORMAT_VERSION}; {fix}"
        )
    bundle = Bundle(
        info,
        _split(tensors, "reports"),
        tensors.get("reports.study_id", torch.empty(0, dtype=torch.long)),
        reports["text"].tolist(),
        reports["split"].tolist(),
        _split(tensors, "images"),
        tensors.get("images.study_id", torch.empty(0, dtype=torch.long)),
        images["image_paths"].tolist(),
        images["split"].tolist(),
    )
    for direction in DIRECTIONS:
        key = f"calibration.{direction}"
        if f"{key}.confidence" in tensors:
            bundle.calibration[direction] = (
                tensors[f"{key}.confidence"].numpy(),
                tensors[f"{key}.rank"].numpy(),
            )
        if f"grid.{direction}" in tensors:
            bundle.grid[direction] = tensors[f"grid.{direction}"].numpy()
    sizes = {len(bundle.report_ids), len(bundle.report_texts)} | {len(v) for v in bundle.reports.values()}
    if (
        len(sizes) != 1
        or len({len(bundle.image_ids), len(bundle.image_paths)} | {len(v) for v in bundle.images.values()})
        != 1
    ):
        raise BundleError(f"{folder}: gallery tables and embeddings disagree in length; {fix}")
    return bundle
