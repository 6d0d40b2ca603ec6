"""Build a trained method's retrieval bundle: embed the gallery, calibrate abstention, write `retrieval/`.

Steps (all deterministic, CPU by default):
1. embed the gallery splits' studies from the shards with the evaluation loader (first frontal image,
   text by ``evaluate.query_text``), so the gallery is scored exactly as the evaluation scores; the text
   shown to users is that same text, taken from the study CSVs (with the image paths);
2. optionally replace the report gallery by a user's CSV of reports (`read_reports_csv`);
3. per direction, rank the calibration split's queries against the gallery (`calibrate.query_outcomes`);
   every second study (by id) places the candidate thresholds (quantiles of its confidences), the other
   half is the Learn-then-Test calibration set (`pipeline.metrics.abstention`); both halves are stored,
   so any K or target can be recalibrated later.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pipeline.data import EVAL_TEXT_POLICIES, eval_text
from pipeline.embedding import Embedded
from pipeline.errors import PipelineError
from pipeline.evaluation.params import QUERY_TEXTS, EvaluateParams
from pipeline.evaluation.trained import TrainedMethod, head
from pipeline.metrics.abstention import GUARANTEE, split_halves
from pipeline.metrics.selective import resolve_confidence
from pipeline.retrieval.bundle import DIRECTIONS, Bundle, model_digest
from pipeline.retrieval.calibrate import calibrate_bundle, query_outcomes
from pipeline.retrieval.params import RetrievalParams
from pipeline.retrieval.search import GalleryScorer
from pipeline.shards import load_index, read_study_csv

MAX_REPORT_CHARS = 20_000


class GalleryError(PipelineError):
    """The gallery cannot be built from the given inputs."""


@dataclass(frozen=True)
class Split:
    """One split's embedded studies with their display text and image paths (loader order)."""

    name: str
    embedded: Embedded
    texts: list[str]
    image_paths: list[str]


def embed_split(
    trained: TrainedMethod, shards: Path, studies: Path, split: str, query_text: str, batch_size: int
) -> Split:
    shard_dir = shards / split
    if not (shard_dir / "index.json").is_file():
        raise GalleryError(f"{shard_dir}: no shards index (run the `shards` stage for split '{split}')")
    csv_path = studies / f"{split}.csv"
    if not csv_path.is_file():
        raise GalleryError(f"{csv_path}: study CSV missing (run the `studies` stage)")
    trained.check_shards(shard_dir)
    params = EvaluateParams(query_text=query_text, batch_size=batch_size, workers=0)
    try:
        embedded = trained.embed_split(shard_dir, params)
    except ValueError as exc:  # no study has a frontal image and a text
        raise GalleryError(f"{shard_dir}: {exc}; the gallery needs studies in split '{split}'") from None
    rows = {row.study_id: row for row in read_study_csv(csv_path, split)[0]}
    policy = QUERY_TEXTS[query_text]
    texts, paths = [], []
    for study_id in embedded.study_id.tolist():
        row = rows.get(int(study_id))
        if row is None:
            raise GalleryError(
                f"study {study_id} is in {shard_dir} but not in {csv_path}; rebuild the shards"
            )
        texts.append(eval_text(row, policy))
        paths.append(";".join(row.image_paths))
    return Split(split, embedded, texts, paths)


