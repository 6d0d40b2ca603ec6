"""Phrases for lung findings (lobar consolidation/pneumonia, atelectasis, edema, opacity, lesion)."""

from __future__ import annotations

from pipeline.synthetic.findings import Finding
from pipeline.synthetic.rng import Rng
from pipeline.synthetic.sentence import OTHER, POS, UNC, Sentence, pick, sent


def _base(side: str) -> str:
    return {"bilateral": "bibasilar", "left": "left basilar", "right": "right basilar"}[side]


def _zone(f: Finding) -> str:
    side = "bilateral" if f.side == "bilateral" else f.side
    return f"{side} {f.location} lung" if f.location != "mid" else f"{side} mid lung"


def _lobar(f: Finding, rng: Rng, cert: str, label: str, noun: str) -> Sentence:
    lobe = f.location
    if cert == UNC and f.status == "stable":
        return sent(f"stable {lobe} {noun}.", f"{label}:unc")
    if cert == UNC:
        return pick(
            rng,
            [
                sent(f"possible {lobe} {noun}.", f"{label}:unc"),
                sent(f"{noun} in the {lobe} cannot be excluded.", f"{label}:unc"),
                sent(f"early {noun} in the {lobe} is not excluded.", f"{label}:unc"),
                sent(f"findings may represent {noun} in the {lobe}.", f"{label}:unc"),
            ],
        )
    opts = [
        sent(f"{lobe} {noun}.", f"{label}:pos"),
        sent(f"there is {noun} in the {lobe}.", f"{label}:pos"),
        sent(f"new {lobe} {noun}.", f"{label}:pos"),
        sent(f"focal {noun} is seen in the {lobe}.", f"{label}:pos"),
    ]
    if f.status == "worse":
        opts.append(sent(f"worsening {noun} in the {lobe}.", f"{label}:pos"))
    return pick(rng, opts)


def consolidation(f: Finding, rng: Rng, cert: str) -> Sentence:
    return _lobar(f, rng, cert, "Consolidation", "consolidation")


def pneumonia(f: Finding, rng: Rng, cert: str) -> Sentence:
    if cert == POS and rng.random() < 0.3:
        return sent(
            f"consolidation in the {f.location} is consistent with pneumonia.",
            "Consolidation:pos",
            "Pneumonia:pos",
        )
    if cert == UNC and rng.random() < 0.4:
        return pick(
            rng,
            [
                sent("pneumonia cannot be excluded.", "Pneumonia:unc"),
                sent("cannot exclude pneumonia.", "Pneumonia:unc"),
                sent("infection cannot be ruled out in the appropriate clinical setting.", "Pneumonia:unc"),
            ],
        )
    return _lobar(f, rng, cert, "Pneumonia", "pneumonia")


def atelectasis(f: Finding, rng: Rng, cert: str) -> Sentence:
    base, sz, L = _base(f.side), f.size, "Atelectasis"
    where = "both lung bases" if f.side == "bilateral" else f"the {f.side} lung base"
    if cert == UNC and f.status == "stable":
        return pick(
            rng,
            [
                sent(f"stable {base} atelectasis.", f"{L}:unc"),
                sent(f"{sz} {base} atelectasis is unchanged.", f"{L}:unc"),
            ],
        )
    if cert == UNC:
        return pick(
            rng,
            [
                sent(f"possible {sz} {base} atelectasis.", f"{L}:unc"),
                sent(f"atelectasis at {where} cannot be excluded.", f"{L}:unc"),
            ],
        )
    return pick(
        rng,
        [
            sent(f"{sz} {base} atelectasis.", f"{L}:pos"),
            sent(f"there is {sz} atelectasis at {where}.", f"{L}:pos"),
            sent(f"subsegmental atelectasis at {where}.", f"{L}:pos"),
            sent(f"streaky opacities at {where} reflect atelectasis.", "Lung Opacity:pos", f"{L}:pos"),
            sent(f"{sz} {base} atelectasis has developed.", f"{L}:pos"),
            sent(f"{base} volume loss and atelectasis.", f"{OTHER}:pos", f"{L}:pos"),
        ],
    )


def edema(f: Finding, rng: Rng, cert: str) -> Sentence:
    sev, L, chf = f.size, "Edema", ("Edema:pos", "Cardiomegaly:unc")
    if cert == UNC and f.status == "stable":
        return pick(
            rng,
            [
                sent(f"stable {sev} pulmonary edema.", f"{L}:unc"),
                sent("unchanged pulmonary vascular congestion.", f"{L}:unc"),
            ],
        )
    if cert == UNC:
        return pick(
            rng,
            [
                sent(f"possible {sev} pulmonary edema.", f"{L}:unc"),
                sent(f"{sev} interstitial edema is not excluded.", f"{L}:unc"),
            ],
        )
    opts = [
        sent(f"{sev} pulmonary edema.", f"{L}:pos"),
        sent(f"there is {sev} interstitial pulmonary edema.", f"{L}:pos"),
        sent(f"{sev} pulmonary vascular congestion.", f"{L}:pos"),
        sent(
            f"perihilar haziness and vascular indistinctness reflect {sev} pulmonary edema.",
            f"{L}:pos",
            f"{L}:pos",
        ),
        sent(f"findings are consistent with {sev} CHF.", *chf),
    ]
    if f.status == "worse":
        opts.append(sent(f"worsening {sev} pulmonary edema.", f"{L}:pos"))
    if f.status == "improved":
        opts.append(sent(f"interval improvement in pulmonary edema, now {sev}.", f"{L}:pos"))
    return pick(rng, opts)


def opacity(f: Finding, rng: Rng, cert: str) -> Sentence:
    where, L = _zone(f), "Lung Opacity"
    if cert == UNC and f.status == "stable":
        return sent(f"stable {where} opacity.", f"{L}:unc")
    if cert == UNC:
        return pick(
            rng,
            [
                sent(f"possible subtle opacity in the {where}.", f"{L}:unc"),
                sent(f"a subtle {where} opacity cannot be excluded.", f"{L}:unc"),
            ],
        )
    return pick(
        rng,
        [
            sent(f"patchy opacity in the {where}.", f"{L}:pos"),
            sent(f"ill-defined opacities in the {where}.", f"{L}:pos"),
            sent(f"there is increased opacity in the {where}.", f"{L}:pos"),
            sent(f"hazy opacification of the {where}.", f"{L}:pos"),
        ],
    )


def lesion(f: Finding, rng: Rng, cert: str) -> Sentence:
    where, L = _zone(f), "Lung Lesion"
    noun = "nodule" if f.size_mm < 30 else "mass"
    size = f"{f.size_mm} mm" if f.size_mm < 30 else f"{f.size_mm / 10:.1f} cm"
    if cert == UNC and f.status == "stable":
        return sent(f"stable {size} {where} {noun}.", f"{L}:unc")
    if cert == UNC:
        return pick(
            rng,
            [
                sent(f"possible {size} {noun} in the {where}.", f"{L}:unc"),
                sent(f"a {noun} in the {where} cannot be excluded.", f"{L}:unc"),
            ],
        )
    return pick(
        rng,
        [
            sent(f"{size} {noun} in the {where}.", f"{L}:pos"),
            sent(f"there is a {size} rounded {noun} in the {where}.", f"{L}:pos"),
            sent(f"a new {size} {where} {noun} is seen.", f"{L}:pos"),
        ],
    )
