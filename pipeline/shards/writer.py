"""WebDataset shards of pre-resized studies: planning, writing, validation and the index.

Reading 570 GB of full-resolution JPEGs every epoch is what makes naive training I/O-bound; one pass that
writes each study's images at training resolution into sequential tar shards turns an epoch into a few GB
of streaming reads. Shard contents are a pure function of (study CSVs, images, params): fixed sample order,
fixed tar metadata, one-shard-per-task parallelism, so two runs give byte-identical shards.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import tarfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.imaging import ImageReject, encode_jpeg, load_resized, read_image_bytes, resolve_image_path
from pipeline.io import atomic_path, write_json
from pipeline.mimic import schema
from pipeline.parallel import effective_workers, parallel_map
from pipeline.shards.reader import FORMAT_VERSION, INDEX_FILE, SHARD_PATTERN
from pipeline.shards.rows import StudyRow


@dataclass(frozen=True)
class ShardsConfig:
    """The `shards` params section."""

    image_size: int = 128
    samples_per_shard: int = 1000
    jpeg_quality: int = 95
    resample: str = "lanczos"
    min_image_side: int = 32
    max_reject_fraction: float = 0.01
    seed: int = 42
    shuffle_train: bool = True
    workers: int = 0
    splits: tuple[str, ...] = schema.SPLITS

    def __post_init__(self) -> None:
        if self.image_size < 8:
            raise ValueError(f"image_size must be >= 8, got {self.image_size}")
        if self.samples_per_shard < 1:
            raise ValueError(f"samples_per_shard must be >= 1, got {self.samples_per_shard}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in 1..100, got {self.jpeg_quality}")
        if self.resample not in ("lanczos", "bicubic", "bilinear"):
            raise ValueError(f"resample must be lanczos, bicubic or bilinear, got {self.resample!r}")
        if not 0.0 <= self.max_reject_fraction <= 1.0:
            raise ValueError(f"max_reject_fraction must be in [0, 1], got {self.max_reject_fraction}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0 (0 = all cores), got {self.workers}")
        unknown = set(self.splits) - set(schema.SPLITS)
        if unknown:
            raise ValueError(f"splits: unknown {sorted(unknown)}; choose from {list(schema.SPLITS)}")
        if not self.splits:
            raise ValueError(
                f"splits is empty, so nothing would be written; list some of {list(schema.SPLITS)}"
            )
        if len(set(self.splits)) != len(self.splits):
            raise ValueError(f"splits lists a split twice: {list(self.splits)}")

    def content_params(self) -> dict:
        """Params that determine shard bytes (not `workers`), recorded in every index."""
        params = dataclasses.asdict(self)
        params.pop("workers")
        params["splits"] = list(self.splits)
        return params


@dataclass(frozen=True)
class ShardTask:
    split: str
    index: int
    rows: tuple[StudyRow, ...]
    mimic_root: str
    cfg: ShardsConfig

    @property
    def name(self) -> str:
        return SHARD_PATTERN.format(self.index)

    def fingerprint(self) -> str:
        payload = [
            FORMAT_VERSION,
            self.split,
            self.cfg.content_params(),
            [dataclasses.astuple(r) for r in self.rows],
        ]
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


@dataclass
class ShardResult:
    name: str
    n_samples: int = 0
    n_images: int = 0
    n_without_frontal: int = 0
    sha256: str = ""
    n_bytes: int = 0
    rejects: list[dict] = field(default_factory=list)
    image_formats: dict[str, int] = field(default_factory=dict)


def plan_shards(rows: list[StudyRow], split: str, mimic_root: str, cfg: ShardsConfig) -> list[ShardTask]:
    """Fix the sample order (training split: seeded permutation) and cut it into shards."""
    if split == "train" and cfg.shuffle_train:
        order = np.random.default_rng(cfg.seed).permutation(len(rows))
        rows = [rows[i] for i in order]
    n = cfg.samples_per_shard
    return [
        ShardTask(split, i, tuple(rows[start : start + n]), mimic_root, cfg)
        for i, start in enumerate(range(0, len(rows), n))
    ]


def _tar_member(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o444
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info, data


def study_members(row: StudyRow, images: list[tuple[str, bytes]], source_paths: list[str]) -> list:
    """The tar members of one sample, in a fixed order (key `s<study_id>`)."""
    key = f"s{row.study_id}"
    meta = {
        "study_id": row.study_id,
        "subject_id": row.subject_id,
        "split": row.split,
        "study_date": row.study_date,
        "views": [view for view, _ in images],
        "image_paths": source_paths,
        "labels": list(row.labels),
    }
    members = [_tar_member(f"{key}.img{i}.jpg", jpg) for i, (_, jpg) in enumerate(images)]
    members.append(_tar_member(f"{key}.json", json.dumps(meta, sort_keys=True).encode()))
    members.append(_tar_member(f"{key}.findings.txt", row.findings.encode()))
    members.append(_tar_member(f"{key}.impression.txt", row.impression.encode()))
    return members


def _reject(row: StudyRow, image_path: str, reason: str, detail: str) -> dict:
    return {
        "study_id": row.study_id,
        "split": row.split,
        "image_path": image_path,
        "reason": reason,
        "detail": detail,
    }


def write_shard(task: ShardTask, out_dir: str) -> ShardResult:
    """Decode, resize and pack one shard; the tar appears under its final name only when complete."""
    cfg, result = task.cfg, ShardResult(task.name)
    formats: Counter[str] = Counter()
    path = Path(out_dir) / task.name
    with atomic_path(path, suffix=".tar") as tmp, tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
        for row in task.rows:
            images, kept_paths = [], []
            for image_path, view in zip(row.image_paths, row.view_names, strict=True):
                try:
                    data = read_image_bytes(resolve_image_path(task.mimic_root, image_path))
                    image, info = load_resized(data, cfg.image_size, cfg.min_image_side, cfg.resample)
                except ImageReject as exc:
                    result.rejects.append(_reject(row, image_path, exc.reason, exc.detail))
                    continue
                formats[f"{info.format}/{info.source_mode}"] += 1
                images.append((view, encode_jpeg(image, cfg.jpeg_quality)))
                kept_paths.append(image_path)
            if not images:
                result.rejects.append(
                    _reject(row, "", "no_readable_image", f"all {len(row.image_paths)} failed")
                )
                continue
            for info, data in study_members(row, images, kept_paths):
                tar.addfile(info, io.BytesIO(data))
            result.n_samples += 1
            result.n_images += len(images)
            result.n_without_frontal += images[0][0] not in schema.FRONTAL_VIEWS
    result.sha256, result.n_bytes = file_sha256(path), path.stat().st_size
    result.image_formats = dict(sorted(formats.items()))
    return result


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _done_marker(out_dir: Path, task: ShardTask) -> Path:
    return out_dir / f".{task.name}.done.json"


def _resume(out_dir: Path, task: ShardTask) -> ShardResult | None:
    """A shard finished by an interrupted earlier run, if its inputs and bytes still match."""
    marker, tar = _done_marker(out_dir, task), out_dir / task.name
    if not (marker.is_file() and tar.is_file()):
        return None
    try:
        saved = json.loads(marker.read_text())
        if saved.get("fingerprint") != task.fingerprint() or saved["result"]["sha256"] != file_sha256(tar):
            return None
        return ShardResult(**saved["result"])
    except (ValueError, KeyError, TypeError, AttributeError):  # a damaged marker: write the shard again
        return None


def _run_task(task: ShardTask, out_dir: str) -> ShardResult:
    result = write_shard(task, out_dir)
    write_json(_done_marker(Path(out_dir), task), {"fingerprint": task.fingerprint(), "result": vars(result)})
    return result


def _clean_stale(out_dir: Path, keep: set[str]) -> None:
    """Drop temp files of killed runs and shards a previous, larger plan left behind."""
    for path in out_dir.glob(".shard-*.tmp"):
        path.unlink(missing_ok=True)
    for path in out_dir.glob("shard-*.tar"):
        if path.name not in keep:
            path.unlink()


def build_split(
    rows: list[StudyRow],
    row_rejects: list[dict],
    split: str,
    mimic_root: str,
    out_dir: Path,
    cfg: ShardsConfig,
) -> tuple[dict, list[dict]]:
    """Write one split's shards and return (index, rejects); the index is written after validation."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / INDEX_FILE).unlink(missing_ok=True)  # an index is only ever next to the shards it describes
    tasks = plan_shards(rows, split, mimic_root, cfg)
    _clean_stale(out_dir, {t.name for t in tasks})
    todo = [t for t in tasks if _resume(out_dir, t) is None]
    done = {t.index: _resume(out_dir, t) for t in tasks if t not in todo}
    run = functools.partial(_run_task, out_dir=str(out_dir))
    fresh = parallel_map(run, todo, effective_workers(cfg.workers), f"shards {split}")
    done.update({t.index: r for t, r in zip(todo, fresh, strict=True)})
    results = [done[t.index] for t in tasks]
    rejects = row_rejects + [rej for r in results for rej in r.rejects]
    formats: Counter[str] = Counter()
    for r in results:
        formats.update(r.image_formats)
    index = {
        "format_version": FORMAT_VERSION,
        "split": split,
        "params": cfg.content_params(),
        "n_studies_in": len(rows) + len(row_rejects),
        "n_samples": sum(r.n_samples for r in results),
        "n_images": sum(r.n_images for r in results),
        "n_without_frontal": sum(r.n_without_frontal for r in results),
        "n_rejected_studies": sum(rej["image_path"] == "" for rej in rejects),
        "n_rejected_images": sum(rej["image_path"] != "" for rej in rejects),
        "image_formats": dict(sorted(formats.items())),
        "shards": [
            {
                "name": r.name,
                "n_samples": r.n_samples,
                "n_images": r.n_images,
                "sha256": r.sha256,
                "bytes": r.n_bytes,
            }
            for r in results
        ],
    }
    return index, rejects


def finish_split(out_dir: Path, index: dict) -> None:
    """Publish the index (last, so a present index means a complete split) and drop resume markers."""
    write_json(out_dir / INDEX_FILE, index)
    for marker in out_dir.glob(".shard-*.done.json"):
        marker.unlink()
