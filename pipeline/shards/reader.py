"""Reading shards back: the index, the raw tar samples, and decoded study samples.

`StudySample` is the one in-memory shape of a study that every dataset (shards or CSV+JPEG) produces, so
the transforms and collation never know where a study came from.
"""

from __future__ import annotations

import json
import math
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from pipeline.imaging import decode_gray
from pipeline.shards.rows import ShardsError

FORMAT_VERSION = 1
SHARD_PATTERN = "shard-{:06d}.tar"
INDEX_FILE = "index.json"
REBUILD = "rebuild them (dvc repro -f shards) or restore them (dvc checkout)"


@dataclass
class StudySample:
    """A decoded study: images in CSV view order (frontal first), labels in LABEL_COLUMNS order, NaN blank."""

    study_id: int
    subject_id: int
    split: str
    views: list[str]
    images: list[Image.Image]
    findings: str
    impression: str
    labels: list[float]


def load_index(split_dir: str | os.PathLike) -> dict:
    """The index of one split's shards, with a clear error when the shard stage has not run."""
    path = Path(split_dir) / INDEX_FILE
    if not path.is_file():
        raise ShardsError(f"{path}: no shard index; run the `shards` stage (dvc repro shards) first")
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ShardsError(f"{path}: unreadable shard index ({exc}); {REBUILD}") from None
    if not isinstance(index, dict) or index.get("format_version") != FORMAT_VERSION:
        version = index.get("format_version") if isinstance(index, dict) else None
        raise ShardsError(f"{path}: shard format {version} != {FORMAT_VERSION}; rebuild")
    return index


def shard_paths(split_dir: str | os.PathLike) -> list[tuple[Path, int]]:
    """(path, samples) for every shard of a split, in index order (empty shards left out).

    A shard deleted or cut short after the stage wrote it is caught here, before training starts, by its
    size in the index (a stat per shard; the full sha256 check is the shard stage's own validation)."""
    index = load_index(split_dir)
    out = []
    for entry in index["shards"]:
        path = Path(split_dir) / entry["name"]
        if not path.is_file():
            raise ShardsError(f"{path}: missing; the shards were changed after writing: {REBUILD}")
        size = path.stat().st_size
        if "bytes" in entry and size != entry["bytes"]:
            raise ShardsError(
                f"{path}: {size} bytes, the index says {entry['bytes']}; the shard was changed after "
                f"writing: {REBUILD}"
            )
        if entry["n_samples"]:
            out.append((path, entry["n_samples"]))
    return out


def iter_tar_samples(path: str | os.PathLike) -> Iterator[dict]:
    """Raw samples ({'__key__', 'img0.jpg', 'json', ...: bytes}) of one shard, in stored order.

    WebDataset's grouping rule (key = name up to the first dot) with the standard library only, so the
    shard stage and its validation do not pay for importing torch.
    """
    sample: dict = {}
    try:
        with tarfile.open(path, mode="r|") as tar:
            for member in tar:
                if not member.isreg():
                    continue
                key, _, ext = member.name.partition(".")
                if sample and key != sample["__key__"]:
                    yield sample
                    sample = {}
                if not sample:
                    sample = {"__key__": key, "__url__": str(path)}
                if ext in sample:
                    raise ShardsError(f"{path}: duplicate member {member.name}")
                sample[ext] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, FileNotFoundError) as exc:
        raise ShardsError(f"{path}: unreadable shard ({exc}); {REBUILD}") from exc
    if sample:
        yield sample


def image_keys(raw: dict) -> list[str]:
    keys = [k for k in raw if k.startswith("img") and k.endswith(".jpg")]
    return sorted(keys, key=lambda k: int(k[3:-4]))


def decode_study(raw: dict) -> StudySample:
    """A raw tar sample as a StudySample (JPEGs decoded to one-channel PIL images)."""
    meta = json.loads(raw["json"])
    return StudySample(
        study_id=int(meta["study_id"]),
        subject_id=int(meta["subject_id"]),
        split=meta["split"],
        views=list(meta["views"]),
        images=[decode_gray(raw[k]) for k in image_keys(raw)],
        findings=raw["findings.txt"].decode("utf-8"),
        impression=raw["impression.txt"].decode("utf-8"),
        labels=[math.nan if v is None else float(v) for v in meta["labels"]],
    )
