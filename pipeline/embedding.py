"""Embed what an evaluation loader yields: head outputs of images and texts, labels and study ids.

Shared by validation during training and by the evaluation flow, so both score exactly the same inputs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Embedded:
    """One row per included study, in loader order."""

    image: dict[str, Tensor]  # head output ("embed" or "mu"/"logvar") and, when kept, "feat"
    text: dict[str, Tensor]  # empty when texts were not embedded
    labels: Tensor  # [N, 14] float: 1, 0, -1, NaN
    study_id: Tensor  # [N] long
    images: Tensor | None = None  # [N, 1, H, W] the normalised model inputs, when kept

    def __len__(self) -> int:
        return int(self.study_id.shape[0])


def _cat(parts: list[Mapping[str, Tensor]], keep_feat: bool) -> dict[str, Tensor]:
    if not parts:
        return {}
    keys = [k for k in parts[0] if keep_feat or k != "feat"]
    return {k: torch.cat([p[k].float().cpu() for p in parts]) for k in keys}


@torch.no_grad()
def embed_loader(
    model,
    loader: Iterable[Mapping[str, Tensor]],
    device: torch.device | str = "cpu",
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    texts: bool = True,
    keep_feat: bool = False,
    keep_images: bool = False,
) -> Embedded:
    """Run the towers over every batch (`texts=False` skips the text tower; `keep_images` returns the
    inputs too, so perturbed copies can be embedded without decoding the split again)."""
    was_training = model.training
    model.eval()
    images, text_parts, labels, ids, inputs = [], [], [], [], []
    try:
        for batch in loader:
            with autocast():
                images.append(model.encode_image(batch["image"].to(device)))
                if texts:
                    ids_, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
                    text_parts.append(model.encode_text(ids_, mask))
            labels.append(batch["labels"])
            ids.append(batch["study_id"])
            if keep_images:
                inputs.append(batch["image"])
    finally:
        model.train(was_training)
    if not images:
        raise ValueError("the evaluation loader yielded no studies (empty split or all excluded)")
    kept = torch.cat(inputs) if keep_images else None
    return Embedded(
        _cat(images, keep_feat), _cat(text_parts, keep_feat), torch.cat(labels), torch.cat(ids), kept
    )
