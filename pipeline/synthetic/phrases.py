"""Sentence templates whose every observation mention is tagged as the CheXpert rules classify it.

A `Sentence` carries its text and the (observation, certainty) of each mention it contains, so the label
files can be computed from exactly what was written. Certainty cues are kept to those the CheXpert rules
name (no / without / is normal / resolved; cannot exclude / not excluded / possible / may represent /
suspicious for / stable / unchanged / if any); wording otherwise varies a lot.
"""

from __future__ import annotations

from pipeline.synthetic.findings import Finding
from pipeline.synthetic.lung_phrases import atelectasis, consolidation, edema, lesion, opacity, pneumonia
from pipeline.synthetic.rng import Rng
from pipeline.synthetic.sentence import OTHER, POS, UNC, Sentence, pick, sent

_ADV = {"mild": "mildly", "moderate": "moderately", "severe": "severely"}


def _eff_side(f: Finding) -> tuple[str, str]:
    if f.side == "bilateral":
        return "bilateral", "effusions"
    return f.side, "effusion"


def _cardiomegaly(f: Finding, rng: Rng, cert: str) -> Sentence:
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


def _mediastinum(f: Finding, rng: Rng, cert: str) -> Sentence:
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


def _effusion(f: Finding, rng: Rng, cert: str) -> Sentence:
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


def _pneumothorax(f: Finding, rng: Rng, cert: str) -> Sentence:
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


def _fracture(f: Finding, rng: Rng, cert: str) -> Sentence:
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


def _pleural_other(f: Finding, rng: Rng, cert: str) -> Sentence:
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
    "consolidation": consolidation,
    "pneumonia": pneumonia,
    "atelectasis": atelectasis,
    "edema": edema,
    "opacity": opacity,
    "pneumothorax": _pneumothorax,
    "lesion": lesion,
    "fracture": _fracture,
    "pleural_other": _pleural_other,
}


def describe(f: Finding, rng: Rng) -> Sentence:
    """A sentence stating a present finding: stable/unchanged or hedged wording makes it uncertain."""
    stable_ok = f.name not in ("fracture", "pleural_other")
    cert = UNC if f.hedged or (f.status == "stable" and stable_ok) else POS
    return _DESCRIBE[f.name](f, rng, cert)
