"""Training and evaluation loaders over the WebDataset shards (and a CSV+JPEG fallback).

Training batch: `images` [B, 2, 1, H, W] (two views), `input_ids` / `attention_mask` [B, 2, L] (findings,
impression), `labels` [B, 14] (LABEL_COLUMNS order; 1 / 0 / -1 / NaN), `study_id` [B].
Evaluation batch: `image` [B, 1, H, W] (first frontal), `input_ids` / `attention_mask` [B, L], `labels`,
`study_id`. Epoch splitting is exact: the epoch's shard order is cut into R × W contiguous sample ranges
(rank-major), so every sample is seen exactly once per epoch and rank sizes differ by at most one.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from pipeline.imaging import load_resized, read_image_bytes, resolve_image_path
from pipeline.mimic import schema
from pipeline.shards import (
    ShardsError,
    StudySample,
    decode_study,
    iter_tar_samples,
    load_index,
    read_splits,
    read_study_csv,
    shard_paths,
)
from pipeline.shards.rows import StudyRow
from pipeline.textaug import augment_text
from pipeline.transforms import AugmentStrength, create_eval_transform, create_train_transform, seeded

EVAL_TEXT_POLICIES = ("findings_then_impression", "longest")


@dataclass(frozen=True)
class LoaderConfig:
    """Loader settings (a params section owned by the training/evaluation stages)."""

    image_size: int = 224
    batch_size: int = 32
    workers: int = 2
    shuffle_buffer: int = 1000
    seed: int = 42
    max_tokens: int = 256
    eval_text: str = "findings_then_impression"
    view_aug: AugmentStrength = field(default_factory=lambda: AugmentStrength(0.9, 5.0, 0.1, 0.1))
    strong_aug: AugmentStrength = field(
        default_factory=lambda: AugmentStrength(0.5, 20.0, 0.4, 0.4, blur_sigma=1.5)
    )
    hflip: bool = False
    views: int = 2  # training views made per study (1 for single-view methods: half the augmentation work)
    word_dropout: float = 0.1
    mean: float = 0.5
    std: float = 0.5

    def __post_init__(self) -> None:
        if self.eval_text not in EVAL_TEXT_POLICIES:
            raise ValueError(f"eval_text must be one of {EVAL_TEXT_POLICIES}, got {self.eval_text!r}")
        if self.views not in (1, 2):
            raise ValueError(f"views must be 1 or 2, got {self.views}")
        if self.batch_size < 1 or self.image_size < 8 or self.workers < 0 or self.shuffle_buffer < 0:
            raise ValueError("batch_size >= 1, image_size >= 8, workers >= 0, shuffle_buffer >= 0 required")


def check_shard_resolution(split_dir: str | Path, image_size: int) -> None:
    """Refuse a model input larger than the stored images: the loader would silently upsample them (e.g.
    ``model.profile: paper`` at 224 px on 128 px shards), which trains on blur without saying so."""
    stored = int(load_index(split_dir)["params"]["image_size"])
    if image_size > stored:
        raise ShardsError(
            f"{split_dir}: shards store images at {stored} px but the model takes {image_size} px, so every "
            f"image would be upsampled; set shards.image_size >= {image_size} and rerun `dvc repro shards`, "
            "or use a model profile with a smaller image.img_size"
        )


def sample_seed(*parts: object) -> int:
    """A stable 63-bit seed from any parts (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "little") >> 1


def epoch_ranges(counts: list[int], rank: int, world_size: int, worker: int, workers: int) -> list[tuple]:
    """(shard position, first, stop) sample ranges for one (rank, worker) slot of an epoch."""
    total, slots = sum(counts), world_size * workers
    slot = rank * workers + worker
    lo, hi = total * slot // slots, total * (slot + 1) // slots
    ranges, start = [], 0
    for pos, n in enumerate(counts):
        first, stop = max(lo, start) - start, min(hi, start + n) - start
        if first < stop:
            ranges.append((pos, first, stop))
        start += n
    return ranges


def slot_sizes(total: int, rank: int, world_size: int, workers: int) -> list[int]:
    slots = world_size * workers
    return [
        total * (s + 1) // slots - total * s // slots for s in range(rank * workers, (rank + 1) * workers)
    ]


