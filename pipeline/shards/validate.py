"""The post-write check: every shard re-read, counted, hashed and fully decoded.

Catches what a writer bug or a bad disk would otherwise hand silently to a week of training.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from pipeline.imaging import decode_gray
from pipeline.parallel import effective_workers, parallel_map
from pipeline.shards.reader import image_keys, iter_tar_samples
from pipeline.shards.rows import ShardsError
from pipeline.shards.writer import file_sha256

REQUIRED_MEMBERS = ("json", "findings.txt", "impression.txt")


def _check_sample(raw: dict, image_size: int) -> list[str]:
    key = raw["__key__"]
    missing = [m for m in REQUIRED_MEMBERS if m not in raw]
    if missing:
        return [f"{key}: missing {missing}"]
    meta = json.loads(raw["json"])
    problems = []
    if key != f"s{meta['study_id']}":
        problems.append(f"{key}: json study_id {meta['study_id']}")
    keys = image_keys(raw)
    if not keys or len(keys) != len(meta["views"]):
        problems.append(f"{key}: {len(keys)} images for {len(meta['views'])} views")
    if not raw["findings.txt"] and not raw["impression.txt"]:
        problems.append(f"{key}: no findings and no impression")
    for k in keys:
        try:
            image = decode_gray(raw[k])
        except Exception as exc:  # any decoder failure is a validation finding, not a crash
            problems.append(f"{key}.{k}: does not decode ({exc})")
            continue
        if min(image.size) != image_size:
            problems.append(f"{key}.{k}: size {image.size}, shorter side should be {image_size}")
    return problems


def validate_shard(entry: dict, split_dir: str, image_size: int) -> list[str]:
    """Problems found in one shard (empty list = good)."""
    path = Path(split_dir) / entry["name"]
    if not path.is_file():
        return [f"{path}: missing"]
    if file_sha256(path) != entry["sha256"]:
        return [f"{path}: sha256 differs from the index"]
    problems, n_samples, n_images = [], 0, 0
    try:
        for raw in iter_tar_samples(path):
            n_samples += 1
            n_images += len(image_keys(raw))
            problems += [f"{path.name}: {p}" for p in _check_sample(raw, image_size)]
    except Exception as exc:
        return [*problems, f"{path}: unreadable tar ({exc})"]
    if (n_samples, n_images) != (entry["n_samples"], entry["n_images"]):
        problems.append(
            f"{path.name}: {n_samples} samples / {n_images} images, index says "
            f"{entry['n_samples']} / {entry['n_images']}"
        )
    return problems


def validate_split(split_dir: Path, index: dict, workers: int = 0) -> None:
    """Raise ShardsError listing the first problems if any shard of `index` is not as recorded."""
    check = functools.partial(
        validate_shard, split_dir=str(split_dir), image_size=index["params"]["image_size"]
    )
    found = parallel_map(check, index["shards"], effective_workers(workers), f"validate {index['split']}")
    problems = [p for shard in found for p in shard]
    if sum(s["n_samples"] for s in index["shards"]) != index["n_samples"]:
        problems.append(f"{split_dir}: shard sample counts do not add up to {index['n_samples']}")
    if problems:
        shown = "\n  ".join(problems[:20])
        raise ShardsError(f"{split_dir}: shard validation failed ({len(problems)} problems):\n  {shown}")
