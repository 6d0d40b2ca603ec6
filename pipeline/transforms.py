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
    DRAWS = 45  # 10 crop tries × 4, angle, blur σ, flip, brightness, contrast

    def __init__(
        self, size: int, strength: AugmentStrength, hflip: bool = False, mean: float = 0.5, std: float = 0.5
    ) -> None:
        self.size, self.strength, self.hflip, self.mean, self.std = size, strength, hflip, mean, std

    def crop_box(self, width: int, height: int, u: list[float]) -> tuple[float, float, float, float]:
        """torchvision's RandomResizedCrop sampling (10 tries, then the centred largest square), drawing
        from `u` (uniforms in [0, 1))."""
        scale_min = self.strength.crop_scale_min
        if scale_min < 1.0:
            area = width * height
            low, high = math.log(self.RATIO[0]), math.log(self.RATIO[1])
            for attempt in range(10):
                a, b, c, d = u[4 * attempt : 4 * attempt + 4]
                target = area * (scale_min + (1.0 - scale_min) * a)
                ratio = math.exp(low + (high - low) * b)
                w, h = math.sqrt(target * ratio), math.sqrt(target / ratio)
                if 0 < w <= width and 0 < h <= height:
                    left, top = c * (width - w), d * (height - h)
                    return left, top, left + w, top + h
        side = min(width, height)
        left, top = (width - side) / 2, (height - side) / 2
        return left, top, left + side, top + side

    def __call__(self, image: Image.Image) -> torch.Tensor:
        s = self.strength
        # One draw per view (crop tries, angle, blur, flip, brightness, contrast): a torch call per number
        # costs more than the image work at these sizes.
        u = torch.rand(self.DRAWS, dtype=torch.float64).tolist()
        crop, (angle, sigma, flip, brightness, contrast) = u[:40], u[40:]

        def spread(x: float, low: float, high: float) -> float:
            return low + (high - low) * x

        box = self.crop_box(*image.size, crop)
        image = image.convert("L").resize((self.size, self.size), Image.BILINEAR, box=box)
        if s.rotation_deg > 0:
            image = image.rotate(spread(angle, -s.rotation_deg, s.rotation_deg), Image.BILINEAR)
        if s.blur_sigma > 0:
            image = image.filter(ImageFilter.GaussianBlur(spread(sigma, 0.1, s.blur_sigma)))
        if self.hflip and flip < 0.5:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).unsqueeze(0)
        brightness = spread(brightness, 1.0 - s.brightness, 1.0 + s.brightness)
        contrast = spread(contrast, 1.0 - s.contrast, 1.0 + s.contrast)
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


def create_batch_corruption(name: str, severity: int) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A deterministic corruption of images [B, 1, H, W] in [0, 1]; `seeds` [B] drive each image's noise,
    so an image's corruption does not depend on its batch. Severities scale with the image size (224 px
    reference)."""
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; choose from {CORRUPTIONS}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity}")
    level = severity - 1

    def corrupt(images: torch.Tensor, seeds: torch.Tensor) -> torch.Tensor:
        scale = images.shape[-1] / 224
        if name == "gaussian_blur":
            sigma = (0.5, 1.0, 1.5, 2.0, 3.0)[level] * scale
            out = F.gaussian_blur(images, kernel_size=2 * math.ceil(3 * sigma) + 1, sigma=sigma)
        elif name == "gaussian_noise":
            shape = images.shape[1:]
            noise = [torch.randn(shape, generator=torch.Generator().manual_seed(int(s))) for s in seeds]
            out = images + (0.02, 0.04, 0.06, 0.08, 0.10)[level] * torch.stack(noise)
        elif name == "brightness_contrast":
            shift, factor = (0.05, 0.1, 0.15, 0.2, 0.25)[level], (0.9, 0.8, 0.7, 0.6, 0.5)[level]
            mean = images.mean(dim=(-3, -2, -1), keepdim=True)
            out = (images - mean) * factor + mean + shift
        else:
            out = F.rotate(images, (3.0, 6.0, 9.0, 12.0, 15.0)[level])
        return out.clamp(0.0, 1.0)

    return corrupt


def create_corruption(name: str, severity: int) -> Callable[[torch.Tensor, int], torch.Tensor]:
    """`create_batch_corruption` for one [1, H, W] image and its seed (the evaluation loader's hook)."""
    batch = create_batch_corruption(name, severity)
    return lambda image, seed: batch(image[None], torch.tensor([seed]))[0]
