from __future__ import annotations

import dataclasses
import math
import random

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from test_shards import make_study_fixture
from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from pipeline.config import build
from pipeline.data import (
    LoaderConfig,
    StudyCSVDataset,
    TrainTransform,
    create_csv_train_loader,
    create_eval_loader,
    create_train_loader,
    epoch_ranges,
    frontal_index,
)
from pipeline.errors import PipelineError
from pipeline.mimic import schema
from pipeline.shards import ShardsConfig, create_shards, decode_study, iter_tar_samples, load_index
from pipeline.textaug import augment_text, is_negation
from pipeline.transforms import AugmentStrength, create_corruption, create_train_transform, seeded

N_TRAIN, N_TEST = 11, 7
NO_AUG = AugmentStrength(crop_scale_min=1.0, rotation_deg=0.0, brightness=0.0, contrast=0.0)


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    corpus = ["No pleural effusion. Heart size is normal.", "No acute process.", "Study 1 2 3 4 5 6 7 8 9 0"]
    tok.train_from_iterator(corpus, trainers.WordPieceTrainer(vocab_size=120, special_tokens=specials))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]"
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    mimic, studies, truth = make_study_fixture(root, {"train": N_TRAIN, "test": N_TEST})
    cfg = ShardsConfig(image_size=40, samples_per_shard=3, workers=1, splits=("train", "test"))
    create_shards(studies, mimic, root / "shards", cfg)
    return root / "shards", mimic, studies, truth, tiny_tokenizer()


def loader_cfg(**kw) -> LoaderConfig:
    return LoaderConfig(**{"image_size": 32, "batch_size": 4, "workers": 0, "shuffle_buffer": 5, **kw})


def ids_of(loader) -> list[int]:
    return [i for batch in loader for i in batch["study_id"].tolist()]


def test_train_batch_contract(world):
    shards, _, _, truth, tok = world
    batch = next(iter(create_train_loader(shards / "train", tok, loader_cfg(), epoch=0)))
    b = batch["study_id"].shape[0]
    assert batch["images"].shape == (b, 2, 1, 32, 32) and batch["images"].dtype == torch.float32
    assert batch["input_ids"].shape[:2] == (b, 2) and batch["input_ids"].dtype == torch.long
    assert batch["attention_mask"].shape == batch["input_ids"].shape
    assert batch["labels"].shape == (b, 14) and batch["study_id"].dtype == torch.long
    for sid, labels in zip(batch["study_id"].tolist(), batch["labels"], strict=True):
        expected = [math.nan if truth[sid][c] == "" else float(truth[sid][c]) for c in schema.LABEL_COLUMNS]
        np.testing.assert_array_equal(labels.numpy(), np.array(expected, dtype=np.float32))
    assert (batch["attention_mask"].sum(-1) > 2).all()  # both sections carry text, even when one was missing


@pytest.mark.parametrize(("world_size", "workers"), [(1, 0), (2, 2), (3, 1), (4, 0)])
def test_epoch_covers_every_sample_exactly_once(world, world_size, workers):
    shards, _, _, truth, tok = world
    train_ids = sorted(k for k, v in truth.items() if v["split"] == "train")
    seen, sizes = [], []
    for rank in range(world_size):
        loader = create_train_loader(shards / "train", tok, loader_cfg(workers=workers), 3, rank, world_size)
        batches = list(loader)
        assert len(batches) == len(loader)
        ids = [i for b in batches for i in b["study_id"].tolist()]
        sizes.append(len(ids))
        seen += ids
    assert sorted(seen) == train_ids
    assert max(sizes) - min(sizes) <= 1


def test_epoch_ranges_partition():
    counts = [3, 0, 5, 1, 4]
    for r, w in [(1, 1), (2, 3), (5, 2), (20, 1)]:
        covered = []
        for rank in range(r):
            for worker in range(w):
                for pos, first, stop in epoch_ranges(counts, rank, r, worker, w):
                    covered += [(pos, i) for i in range(first, stop)]
        assert covered == [(p, i) for p, n in enumerate(counts) for i in range(n)]


def test_training_order_is_seeded_per_epoch_and_reproducible(world):
    shards, _, _, _, tok = world
    make = lambda epoch, **kw: create_train_loader(shards / "train", tok, loader_cfg(**kw), epoch)  # noqa: E731
    first, again = list(make(0)), list(make(0))
    assert [b["study_id"].tolist() for b in first] == [b["study_id"].tolist() for b in again]
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a["images"], b["images"]) and torch.equal(a["input_ids"], b["input_ids"])
    assert ids_of(make(1)) != ids_of(first)
    assert ids_of(make(0, seed=1)) != ids_of(first)