class ShardSliceStream(IterableDataset):
    """Raw tar samples of one (rank, DataLoader worker) slot of an epoch, optionally buffer-shuffled."""

    def __init__(
        self,
        shards: list[tuple[Path, int]],
        epoch: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
        buffer: int = 0,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} not in [0, {world_size})")
        if not shards:
            raise ShardsError("no non-empty shards to read (did every study get rejected?)")
        self.shards, self.epoch, self.seed, self.shuffle = shards, epoch, seed, shuffle
        self.rank, self.world_size, self.buffer = rank, world_size, buffer if shuffle else 0

    def epoch_shards(self) -> list[tuple[Path, int]]:
        if not self.shuffle:
            return list(self.shards)
        order = list(range(len(self.shards)))
        random.Random(sample_seed(self.seed, self.epoch, "shards")).shuffle(order)
        return [self.shards[i] for i in order]

    def _slice(self, worker: int, workers: int) -> Iterator[dict]:
        shards = self.epoch_shards()
        for pos, first, stop in epoch_ranges(
            [n for _, n in shards], self.rank, self.world_size, worker, workers
        ):
            for i, raw in enumerate(iter_tar_samples(shards[pos][0])):
                if i >= stop:
                    break
                if i >= first:
                    yield raw

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        stream = self._slice(worker, workers)
        if not self.buffer:
            yield from stream
            return
        rng = random.Random(sample_seed(self.seed, self.epoch, self.rank, worker, "buffer"))
        yield from wds.filters._shuffle(stream, bufsize=self.buffer, initial=self.buffer, rng=rng)


def section_texts(sample: StudySample, rng: random.Random, word_dropout: float) -> tuple[str, str]:
    """(findings, impression); a missing one is made from the other by text augmentation."""
    findings, impression = sample.findings, sample.impression
    if not findings:
        findings = augment_text(impression, rng, word_dropout)
    if not impression:
        impression = augment_text(findings, rng, word_dropout)
    return findings, impression


class TrainTransform:
    """StudySample → two augmented views, two text sections, labels; randomness keyed on the study."""

    def __init__(self, cfg: LoaderConfig, epoch: int) -> None:
        self.cfg, self.epoch = cfg, epoch
        self.view = create_train_transform(cfg.image_size, cfg.view_aug, cfg.hflip, cfg.mean, cfg.std)
        self.strong = create_train_transform(cfg.image_size, cfg.strong_aug, cfg.hflip, cfg.mean, cfg.std)

    def __call__(self, sample: StudySample) -> dict:
        seed = sample_seed(self.cfg.seed, self.epoch, sample.study_id)
        rng = random.Random(seed)
        with seeded(seed):
            if len(sample.images) >= 2:
                first, second = sorted(rng.sample(range(len(sample.images)), 2))
                views = [self.view(sample.images[first])]
                if self.cfg.views > 1:
                    views.append(self.view(sample.images[second]))
            else:
                views = [self.view(sample.images[0])]
                if self.cfg.views > 1:
                    views.append(self.strong(sample.images[0]))
        return {
            "images": torch.stack(views),
            "texts": section_texts(sample, rng, self.cfg.word_dropout),
            "labels": torch.tensor(sample.labels, dtype=torch.float32),
            "study_id": sample.study_id,
        }


def frontal_index(views: list[str]) -> int | None:
    """The query image: first PA, else first AP, else None."""
    for wanted in schema.FRONTAL_VIEWS:
        if wanted in views:
            return views.index(wanted)
    return None


def eval_text(sample: StudySample, policy: str) -> str:
    if policy == "longest":
        return max(sample.findings, sample.impression, key=len)
    return sample.findings or sample.impression


class EvalTransform:
    """StudySample → one frontal image and one text; None for studies the protocol excludes."""

    def __init__(
        self, cfg: LoaderConfig, corruption: Callable[[torch.Tensor, int], torch.Tensor] | None = None
    ):
        self.cfg, self.corruption = cfg, corruption
        self.resize = create_eval_transform(cfg.image_size)

    def __call__(self, sample: StudySample) -> dict | None:
        index, text = frontal_index(sample.views), eval_text(sample, self.cfg.eval_text)
        if index is None or not text:
            return None
        image = self.resize(sample.images[index])
        if self.corruption is not None:
            image = self.corruption(image, sample.study_id)
        return {
            "image": (image - self.cfg.mean) / self.cfg.std,
            "text": text,
            "labels": torch.tensor(sample.labels, dtype=torch.float32),
            "study_id": sample.study_id,
        }


def is_included(item: dict | None) -> bool:
    return item is not None


def tokenize(tokenizer: Callable, texts: list[str], max_tokens: int) -> dict:
    """Token ids and attention mask, padded to the longest text and truncated at `max_tokens`."""
    return tokenizer(texts, padding="longest", truncation=True, max_length=max_tokens, return_tensors="pt")


class Collate:
    """Stack tensors and tokenise the batch's texts in one call (padding to the batch's longest)."""

    def __init__(self, tokenizer: Callable, max_tokens: int) -> None:
        self.tokenizer, self.max_tokens = tokenizer, max_tokens

    def _tokenize(self, texts: list[str]) -> dict:
        return tokenize(self.tokenizer, texts, self.max_tokens)

    def __call__(self, items: list[dict]) -> dict:
        items = [it for it in items if it is not None]
        batch = {
            "labels": torch.stack([it["labels"] for it in items]),
            "study_id": torch.tensor([it["study_id"] for it in items], dtype=torch.long),
        }
        if "images" in items[0]:
            tokens = self._tokenize([t for it in items for t in it["texts"]])
            batch["images"] = torch.stack([it["images"] for it in items])
            for key in ("input_ids", "attention_mask"):
                batch[key] = tokens[key].long().view(len(items), 2, -1)
        else:
            tokens = self._tokenize([it["text"] for it in items])
            batch["image"] = torch.stack([it["image"] for it in items])
            for key in ("input_ids", "attention_mask"):
                batch[key] = tokens[key].long()
        return batch


