"""Sentence templates whose every observation mention is tagged as the CheXpert rules classify it.

A `Sentence` carries its text and the (observation, certainty) of each mention it contains, so the label
files can be computed from exactly what was written. Certainty cues are kept to those the CheXpert rules
name (no / without / is normal / resolved; cannot exclude / not excluded / possible / may represent /
suspicious for / stable / unchanged / if any); wording otherwise varies a lot.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from pipeline.synthetic.findings import Finding

OTHER = "Other"  # CheXpert's "other abnormalities" (emphysema, scoliosis, ...): they suppress No Finding.
POS, NEG, UNC = "pos", "neg", "unc"


class Sentence(NamedTuple):
    text: str
    mentions: tuple[tuple[str, str], ...]


def sent(text: str, *tags: str) -> Sentence:
    """`sent("No pleural effusion.", "Pleural Effusion:neg")`."""
    pairs = tuple((t.rsplit(":", 1)[0], t.rsplit(":", 1)[1]) for t in tags)
    return Sentence(text[0].upper() + text[1:], pairs)


def pick(rng: np.random.Generator, options: list):
    return options[int(rng.integers(len(options)))]


_ADV = {"mild": "mildly", "moderate": "moderately", "severe": "severely"}


def _eff_side(f: Finding) -> tuple[str, str]:
    if f.side == "bilateral":
        return "bilateral", "effusions"
    return f.side, "effusion"


def _base(side: str) -> str:
    return {"bilateral": "bibasilar", "left": "left basilar", "right": "right basilar"}[side]


def _zone(f: Finding) -> str:
    side = "bilateral" if f.side == "bilateral" else f.side
    return f"{side} {f.location} lung" if f.location != "mid" else f"{side} mid lung"


def _cardiomegaly(f: Finding, rng, cert: str) -> Sentence:
    sev, adv, L = f.size, _ADV[f.size], "Cardiomegaly"
    if cert == UNC and f.status == "stable":
        return pick(
            rng,
            [
                sent(f"stable {sev} cardiomegaly.", f"{L}:unc"),
                sent(f"{sev} cardiomegaly is unchanged.", f"{L}:unc"),
                sent(f"the heart size is unchanged, {adv} enlarged.", f"{L}:unc"),
                sent(f"unchanged {sev} enlargement of the cardiac silhouette.", f"{L}:unc"),
            ],
        )
    if cert == UNC:
        return pick(
            rng,
            [
                sent("possible mild cardiomegaly.", f"{L}:unc"),
                sent("mild cardiomegaly cannot be excluded given the AP technique.", f"{L}:unc"),
            ],
        )
    if f.status == "worse":
        return pick(
            rng,
            [
                sent(f"the heart is {adv} enlarged, increased since ___.", f"{L}:pos"),
                sent(f"worsening {sev} cardiomegaly.", f"{L}:pos"),
            ],
        )
    return pick(
        rng,
        [
            sent(f"{sev} cardiomegaly.", f"{L}:pos"),
            sent(f"the heart is {adv} enlarged.", f"{L}:pos"),
            sent(f"there is {sev} enlargement of the cardiac silhouette.", f"{L}:pos"),
            sent(f"{sev} cardiomegaly is again seen.", f"{L}:pos"),
            sent(f"heart size is {adv} enlarged.", f"{L}:pos"),
        ],
    )


def _mediastinum(f: Finding, rng, cert: str) -> Sentence:
    L = "Enlarged Cardiomediastinum"
    if cert == UNC and f.status == "stable":
        return pick(
            rng,
            [
                sent("stable widening of the mediastinum.", f"{L}:unc"),
                sent("mediastinal widening is unchanged.", f"{L}:unc"),
            ],
        )
    if cert == UNC:
        return pick(
            rng,
            [
                sent("possible mediastinal widening, which may be due to AP technique.", f"{L}:unc"),
                sent("widening of the superior mediastinum cannot be excluded.", f"{L}:unc"),
                sent("possible widening of the mediastinum on this AP view.", f"{L}:unc"),
            ],
        )
    return pick(
        rng,
        [
            sent("the mediastinum is widened.", f"{L}:pos"),
            sent("widening of the mediastinum.", f"{L}:pos"),
            sent("the cardiomediastinal silhouette is enlarged.", f"{L}:pos"),
            sent("there is new widening of the superior mediastinum.", f"{L}:pos"),
        ],
    )


def _effusion(f: Finding, rng, cert: str) -> Sentence:
    side, noun, sz, L = *_eff_side(f), f.size, "Pleural Effusion"
    if cert == UNC and f.status == "stable":
        return pick(
            rng,
            [
                sent(f"stable {sz} {side} pleural {noun}.", f"{L}:unc"),
                sent(f"{sz} {side} pleural {noun} is unchanged.", f"{L}:unc"),
                sent(f"unchanged {sz} {side} pleural {noun}.", f"{L}:unc"),
            ],
        )
    if cert == UNC:
        return pick(
            rng,
            [
                sent(f"possible {sz} {side} pleural {noun}.", f"{L}:unc"),
                sent(f"a {sz} {side} pleural {noun} cannot be excluded.", f"{L}:unc"),
                sent(f"trace {side} pleural {noun}, if any.", f"{L}:unc"),
                sent(
                    f"blunting of the {side} costophrenic {'angles' if side == 'bilateral' else 'angle'} may "
                    f"represent small {noun}.",
                    f"{L}:unc",
                    f"{OTHER}:pos",
                ),
            ],
        )
    if f.status == "worse":
        return pick(
            rng,
            [
                sent(f"{side} pleural {noun} has increased, now {sz}.", f"{L}:pos"),
                sent(f"increasing {sz} {side} pleural {noun}.", f"{L}:pos"),
            ],
        )
    if f.status == "improved":
        return pick(
            rng,
            [
                sent(f"interval improvement of the {side} pleural {noun}, now {sz}.", f"{L}:pos"),
                sent(f"decreased {side} pleural {noun}, now {sz}.", f"{L}:pos"),
            ],
        )
    opts = [
        sent(f"{sz} {side} pleural {noun}.", f"{L}:pos"),
        sent(f"there is a {sz} {side} pleural {noun}.", f"{L}:pos"),
        sent(f"{sz} {side} pleural {noun} is present.", f"{L}:pos"),
        sent(f"{sz} layering {side} pleural {noun}.", f"{L}:pos"),
        sent(f"{sz} amount of {side} pleural fluid.", f"{L}:pos"),
        sent(f"there is a {sz} {side} pleural {noun}, but no pneumothorax.", f"{L}:pos", "Pneumothorax:neg"),
    ]
    if f.status == "new":
        opts.append(sent(f"new {sz} {side} pleural {noun}.", f"{L}:pos"))
    return pick(rng, opts)


def _lobar(f: Finding, rng, cert: str, label: str, noun: str) -> Sentence:
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


def _consolidation(f: Finding, rng, cert: str) -> Sentence:
    return _lobar(f, rng, cert, "Consolidation", "consolidation")


def _pneumonia(f: Finding, rng, cert: str) -> Sentence:
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


def _atelectasis(f: Finding, rng, cert: str) -> Sentence:
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


def _edema(f: Finding, rng, cert: str) -> Sentence:
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


def _opacity(f: Finding, rng, cert: str) -> Sentence:
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


def _pneumothorax(f: Finding, rng, cert: str) -> Sentence:
    side, sz, L = f.side, f.size, "Pneumothorax"
    if cert == UNC and f.status == "stable":
        return sent(f"stable {sz} {side} pneumothorax.", f"{L}:unc")
    if cert == UNC:
        return pick(
            rng,
            [
                sent(f"possible tiny {side} apical pneumothorax.", f"{L}:unc"),
                sent(f"a tiny {side} pneumothorax cannot be excluded.", f"{L}:unc"),
            ],
        )
    opts = [
        sent(f"{sz} {side} pneumothorax.", f"{L}:pos"),
        sent(f"there is a {sz} {side} apical pneumothorax.", f"{L}:pos"),
        sent(f"{sz} {side}-sided pneumothorax is present.", f"{L}:pos"),
    ]
    if f.status == "new":
        opts.append(sent(f"new {sz} {side} pneumothorax.", f"{L}:pos"))
    if f.status == "worse":
        opts.append(sent(f"the {side} pneumothorax has increased in size, now {sz}.", f"{L}:pos"))
    return pick(rng, opts)


def _lesion(f: Finding, rng, cert: str) -> Sentence:
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


def _fracture(f: Finding, rng, cert: str) -> Sentence:
    nth = {3: "third", 4: "fourth", 5: "fifth", 6: "sixth", 7: "seventh", 8: "eighth", 9: "ninth"}[f.rib]
    L = "Fracture"
    if cert == UNC:
        return pick(
            rng,
            [
                sent(f"possible nondisplaced fracture of the {f.side} {nth} rib.", f"{L}:unc"),
                sent(f"a {f.side} {nth} rib fracture cannot be excluded.", f"{L}:unc"),
            ],
        )
    return pick(
        rng,
        [
            sent(f"acute fracture of the {f.side} {nth} posterior rib.", f"{L}:pos"),
            sent(f"nondisplaced fracture of the {f.side} {nth} rib.", f"{L}:pos"),
            sent(f"there is a minimally displaced {f.side} {nth} rib fracture.", f"{L}:pos"),
        ],
    )


def _pleural_other(f: Finding, rng, cert: str) -> Sentence:
    side, loc, L = f.side, f.location, "Pleural Other"
    if cert == UNC:
        return sent(f"possible {side} {loc} pleural thickening.", f"{L}:unc", f"{OTHER}:unc")
    return pick(
        rng,
        [
            sent(f"{side} {loc} pleural thickening.", f"{L}:pos", f"{OTHER}:pos"),
            sent(f"there is {side} {loc} pleural thickening.", f"{L}:pos", f"{OTHER}:pos"),
        ],
    )


_DESCRIBE = {
    "cardiomegaly": _cardiomegaly,
    "mediastinum": _mediastinum,
    "effusion": _effusion,
    "consolidation": _consolidation,
    "pneumonia": _pneumonia,
    "atelectasis": _atelectasis,
    "edema": _edema,
    "opacity": _opacity,
    "pneumothorax": _pneumothorax,
    "lesion": _lesion,
    "fracture": _fracture,
    "pleural_other": _pleural_other,
}


def describe(f: Finding, rng: np.random.Generator) -> Sentence:
    """A sentence stating a present finding: stable/unchanged or hedged wording makes it uncertain."""
    stable_ok = f.name not in ("fracture", "pleural_other")
    cert = UNC if f.hedged or (f.status == "stable" and stable_ok) else POS
    return _DESCRIBE[f.name](f, rng, cert)