def test_augmentation_does_not_depend_on_worker_layout(world):
    shards, _, _, _, tok = world
    views = {}
    for workers in (0, 2):
        for batch in create_train_loader(shards / "train", tok, loader_cfg(workers=workers), 5):
            for sid, images in zip(batch["study_id"].tolist(), batch["images"], strict=True):
                views.setdefault(sid, []).append(images)
    assert all(torch.equal(a, b) for a, b in views.values())


def _raw_samples(split_dir):
    return {
        s.study_id: s
        for s in (decode_study(r) for p in sorted(split_dir.glob("*.tar")) for r in iter_tar_samples(p))
    }


def test_two_views_are_two_images_or_a_strong_second_augmentation(world):
    shards, _, _, _, _ = world
    cfg = loader_cfg(
        view_aug=NO_AUG, strong_aug=dataclasses.replace(NO_AUG, crop_scale_min=0.3, blur_sigma=2.0)
    )
    plain = create_train_transform(32, NO_AUG)
    transform = TrainTransform(cfg, epoch=0)
    for sample in _raw_samples(shards / "train").values():
        out = transform(sample)
        singles = [plain(im) for im in sample.images]
        if len(sample.images) >= 2:
            matches = [next(i for i, s in enumerate(singles) if torch.equal(s, v)) for v in out["images"]]
            assert matches[0] < matches[1]
        else:
            assert torch.equal(out["images"][0], singles[0])
            assert not torch.allclose(out["images"][1], singles[0], atol=0.05)


def test_missing_section_is_generated_from_the_other(world):
    shards, _, _, _, _ = world
    transform = TrainTransform(loader_cfg(), epoch=0)
    samples = _raw_samples(shards / "train").values()
    assert any(not s.findings for s in samples) and any(not s.impression for s in samples)
    for sample in samples:
        findings, impression = transform(sample)["texts"]
        assert findings and impression
        if not sample.impression:
            assert set(impression.split()) <= set(findings.split()) and "No" in impression.split()


def test_text_augmentation_keeps_negations():
    text = "No pleural effusion is seen. There is no pneumothorax. Heart without enlargement. Lungs clear."
    rng = random.Random(0)
    for _ in range(20):
        out = augment_text(text, rng, word_dropout=1.0)
        assert sorted(w for w in out.split() if is_negation(w)) == sorted(
            w for w in text.split() if is_negation(w)
        )
    shuffled = augment_text(text, random.Random(3), word_dropout=0.0)
    assert sorted(shuffled.split()) == sorted(text.split())


def test_eval_loader_one_frontal_query_per_study(world):
    shards, _, _, truth, tok = world
    cfg = loader_cfg(workers=2)
    batches = list(create_eval_loader(shards / "test", tok, cfg))
    ids = [i for b in batches for i in b["study_id"].tolist()]
    index = load_index(shards / "test")
    assert len(ids) == len(set(ids)) == index["n_samples"] - index["n_without_frontal"]
    assert all(truth[i]["view_names"].split(";")[0] in ("PA", "AP") for i in ids)
    assert batches[0]["image"].shape[1:] == (1, 32, 32) and batches[0]["input_ids"].ndim == 2
    again = list(create_eval_loader(shards / "test", tok, cfg))
    assert all(torch.equal(a["image"], b["image"]) for a, b in zip(batches, again, strict=True))
    assert frontal_index(["LATERAL", "AP", "PA"]) == 2 and frontal_index(["LL"]) is None


def test_eval_text_policy(world):
    shards, _, _, truth, tok = world
    for policy in ("findings_then_impression", "longest"):
        batch = next(
            iter(create_eval_loader(shards / "test", tok, loader_cfg(eval_text=policy, batch_size=64)))
        )
        for sid, ids in zip(batch["study_id"].tolist(), batch["input_ids"], strict=True):
            t = truth[sid]
            text = t["findings"] or t["impression"]
            if policy == "longest":
                text = max(t["findings"], t["impression"], key=len)
            expected = tok(text, truncation=True, max_length=256)["input_ids"]
            assert ids[: len(expected)].tolist() == expected