def _loader(dataset, workers: int, **kw) -> DataLoader:
    return DataLoader(dataset, num_workers=workers, persistent_workers=False, **kw)


def create_train_loader(
    shard_dir: str | Path,
    tokenizer: Callable,
    cfg: LoaderConfig,
    epoch: int,
    rank: int = 0,
    world_size: int = 1,
) -> DataLoader:
    """One epoch of training batches for this rank; `len()` is its exact batch count."""
    shards = shard_paths(shard_dir)
    total, workers = sum(n for _, n in shards), max(cfg.workers, 1)
    n_batches = sum(math.ceil(n / cfg.batch_size) for n in slot_sizes(total, rank, world_size, workers))
    stream = ShardSliceStream(shards, epoch, cfg.seed, rank, world_size, True, cfg.shuffle_buffer)
    dataset = wds.DataPipeline(
        stream,
        wds.map(decode_study),
        wds.map(TrainTransform(cfg, epoch)),
        wds.batched(cfg.batch_size, collation_fn=Collate(tokenizer, cfg.max_tokens), partial=True),
    ).with_length(n_batches, silent=True)
    return _loader(dataset, cfg.workers, batch_size=None)


def create_eval_loader(
    shard_dir: str | Path,
    tokenizer: Callable,
    cfg: LoaderConfig,
    corruption: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> DataLoader:
    """Deterministic evaluation batches (no shuffle, no augmentation); excluded studies are dropped."""
    stream = ShardSliceStream(shard_paths(shard_dir), 0, cfg.seed, rank, world_size, shuffle=False)
    dataset = wds.DataPipeline(
        stream,
        wds.map(decode_study),
        wds.map(EvalTransform(cfg, corruption)),
        wds.select(is_included),
        wds.batched(cfg.batch_size, collation_fn=Collate(tokenizer, cfg.max_tokens), partial=True),
    )
    return _loader(dataset, cfg.workers, batch_size=None)


class StudyCSVDataset(torch.utils.data.Dataset):
    """Study CSV + raw JPEGs → the same StudySample as the shards (for users who have not sharded)."""

    def __init__(
        self, csv_path: str | Path, mimic_root: str | Path, split: str, image_size: int = 256
    ) -> None:
        csv_path = Path(csv_path)
        if csv_path.name == f"{split}.csv":  # a study CSV folder: refuse studies leaking across its splits
            self.rows: list[StudyRow] = read_splits(csv_path.parent, [split])[split][0]
        else:
            self.rows = read_study_csv(csv_path, split)[0]
        self.mimic_root, self.image_size = str(mimic_root), image_size

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> StudySample:
        row = self.rows[i]
        views, images = [], []
        for path, view in zip(row.image_paths, row.view_names, strict=True):
            data = read_image_bytes(resolve_image_path(self.mimic_root, path))
            images.append(load_resized(data, self.image_size)[0])
            views.append(view)
        if not images:
            raise ShardsError(f"study {row.study_id}: no readable image")
        return StudySample(
            row.study_id,
            row.subject_id,
            row.split,
            views,
            images,
            row.findings,
            row.impression,
            row.label_array(),
        )


class _Mapped(torch.utils.data.Dataset):
    def __init__(self, base: torch.utils.data.Dataset, fn: Callable) -> None:
        self.base, self.fn = base, fn

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        return self.fn(self.base[i])


def create_csv_train_loader(
    csv_path: str | Path,
    mimic_root: str | Path,
    tokenizer: Callable,
    cfg: LoaderConfig,
    epoch: int,
    rank: int = 0,
    world_size: int = 1,
    shard_image_size: int = 256,
) -> DataLoader:
    """The CSV+JPEG equivalent of `create_train_loader` (same batches' shape; seeded per-epoch order)."""
    base = StudyCSVDataset(csv_path, mimic_root, "train", shard_image_size)
    order = list(range(len(base)))
    random.Random(sample_seed(cfg.seed, epoch, "csv")).shuffle(order)
    total = len(order)
    mine = order[total * rank // world_size : total * (rank + 1) // world_size]
    dataset = torch.utils.data.Subset(_Mapped(base, TrainTransform(cfg, epoch)), mine)
    collate = Collate(tokenizer, cfg.max_tokens)
    return _loader(dataset, cfg.workers, batch_size=cfg.batch_size, collate_fn=collate, shuffle=False)
