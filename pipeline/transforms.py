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

import numpy as np
import torch
import torchvision.transforms.v2 as v2
import torchvision.transforms.v2.functional as F
from PIL import Image, ImageFilter

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
    # The CPU generator directly: `torch.manual_seed` and `fork_rng` add ~2 ms of wrapper overhead per call.
    generator = torch.default_generator
    state = generator.get_state()
    generator.manual_seed(seed)
    try:
        yield
    finally:
        generator.set_state(state)


class ViewTransform:
    """One augmented training view: random-resized crop, rotation, brightness/contrast, blur, optional flip.

    Built from two antialiased PIL calls (crop+resize, rotate) and two tensor ops instead of a torchvision
    v2 chain: ~10x less loader CPU, which on a 2-core machine is CPU taken from the training step. All
    randomness comes from torch's global RNG, so `seeded` makes a view a function of (seed, epoch, study).
    """

    RATIO = (3.0 / 4.0, 4.0 / 3.0)

    def __init__(
        self, size: int, strength: AugmentStrength, hflip: bool = False, mean: float = 0.5, std: float = 0.5
    ) -> None:
        self.size, self.strength, self.hflip, self.mean, self.std = size, strength, hflip, mean, std

    def crop_box(self, width: int, height: int) -> tuple[float, float, float, float]:
        """torchvision's RandomResizedCrop sampling (10 tries, then the centred largest valid box)."""
        scale_min = self.strength.crop_scale_min
        if scale_min < 1.0:
            area = width * height
            log_ratio = (math.log(self.RATIO[0]), math.log(self.RATIO[1]))
            for _ in range(10):
                target = area * float(torch.empty(1).uniform_(scale_min, 1.0))
                ratio = math.exp(float(torch.empty(1).uniform_(*log_ratio)))
                w, h = math.sqrt(target * ratio), math.sqrt(target / ratio)
                if 0 < w <= width and 0 < h <= height:
                    left = float(torch.rand(1)) * (width - w)
                    top = float(torch.rand(1)) * (height - h)
                    return left, top, left + w, top + h
        side = min(width, height)
        left, top = (width - side) / 2, (height - side) / 2
        return left, top, left + side, top + side

    def uniform(self, low: float, high: float) -> float:
        return float(torch.empty(1).uniform_(low, high)) if high > low else low

    def __call__(self, image: Image.Image) -> torch.Tensor:
        s = self.strength
        image = image.convert("L").resize(
            (self.size, self.size), Image.BILINEAR, box=self.crop_box(*image.size)
        )
        if s.rotation_deg > 0:
            image = image.rotate(self.uniform(-s.rotation_deg, s.rotation_deg), Image.BILINEAR)
        if s.blur_sigma > 0:
            image = image.filter(ImageFilter.GaussianBlur(self.uniform(0.1, s.blur_sigma)))
        if self.hflip and float(torch.rand(1)) < 0.5:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).unsqueeze(0)
        brightness = self.uniform(1.0 - s.brightness, 1.0 + s.brightness)
        contrast = self.uniform(1.0 - s.contrast, 1.0 + s.contrast)
        if brightness != 1.0 or contrast != 1.0:
            x = x.mul(brightness).clamp_(0.0, 1.0)
            x = x.sub(x.mean()).mul_(contrast).add_(x.mean()).clamp_(0.0, 1.0)
        return x.sub_(self.mean).div_(self.std)


def create_train_transform(
    size: int, strength: AugmentStrength, hflip: bool = False, mean: float = 0.5, std: float = 0.5
) -> ViewTransform:
    return ViewTransform(size, strength, hflip, mean, std)


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
