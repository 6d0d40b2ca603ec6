"""CXR-CLIP: InfoNCE over the four image-text view pairs plus image-image (ICL) and text-text (TCL) terms.

Label-supervised parts of CXR-CLIP are omitted, as in the MedProbCLIP paper's re-implementation.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from pipeline.losses.base import Batch, Outputs, embedding, view
from pipeline.losses.clip import ClipLoss


@dataclass(frozen=True)
class CxrClipConfig:
    head: str = "deterministic"
    temperature_init: float = 0.07
    max_logit_scale: float = 100.0
    learn_temperature: bool = True
    icl_weight: float = 1.0
    tcl_weight: float = 0.5


class CxrClipLoss(ClipLoss):
    name = "cxrclip"
    display_name = "CXR-CLIP"
    Config = CxrClipConfig
    views = 2
    sections = 2

    def forward(self, outputs: Outputs, batch: Batch) -> dict[str, Tensor]:
        del batch
        img = [embedding(view(outputs, f"img_{v}")) for v in range(2)]
        txt = [embedding(view(outputs, f"txt_{s}")) for s in range(2)]
        inter = sum(self.pair(i, t) for i in img for t in txt) / 4
        icl = self.pair(img[0], img[1])
        tcl = self.pair(txt[0], txt[1])
        loss = inter + self.cfg.icl_weight * icl + self.cfg.tcl_weight * tcl
        return {"loss": loss, "inter": inter.detach(), "icl": icl.detach(), "tcl": tcl.detach()}
