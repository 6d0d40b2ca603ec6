"""Support devices and CheXpert's "other abnormalities": sentences that change No Finding differently."""

from __future__ import annotations

from pipeline.synthetic.findings import Finding
from pipeline.synthetic.rng import Rng
from pipeline.synthetic.sentence import OTHER, Sentence, pick, sent

_DEVICE = {
    "ett": [
        "endotracheal tube tip terminates {n} cm above the carina.",
        "the endotracheal tube is in standard position, {n} cm from the carina.",
    ],
    "ng": [
        "a nasogastric tube courses below the diaphragm with the tip in the stomach.",
        "enteric tube tip projects over the stomach.",
    ],
    "cvc": [
        "right internal jugular central venous catheter terminates in the mid SVC.",
        "left subclavian catheter tip is in the low SVC.",
    ],
    "picc": [
        "right PICC line tip is at the cavoatrial junction.",
        "a left-sided PICC terminates in the upper SVC.",
    ],
    "pacemaker": [
        "left-sided pacemaker with leads in the right atrium and right ventricle.",
        "dual-chamber pacer device with leads in standard position.",
    ],
    "sternal_wires": [
        "intact median sternotomy wires and surgical hardware.",
        "post-surgical hardware from prior median sternotomy.",
    ],
}


def describe_device(kind: str, rng: Rng) -> Sentence:
    text = pick(rng, _DEVICE[kind]).format(n=int(rng.integers(2, 7)))
    return sent(text, "Support Devices:pos")


_OTHER = {
    "emphysema": ["the lungs are hyperinflated, consistent with emphysema.", "hyperinflation of the lungs."],
    "scoliosis": ["moderate scoliosis of the thoracic spine.", "dextroconvex scoliosis is noted."],
    "granuloma": [
        "calcified granuloma in the {side} {zone} lung.",
        "a calcified nodule in the {side} {zone} lung is compatible with a granuloma.",
    ],
    "hernia": ["small hiatal hernia.", "a moderate hiatal hernia is noted."],
    "degenerative": [
        "degenerative changes in the thoracic spine.",
        "mild degenerative changes of the spine.",
    ],
    "calcification": [
        "calcification of the aortic knob.",
        "atherosclerotic calcification of the aortic arch.",
    ],
}


def describe_other(f: Finding, rng: Rng) -> Sentence:
    text = pick(rng, _OTHER[f.name]).format(side=f.side, zone=f.location)
    return sent(text, f"{OTHER}:pos")