def test_corruptions_are_deterministic_and_graded(world):
    shards, _, _, _, tok = world
    clean = next(iter(create_eval_loader(shards / "test", tok, loader_cfg())))["image"]
    errors = []
    for severity in (1, 3, 5):
        corrupt = create_corruption("gaussian_noise", severity)
        batch = next(iter(create_eval_loader(shards / "test", tok, loader_cfg(), corruption=corrupt)))
        again = next(iter(create_eval_loader(shards / "test", tok, loader_cfg(), corruption=corrupt)))
        assert torch.equal(batch["image"], again["image"])
        errors.append((batch["image"] - clean).abs().mean().item())
    assert 0 < errors[0] < errors[1] < errors[2]
    for name in ("gaussian_blur", "brightness_contrast", "rotation"):
        img = torch.rand(1, 32, 32)
        assert not torch.equal(create_corruption(name, 3)(img, 0), img)
    with pytest.raises(ValueError, match="unknown corruption"):
        create_corruption("fog", 1)


def test_no_horizontal_flip_by_default():
    image = Image.fromarray(np.tile(np.arange(40, dtype=np.uint8) * 6, (40, 1)))  # left dark, right bright
    plain = create_train_transform(32, NO_AUG)(image)
    augment = create_train_transform(32, AugmentStrength())
    maybe_flip = create_train_transform(32, NO_AUG, hflip=True)
    flips = []
    for seed in range(8):
        with seeded(seed):
            view, flip = augment(image), maybe_flip(image)
        assert view[..., :4].mean() < view[..., -4:].mean()  # never mirrored
        flips.append(flip)
    assert any(torch.equal(f, plain.flip(-1)) for f in flips)
    assert any(torch.equal(f, plain) for f in flips)


def test_view_augmentation_is_a_function_of_the_seed():
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (50, 40), dtype=np.uint8))
    strong = create_train_transform(32, AugmentStrength(0.3, 20.0, 0.4, 0.4, blur_sigma=1.5))
    with seeded(3):
        first = strong(image)
    with seeded(3):
        again = strong(image)
    with seeded(4):
        other = strong(image)
    assert first.shape == (1, 32, 32) and first.dtype == torch.float32
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert first.min() >= -1.0 and first.max() <= 1.0

    cfg = build(LoaderConfig, {"strong_aug": {"blur_sigma": 2.0}, "hflip": False}, "params.yaml:loader")
    assert cfg.strong_aug.blur_sigma == 2.0 and cfg.strong_aug.crop_scale_min == 0.8


def test_csv_dataset_matches_shards(world):
    shards, mimic, studies, _, tok = world
    from_shards = _raw_samples(shards / "train")
    csv = StudyCSVDataset(studies / "train.csv", mimic, "train", image_size=40)
    assert len(csv) == len(from_shards)
    for i in range(len(csv)):
        a = csv[i]
        b = from_shards[a.study_id]
        assert (a.views, a.findings, a.impression) == (b.views, b.findings, b.impression)
        np.testing.assert_array_equal(a.labels, b.labels)
        for x, y in zip(a.images, b.images, strict=True):
            assert x.size == y.size
            assert np.abs(np.asarray(x, float) - np.asarray(y, float)).mean() < 2.0  # JPEG re-encode only
    cfg = loader_cfg()
    batch = next(
        iter(create_csv_train_loader(studies / "train.csv", mimic, tok, cfg, 0, shard_image_size=40))
    )
    reference = next(iter(create_train_loader(shards / "train", tok, cfg, 0)))
    assert {k: v.shape[2:] for k, v in batch.items() if v.ndim > 2} == {
        k: v.shape[2:] for k, v in reference.items() if v.ndim > 2
    }


def test_batched_corruption_matches_one_image_at_a_time():
    from pipeline.transforms import CORRUPTIONS, create_batch_corruption

    images, seeds = torch.rand(3, 1, 40, 40), torch.tensor([5, 6, 7])
    for name in CORRUPTIONS:
        batched = create_batch_corruption(name, 4)(images, seeds)
        single = torch.stack([create_corruption(name, 4)(images[i], int(seeds[i])) for i in range(3)])
        torch.testing.assert_close(batched, single, rtol=0, atol=1e-6)
        assert not torch.equal(batched[0], create_batch_corruption(name, 4)(images[1:2], seeds[:1])[0])


def test_csv_dataset_refuses_a_study_leaking_into_another_split(world, tmp_path):
    _, mimic, studies, _, _ = world
    leaky = tmp_path / "studies"
    leaky.mkdir()
    train = pd.read_csv(studies / "train.csv", dtype=str, keep_default_na=False)
    train.to_csv(leaky / "train.csv", index=False)
    train.iloc[:1].assign(split="test").to_csv(leaky / "test.csv", index=False)  # a training study copied
    with pytest.raises(PipelineError, match="more than one split"):
        StudyCSVDataset(leaky / "train.csv", mimic, "train", image_size=40)
