"""Training-view augmentation: our fused PIL transform against the torchvision v2 chain it replaced.

Both do random-resized crop, rotation, brightness/contrast (and blur for the strong view) on a one-channel
shard image, seeded per view as the loader does. On two cores every loader millisecond is taken from the
training step, so this is the loader's main CPU cost after JPEG decoding.

    .venv/bin/python bench/bench_transforms.py [--size 64] [--source 80] [--n 2000]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
import torchvision.transforms.v2 as v2
from PIL import Image

from pipeline.transforms import AugmentStrength, create_train_transform, seeded


def torchvision_chain(size: int, s: AugmentStrength) -> v2.Compose:
    steps = [
        v2.PILToTensor(),
        v2.RandomResizedCrop(size, scale=(s.crop_scale_min, 1.0), antialias=True),
        v2.RandomAffine(degrees=s.rotation_deg),
        v2.ColorJitter(brightness=s.brightness, contrast=s.contrast),
    ]
    if s.blur_sigma > 0:
        steps.append(v2.GaussianBlur(2 * math.ceil(3 * s.blur_sigma) + 1, sigma=(0.1, s.blur_sigma)))
    return v2.Compose([*steps, v2.ToDtype(torch.float32, scale=True), v2.Normalize([0.5], [0.5])])


def per_view_seconds(transform, images: list[Image.Image], fork_rng: bool) -> float:
    start = time.perf_counter()
    for i, image in enumerate(images):
        if fork_rng:  # the loader's previous per-view seeding
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(i)
                transform(image)
        else:
            with seeded(i):
                transform(image)
    return (time.perf_counter() - start) / len(images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="training crop (tiny profile: 64)")
    parser.add_argument("--source", type=int, default=128, help="stored shorter side (shards.image_size)")
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()
    torch.set_num_threads(1)  # a loader worker's view of the machine
    rng = np.random.default_rng(0)
    images = [
        Image.fromarray(rng.integers(0, 255, (args.source, args.source * 5 // 4), dtype=np.uint8))
        for _ in range(args.n)
    ]
    for name, strength in (
        ("view", AugmentStrength(0.9, 5.0, 0.1, 0.1)),
        ("strong", AugmentStrength(0.5, 20.0, 0.4, 0.4, blur_sigma=1.5)),
    ):
        ours = per_view_seconds(create_train_transform(args.size, strength), images, fork_rng=False)
        naive = per_view_seconds(torchvision_chain(args.size, strength), images, fork_rng=True)
        print(
            f"{name:6s} {args.source}→{args.size} px: ours {ours * 1e3:.3f} ms/view "
            f"({1 / ours:,.0f} views/s), torchvision v2 + fork_rng {naive * 1e3:.3f} ms/view "
            f"({1 / naive:,.0f} views/s): {naive / ours:.1f}×"
        )


if __name__ == "__main__":
    main()
