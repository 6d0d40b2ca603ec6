"""WebDataset shards: study CSVs + images → `{out}/{split}/shard-NNNNNN.tar` + `index.json` per split.

Per sample (key `s<study_id>`): `img{i}.jpg` (one channel, shorter side `image_size`, CSV view order),
`json` (study_id, subject_id, split, study_date, views, image_paths, labels in LABEL_COLUMNS order with
null for blank), `findings.txt`, `impression.txt`. `rejects.csv` and `summary.json` sit next to the splits.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from pipeline.imaging import IMAGE_REJECT_REASONS
from pipeline.io import output_lock, write_csv, write_json
from pipeline.mimic import schema
from pipeline.shards.reader import (
    INDEX_FILE,
    StudySample,
    decode_study,
    image_keys,
    iter_tar_samples,
    load_index,
    shard_paths,
)
from pipeline.shards.rows import (
    STUDY_REJECT_REASONS,
    ShardsError,
    StudyRow,
    check_split_membership,
    read_study_csv,
)
from pipeline.shards.validate import validate_split
from pipeline.shards.writer import ShardsConfig, build_split, finish_split

__all__ = [
    "INDEX_FILE",
    "REJECT_REASONS",
    "ShardsConfig",
    "ShardsError",
    "StudyRow",
    "StudySample",
    "create_shards",
    "decode_study",
    "image_keys",
    "iter_tar_samples",
    "load_index",
    "read_splits",
    "read_study_csv",
    "shard_paths",
]

REJECTS_FILE = "rejects.csv"
SUMMARY_FILE = "summary.json"
REJECT_COLUMNS = ["study_id", "split", "image_path", "reason", "detail"]
REJECT_REASONS = IMAGE_REJECT_REASONS + STUDY_REJECT_REASONS


def _check_rejects(summary: dict, max_fraction: float, rejects_file: Path) -> None:
    for what in ("images", "studies"):
        total, bad = summary[f"n_{what}_in"], summary[f"n_rejected_{what}"]
        if total and bad / total > max_fraction:
            reasons = ", ".join(f"{k}: {v}" for k, v in summary["reasons"].items())
            raise ShardsError(
                f"{bad} of {total} {what} rejected ({bad / total:.2%} > shards.max_reject_fraction "
                f"{max_fraction:.2%}); reasons: {reasons}. See {rejects_file} for each one; fix the inputs "
                "or raise the limit."
            )


def create_shards(
    studies_dir: str | os.PathLike,
    mimic_root: str | os.PathLike,
    out_dir: str | os.PathLike,
    cfg: ShardsConfig,
) -> dict:
    """Write, check and index the shards of every split in `cfg.splits`; returns the run summary.

    Holds the output folder's lock for the whole run: a second run into the same folder is refused (it
    would delete this run's temporaries as stale)."""
    studies_dir, out_dir = Path(studies_dir), Path(out_dir)
    if not Path(mimic_root).is_dir():
        raise ShardsError(f"{mimic_root}: image root not found (set the MIMIC-CXR-JPG root in params.yaml)")
    with output_lock(out_dir):
        return _create_shards(studies_dir, mimic_root, out_dir, cfg)


def read_splits(
    studies_dir: str | Path, splits: Sequence[str]
) -> dict[str, tuple[list[StudyRow], list[dict]]]:
    """Rows and row rejects of `splits`, checked for leaks across all study CSVs present (also the
    splits not being read: a test study copied into train.csv leaks even when only train is built)."""
    studies_dir = Path(studies_dir)
    read = {split: read_study_csv(studies_dir / f"{split}.csv", split) for split in splits}
    others = {
        split: read_study_csv(studies_dir / f"{split}.csv", split)
        for split in schema.SPLITS
        if split not in read and (studies_dir / f"{split}.csv").is_file()
    }
    check_split_membership({s: rows for s, (rows, _) in (read | others).items()}, studies_dir)
    return read


def _create_shards(
    studies_dir: Path, mimic_root: str | os.PathLike, out_dir: Path, cfg: ShardsConfig
) -> dict:
    (out_dir / SUMMARY_FILE).unlink(missing_ok=True)  # present = a finished run, as the split indexes
    indexes, rejects = {}, []
    n_images_in = 0
    for split, (rows, row_rejects) in read_splits(studies_dir, cfg.splits).items():
        n_images_in += sum(len(r.image_paths) for r in rows)
        indexes[split], split_rejects = build_split(
            rows, row_rejects, split, str(mimic_root), out_dir / split, cfg
        )
        rejects += split_rejects
    frame = pd.DataFrame(rejects, columns=REJECT_COLUMNS)
    write_csv(out_dir / REJECTS_FILE, frame)
    summary = {
        "splits": {
            s: {k: v for k, v in ix.items() if k not in ("shards", "params")} for s, ix in indexes.items()
        },
        "n_studies_in": sum(ix["n_studies_in"] for ix in indexes.values()),
        "n_rejected_studies": sum(ix["n_rejected_studies"] for ix in indexes.values()),
        "n_images_in": n_images_in,
        "n_rejected_images": sum(ix["n_rejected_images"] for ix in indexes.values()),
        "reasons": {k: int(v) for k, v in sorted(frame["reason"].value_counts().items())},
    }
    _check_rejects(summary, cfg.max_reject_fraction, out_dir / REJECTS_FILE)
    for split, index in indexes.items():
        validate_split(out_dir / split, index, cfg.workers)
        finish_split(out_dir / split, index)
    write_json(out_dir / SUMMARY_FILE, summary)
    return summary
