"""Image transforms for training views, evaluation queries and robustness corruptions.

All work on one-channel images. No horizontal flip by default: a chest X-ray mirrored puts the heart on
the right, which is a different (and rare) anatomy, not the same study. Randomness is driven per sample
from (seed, epoch, study_id) so a study's augmentation does not depend on worker or rank layout.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torchvision.transforms.v2 as v2
import torchvision.transforms.v2.functional as F

CORRUPTIONS = ("gaussian_blur", "gaussian_noise", "brightness_contrast", "rotation")
SEVERITIES = (1, 2, 3, 4, 5)


@dataclass(frozen=True)
class AugmentStrength:
    """One view's augmentation: random-resized-crop scale floor, rotation (deg), jitter, blur."""

    crop_scale_min: float = 0.8
    rotation_deg: float = 10.0
    brightness: float = 0.2
    contrast: float = 0.2
    blur_sigma: float = 0.0


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block on torch's global RNG seeded with `seed`, leaving the caller's RNG untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _normalize(mean: float, std: float) -> list:
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize([mean], [std])]


def create_train_transform(
    size: int, strength: AugmentStrength, hflip: bool = False, mean: float = 0.5, std: float = 0.5
) -> v2.Compose:
    if strength.crop_scale_min >= 1.0:
        crop = [v2.Resize(size, antialias=True), v2.CenterCrop(size)]
    else:
        crop = [v2.RandomResizedCrop(size, scale=(strength.crop_scale_min, 1.0), antialias=True)]
    steps = [
        v2.PILToTensor(),
        *crop,
        v2.RandomAffine(degrees=strength.rotation_deg),
        v2.ColorJitter(brightness=strength.brightness, contrast=strength.contrast),
    ]
    if strength.blur_sigma > 0:
        steps.append(
            v2.GaussianBlur(
                kernel_size=2 * math.ceil(3 * strength.blur_sigma) + 1, sigma=(0.1, strength.blur_sigma)
            )
        )
    if hflip:
        steps.append(v2.RandomHorizontalFlip())
    return v2.Compose(steps + _normalize(mean, std))


def create_eval_transform(size: int) -> v2.Compose:
    """Shorter side to `size`, centre crop; output float in [0, 1] (normalise after any corruption)."""
    return v2.Compose(
        [
            v2.PILToTensor(),
            v2.Resize(size, antialias=True),
            v2.CenterCrop(size),
            v2.ToDtype(torch.float32, scale=True),
        ]
    )


def create_corruption(name: str, severity: int) -> Callable[[torch.Tensor, int], torch.Tensor]:
    """A deterministic corruption of a [1, H, W] image in [0, 1]; `seed` drives any noise."""
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; choose from {CORRUPTIONS}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity}")
    level = severity - 1

    def corrupt(image: torch.Tensor, seed: int) -> torch.Tensor:
        scale = image.shape[-1] / 224
        if name == "gaussian_blur":
            sigma = (0.5, 1.0, 1.5, 2.0, 3.0)[level] * scale
            out = F.gaussian_blur(image, kernel_size=2 * math.ceil(3 * sigma) + 1, sigma=sigma)
        elif name == "gaussian_noise":
            gen = torch.Generator().manual_seed(seed)
            out = image + (0.02, 0.04, 0.06, 0.08, 0.10)[level] * torch.randn(image.shape, generator=gen)
        elif name == "brightness_contrast":
            shift, factor = (0.05, 0.1, 0.15, 0.2, 0.25)[level], (0.9, 0.8, 0.7, 0.6, 0.5)[level]
            out = (image - image.mean()) * factor + image.mean() + shift
        else:
            out = F.rotate(image, (3.0, 6.0, 9.0, 12.0, 15.0)[level])
        return out.clamp(0.0, 1.0)

    return corrupt