def read_reports_csv(path: str | Path) -> tuple[list[int], list[str]]:
    """A user's report gallery: a CSV with ``study_id`` and either ``text`` or ``findings``/``impression``
    (findings first, as the evaluation's query text). Rows without text are an error naming the line."""
    path = Path(path)
    if not path.is_file():
        raise GalleryError(f"{path}: reports CSV not found")
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            columns = set(reader.fieldnames or ())
            if "study_id" not in columns or not ({"text"} <= columns or columns & {"findings", "impression"}):
                raise GalleryError(
                    f"{path}: needs a study_id column and a text (or findings/impression) column, "
                    f"has {sorted(columns)}"
                )
            ids, texts, seen = [], [], set()
            for line, rec in enumerate(reader, start=2):
                text = (
                    (rec.get("text") or "").strip()
                    or (rec.get("findings") or "").strip()
                    or (rec.get("impression") or "").strip()
                )
                raw = (rec.get("study_id") or "").strip()
                if not raw.isdigit():
                    raise GalleryError(f"{path}:{line}: study_id {raw!r} is not a whole number")
                if not text or len(text) > MAX_REPORT_CHARS:
                    raise GalleryError(
                        f"{path}:{line}: report text empty or over {MAX_REPORT_CHARS} characters"
                    )
                if int(raw) in seen:
                    raise GalleryError(f"{path}:{line}: study_id {raw} appears twice")
                seen.add(int(raw))
                ids.append(int(raw))
                texts.append(text)
    except UnicodeDecodeError:
        raise GalleryError(f"{path}: not UTF-8 text; save the CSV as UTF-8") from None
    except csv.Error as exc:
        raise GalleryError(f"{path}: not a readable CSV ({exc})") from None
    if not ids:
        raise GalleryError(f"{path}: no reports in it")
    return ids, texts


def _cat(parts: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.cat([p[k] for p in parts]).float().contiguous() for k in parts[0]}


def split_outcomes(
    scorer: GalleryScorer, kind: str, direction: str, split: Split, gallery_ids: torch.Tensor
) -> tuple[Any, Any]:
    """(confidence, rank) of a split's queries in one direction against the gallery."""
    e = split.embedded
    query, own = (e.image, e.text) if direction == "i2t" else (e.text, e.image)
    return query_outcomes(scorer, kind, head(query), head(own), e.study_id, gallery_ids)


def build_bundle(
    trained: TrainedMethod,
    best: Path,
    shards: Path,
    studies: Path,
    params: RetrievalParams,
    query_text: str = "findings",
    confidence: str = "auto",
    seed: int | None = None,
) -> Bundle:
    """Embed, calibrate and describe (no file I/O beyond reading the inputs)."""
    if QUERY_TEXTS.get(query_text) not in EVAL_TEXT_POLICIES:
        raise GalleryError(f"query_text must be one of {tuple(QUERY_TEXTS)}, got {query_text!r}")
    kind = resolve_confidence(confidence, trained.probabilistic)
    needed = list(dict.fromkeys([*params.gallery_splits, params.calibration_split]))
    splits = {
        name: embed_split(trained, shards, studies, name, query_text, params.batch_size) for name in needed
    }
    gallery = [splits[name] for name in params.gallery_splits]
    images = _cat([head(s.embedded.image) for s in gallery])
    image_ids = torch.cat([s.embedded.study_id for s in gallery])
    image_paths = [p for s in gallery for p in s.image_paths]
    image_splits = [s.name for s in gallery for _ in s.image_paths]
    if params.reports:
        report_ids_list, report_texts = read_reports_csv(params.reports)
        reports = _cat([trained.embed_texts(report_texts, params.batch_size)])
        report_ids = torch.tensor(report_ids_list, dtype=torch.long)
        report_splits = ["reports_csv"] * len(report_texts)
        source = f"reports CSV {Path(params.reports).name}"
    else:
        reports = _cat([head(s.embedded.text) for s in gallery])
        report_ids = torch.cat([s.embedded.study_id for s in gallery])
        report_texts = [t for s in gallery for t in s.texts]
        report_splits = list(image_splits)
        source = f"study CSVs, splits {'+'.join(params.gallery_splits)}"
    calibration_split = splits[params.calibration_split]
    if len(calibration_split.embedded) < 2:
        raise GalleryError(
            f"split '{params.calibration_split}' has {len(calibration_split.embedded)} usable studies; "
            "calibrating abstention needs at least 2 (one to place thresholds, one to test them)"
        )
    grid_half = split_halves(calibration_split.embedded.study_id.numpy())
    calibration, grid = {}, {}
    for direction in DIRECTIONS:
        target, target_ids = (reports, report_ids) if direction == "i2t" else (images, image_ids)
        scorer = GalleryScorer(trained.loss, target)
        confidence_, rank = split_outcomes(scorer, kind, direction, calibration_split, target_ids)
        grid[direction] = confidence_[grid_half]
        calibration[direction] = (confidence_[~grid_half], rank[~grid_half])
    index = load_index(shards / params.calibration_split)["params"]
    loss = trained.loss
    score = "cosine" if not trained.probabilistic else f"−{type(loss).distance_fn.__name__.replace('_', ' ')}"
    info = {
        "method": trained.method,
        "seed": seed,
        "model_sha256": model_digest(best),
        "probabilistic": trained.probabilistic,
        "score": score,
        "confidence": kind,
        "query_text": query_text,
        "params": {
            "k": params.k,
            "target_risk": params.target_risk,
            "delta": params.delta,
            "gallery_splits": list(params.gallery_splits),
            "calibration_split": params.calibration_split,
            "grid": "every second calibration-split study (by study id) places the candidate thresholds",
            "grid_levels": params.grid_levels,
            "min_coverage": params.min_coverage,
        },
        "image": {"shard_size": int(index["image_size"]), "resample": index.get("resample", "lanczos")},
        "gallery": {"source": source, "n_reports": len(report_ids), "n_images": len(image_ids)},
        "calibration": {},
        "guarantee": GUARANTEE,
    }
    bundle = Bundle(
        info,
        reports,
        report_ids,
        report_texts,
        report_splits,
        images,
        image_ids,
        image_paths,
        image_splits,
        calibration,
        grid,
    )
    info["calibration"] = {
        d: calibrate_bundle(bundle, d, params.k, params.target_risk, params.delta).as_dict()
        for d in DIRECTIONS
    }
    return bundle


def make_gallery(
    model: str | Path,
    shards: str | Path,
    studies: str | Path,
    params: RetrievalParams,
    tokenizer: str | Path | None = None,
    out: str | Path | None = None,
    method: str | None = None,
    query_text: str = "findings",
    confidence: str = "auto",
) -> Bundle:
    """Load ``<model>/best``, build its bundle and write it to ``out`` (default ``<model>/retrieval``)."""
    from pipeline.evaluation.trained import load_trained
    from pipeline.retrieval.bundle import BUNDLE_DIR, write_bundle

    model = Path(model)
    trained = load_trained(model / "best", tokenizer)
    if method is not None and trained.method != method:
        raise GalleryError(f"{model / 'best'} holds a '{trained.method}' model, not '{method}'; retrain it")
    bundle = build_bundle(
        trained,
        model / "best",
        Path(shards),
        Path(studies),
        params,
        query_text,
        confidence,
        trained.info.get("seed"),
    )
    text_cfg = trained.model.config.text
    source = Path(tokenizer) if tokenizer is not None else Path(text_cfg.tokenizer)
    write_bundle(
        bundle, Path(out) if out else model / BUNDLE_DIR, source if text_cfg.name_or_path is None else None
    )
    return bundle


def gallery_from_params(
    params_file: str | Path,
    model: str | Path,
    shards: str | Path,
    studies: str | Path,
    tokenizer: str | Path | None = None,
    out: str | Path | None = None,
    method: str | None = None,
    reports: str | Path | None = None,
) -> tuple[Bundle, RetrievalParams]:
    """`make_gallery` with the `retrieval` and `evaluate` sections of `params_file` (which must exist: the
    bundle must match the evaluation's query text and confidence), `reports` overriding `retrieval.reports`:
    one home for the stage and the CLI."""
    from pipeline.config import build, read_params

    raw = read_params(params_file)
    section = (raw.get("retrieval") or {}) | ({"reports": str(reports)} if reports else {})
    params = build(RetrievalParams, section, f"{params_file}:retrieval")
    evaluate = build(EvaluateParams, raw.get("evaluate"), f"{params_file}:evaluate")
    bundle = make_gallery(
        model, shards, studies, params, tokenizer, out, method, evaluate.query_text, evaluate.confidence
    )
    return bundle, params
