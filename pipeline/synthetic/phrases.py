"""Sentence templates whose every observation mention is tagged as the CheXpert rules classify it.

A `Sentence` carries its text and the (observation, certainty) of each mention it contains, so the label
files can be computed from exactly what was written. Certainty cues are kept to those the CheXpert rules
name (no / without / is normal / resolved; cannot exclude / not excluded / possible / may represent /
suspicious for / if any); wording otherwise varies a lot. "Stable / unchanged" is uncertainty in CheXpert
only for a heart, silhouette, contour, size or mediastinum mention (its post-negation patterns), so
"stable small left pleural effusion" is tagged positive and "the heart size is unchanged" uncertain; a
"vascular congestion" or "indistinctness" mention is uncertain whenever it is not negated.

All wording lives in one table, `PHRASES` (finding name → `Phrases`), read by one helper, `phrase`.
Templates are `(text, *tags)` with `{placeholders}` filled from the finding (`Phrases.fields`); `{L}` is
the finding's CheXpert observation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from pipeline.synthetic.findings import Finding
from pipeline.synthetic.rng import Rng
from pipeline.synthetic.sentence import OTHER, POS, UNC, Sentence, sent

Template = tuple[str, ...]  # (text, *tags)
Options = tuple[Template, ...]

_ADV = {"mild": "mildly", "moderate": "moderately", "severe": "severely"}
_NTH = {3: "third", 4: "fourth", 5: "fifth", 6: "sixth", 7: "seventh", 8: "eighth", 9: "ninth"}
_BASE = {"bilateral": "bibasilar", "left": "left basilar", "right": "right basilar"}
_OTHER_POS, _OTHER_UNC = f"{OTHER}:pos", f"{OTHER}:unc"


def _no_fields(f: Finding) -> dict[str, str]:
    return {}


@dataclass(frozen=True)
class Phrases:
    """How a reader words one present finding.

    Hedged findings and unchanged ones are drawn at certainty UNC: they use `stable` when unchanged (else
    `unc`); the rest use `pos`, with `also[status]` added to the choice or `instead[status]` replacing it.
    `lead` entries `(certainty, p, options)` first take over with probability `p` at that certainty. The
    certainty only picks the wording: each template's tags say how CheXpert reads it (a `stable` template
    is positive unless its mention is a heart / silhouette / size / mediastinum word)."""

    label: str
    pos: Options
    unc: Options
    stable: Options = ()
    also: Mapping[str, Options] = field(default_factory=dict)
    instead: Mapping[str, Options] = field(default_factory=dict)
    lead: tuple[tuple[str, float, Options], ...] = ()
    fields: Callable[[Finding], dict[str, str]] = _no_fields


def phrase(table: Phrases, f: Finding, rng: Rng, cert: str) -> Sentence:
    """The sentence for finding `f` at certainty `cert` (POS or UNC), drawn from `table`.

    A single option takes no random draw; several take one `rng.integers`, so streams stay aligned."""
    options: Options | None = None
    for lead_cert, p, lead_options in table.lead:
        if cert == lead_cert and rng.random() < p:
            options = lead_options
            break
    if options is None:
        if cert == UNC:
            options = table.stable if f.status == "stable" and table.stable else table.unc
        elif f.status in table.instead:
            options = table.instead[f.status]
        else:
            options = table.pos + table.also.get(f.status, ())
    text, *tags = options[0] if len(options) == 1 else options[rng.integers(len(options))]
    values = {"L": table.label, **table.fields(f)}
    return sent(text.format(**values), *(tag.format(**values) for tag in tags))


def _lobar(f: Finding) -> dict[str, str]:
    return {"lobe": f.location}


def _effusion(f: Finding) -> dict[str, str]:
    side, noun = ("bilateral", "effusions") if f.side == "bilateral" else (f.side, "effusion")
    return {"side": side, "noun": noun, "sz": f.size, "angles": "angles" if side == "bilateral" else "angle"}


def _zone(f: Finding) -> str:
    return f"{f.side} {f.location} lung" if f.location != "mid" else f"{f.side} mid lung"


def _lesion(f: Finding) -> dict[str, str]:
    small = f.size_mm < 30
    size = f"{f.size_mm} mm" if small else f"{f.size_mm / 10:.1f} cm"
    return {"where": _zone(f), "noun": "nodule" if small else "mass", "size": size}


def _atelectasis(f: Finding) -> dict[str, str]:
    where = "both lung bases" if f.side == "bilateral" else f"the {f.side} lung base"
    return {"base": _BASE[f.side], "sz": f.size, "where": where}


def _size(f: Finding) -> dict[str, str]:
    return {"sz": f.size, "adv": _ADV.get(f.size, ""), "side": f.side}


_LOBAR = Phrases(
    label="Consolidation",
    fields=lambda f: {**_lobar(f), "noun": "consolidation"},
    stable=(("stable {lobe} {noun}.", "{L}:pos"),),
    unc=(
        ("possible {lobe} {noun}.", "{L}:unc"),
        ("{noun} in the {lobe} cannot be excluded.", "{L}:unc"),
        ("early {noun} in the {lobe} is not excluded.", "{L}:unc"),
        ("findings may represent {noun} in the {lobe}.", "{L}:unc"),
    ),
    pos=(
        ("{lobe} {noun}.", "{L}:pos"),
        ("there is {noun} in the {lobe}.", "{L}:pos"),
        ("new {lobe} {noun}.", "{L}:pos"),
        ("focal {noun} is seen in the {lobe}.", "{L}:pos"),
    ),
    also={"worse": (("worsening {noun} in the {lobe}.", "{L}:pos"),)},
)

PHRASES: dict[str, Phrases] = {
    "cardiomegaly": Phrases(
        label="Cardiomegaly",
        fields=_size,
        stable=(
            ("stable {sz} cardiomegaly.", "{L}:pos"),
            ("{sz} cardiomegaly is unchanged.", "{L}:pos"),
            ("the heart size is unchanged, {adv} enlarged.", "{L}:unc"),
            ("unchanged {sz} enlargement of the cardiac silhouette.", "{L}:unc"),
        ),
        unc=(
            ("possible mild cardiomegaly.", "{L}:unc"),
            ("mild cardiomegaly cannot be excluded given the AP technique.", "{L}:unc"),
        ),
        instead={
            "worse": (
                ("the heart is {adv} enlarged, increased since ___.", "{L}:pos"),
                ("worsening {sz} cardiomegaly.", "{L}:pos"),
            )
        },
        pos=(
            ("{sz} cardiomegaly.", "{L}:pos"),
            ("the heart is {adv} enlarged.", "{L}:pos"),
            ("there is {sz} enlargement of the cardiac silhouette.", "{L}:pos"),
            ("{sz} cardiomegaly is again seen.", "{L}:pos"),
            ("heart size is {adv} enlarged.", "{L}:pos"),
        ),
    ),
    "mediastinum": Phrases(
        label="Enlarged Cardiomediastinum",
        stable=(
            ("stable widening of the mediastinum.", "{L}:unc"),
            ("mediastinal widening is unchanged.", "{L}:unc"),
        ),
        unc=(
            ("possible mediastinal widening, which may be due to AP technique.", "{L}:unc"),
            ("widening of the superior mediastinum cannot be excluded.", "{L}:unc"),
            ("possible widening of the mediastinum on this AP view.", "{L}:unc"),
        ),
        pos=(
            ("the mediastinum is widened.", "{L}:pos"),
            ("widening of the mediastinum.", "{L}:pos"),
            ("the cardiomediastinal silhouette is enlarged.", "{L}:pos"),
            ("there is new widening of the superior mediastinum.", "{L}:pos"),
        ),
    ),
    "effusion": Phrases(
        label="Pleural Effusion",
        fields=_effusion,
        stable=(
            ("stable {sz} {side} pleural {noun}.", "{L}:pos"),
            ("{sz} {side} pleural {noun} is unchanged.", "{L}:pos"),
            ("unchanged {sz} {side} pleural {noun}.", "{L}:pos"),
        ),
        unc=(
            ("possible {sz} {side} pleural {noun}.", "{L}:unc"),
            ("a {sz} {side} pleural {noun} cannot be excluded.", "{L}:unc"),
            ("trace {side} pleural {noun}, if any.", "{L}:unc"),
            (
                "blunting of the {side} costophrenic {angles} may represent small {noun}.",
                "{L}:unc",
                _OTHER_POS,
            ),
        ),
        instead={
            "worse": (
                ("{side} pleural {noun} has increased, now {sz}.", "{L}:pos"),
                ("increasing {sz} {side} pleural {noun}.", "{L}:pos"),
            ),
            "improved": (
                ("interval improvement of the {side} pleural {noun}, now {sz}.", "{L}:pos"),
                ("decreased {side} pleural {noun}, now {sz}.", "{L}:pos"),
            ),
        },
        pos=(
            ("{sz} {side} pleural {noun}.", "{L}:pos"),
            ("there is a {sz} {side} pleural {noun}.", "{L}:pos"),
            ("{sz} {side} pleural {noun} is present.", "{L}:pos"),
            ("{sz} layering {side} pleural {noun}.", "{L}:pos"),
            ("{sz} amount of {side} pleural fluid.", "{L}:pos"),
            ("there is a {sz} {side} pleural {noun}, but no pneumothorax.", "{L}:pos", "Pneumothorax:neg"),
        ),
        also={"new": (("new {sz} {side} pleural {noun}.", "{L}:pos"),)},
    ),
    "consolidation": _LOBAR,
    "pneumonia": dataclasses.replace(
        _LOBAR,
        label="Pneumonia",
        fields=lambda f: {**_lobar(f), "noun": "pneumonia"},
        lead=(
            (
                POS,
                0.3,
                (
                    (
                        "consolidation in the {lobe} is consistent with pneumonia.",
                        "Consolidation:pos",
                        "{L}:pos",
                    ),
                ),
            ),
            (
                UNC,
                0.4,
                (
                    ("pneumonia cannot be excluded.", "{L}:unc"),
                    ("cannot exclude pneumonia.", "{L}:unc"),
                    ("infection cannot be ruled out in the appropriate clinical setting.", "{L}:unc"),
                ),
            ),
        ),
    ),
    "atelectasis": Phrases(
        label="Atelectasis",
        fields=_atelectasis,
        stable=(
            ("stable {base} atelectasis.", "{L}:pos"),
            ("{sz} {base} atelectasis is unchanged.", "{L}:pos"),
        ),
        unc=(
            ("possible {sz} {base} atelectasis.", "{L}:unc"),
            ("atelectasis at {where} cannot be excluded.", "{L}:unc"),
        ),
        pos=(
            ("{sz} {base} atelectasis.", "{L}:pos"),
            ("there is {sz} atelectasis at {where}.", "{L}:pos"),
            ("subsegmental atelectasis at {where}.", "{L}:pos"),
            ("streaky opacities at {where} reflect atelectasis.", "Lung Opacity:pos", "{L}:pos"),
            ("{sz} {base} atelectasis has developed.", "{L}:pos"),
            ("{base} volume loss and atelectasis.", _OTHER_POS, "{L}:pos"),
        ),
    ),
    "edema": Phrases(
        label="Edema",
        fields=_size,
        stable=(
            ("stable {sz} pulmonary edema.", "{L}:pos"),
            ("unchanged pulmonary vascular congestion.", "{L}:unc"),
        ),
        unc=(
            ("possible {sz} pulmonary edema.", "{L}:unc"),
            ("{sz} interstitial edema is not excluded.", "{L}:unc"),
        ),
        pos=(
            ("{sz} pulmonary edema.", "{L}:pos"),
            ("there is {sz} interstitial pulmonary edema.", "{L}:pos"),
            ("{sz} pulmonary vascular congestion.", "{L}:unc"),
            (
                "perihilar haziness and vascular indistinctness reflect {sz} pulmonary edema.",
                "{L}:unc",
                "{L}:pos",
            ),
            ("findings are consistent with {sz} CHF.", "{L}:pos", "Cardiomegaly:unc"),
        ),
        also={
            "worse": (("worsening {sz} pulmonary edema.", "{L}:pos"),),
            "improved": (("interval improvement in pulmonary edema, now {sz}.", "{L}:pos"),),
        },
    ),
    "opacity": Phrases(
        label="Lung Opacity",
        fields=lambda f: {"where": _zone(f)},
        stable=(("stable {where} opacity.", "{L}:pos"),),
        unc=(
            ("possible subtle opacity in the {where}.", "{L}:unc"),
            ("a subtle {where} opacity cannot be excluded.", "{L}:unc"),
        ),
        pos=(
            ("patchy opacity in the {where}.", "{L}:pos"),
            ("ill-defined opacities in the {where}.", "{L}:pos"),
            ("there is increased opacity in the {where}.", "{L}:pos"),
            ("hazy opacification of the {where}.", "{L}:pos"),
        ),
    ),
    "pneumothorax": Phrases(
        label="Pneumothorax",
        fields=_size,
        stable=(("stable {sz} {side} pneumothorax.", "{L}:pos"),),
        unc=(
            ("possible tiny {side} apical pneumothorax.", "{L}:unc"),
            ("a tiny {side} pneumothorax cannot be excluded.", "{L}:unc"),
        ),
        pos=(
            ("{sz} {side} pneumothorax.", "{L}:pos"),
            ("there is a {sz} {side} apical pneumothorax.", "{L}:pos"),
            ("{sz} {side}-sided pneumothorax is present.", "{L}:pos"),
        ),
        also={
            "new": (("new {sz} {side} pneumothorax.", "{L}:pos"),),
            "worse": (("the {side} pneumothorax has increased in size, now {sz}.", "{L}:pos"),),
        },
    ),
    "lesion": Phrases(
        label="Lung Lesion",
        fields=_lesion,
        stable=(("stable {size} {where} {noun}.", "{L}:pos"),),
        unc=(
            ("possible {size} {noun} in the {where}.", "{L}:unc"),
            ("a {noun} in the {where} cannot be excluded.", "{L}:unc"),
        ),
        pos=(
            ("{size} {noun} in the {where}.", "{L}:pos"),
            ("there is a {size} rounded {noun} in the {where}.", "{L}:pos"),
            ("a new {size} {where} {noun} is seen.", "{L}:pos"),
        ),
    ),
    "fracture": Phrases(
        label="Fracture",
        fields=lambda f: {"side": f.side, "nth": _NTH[f.rib]},
        unc=(
            ("possible nondisplaced fracture of the {side} {nth} rib.", "{L}:unc"),
            ("a {side} {nth} rib fracture cannot be excluded.", "{L}:unc"),
        ),
        pos=(
            ("acute fracture of the {side} {nth} posterior rib.", "{L}:pos"),
            ("nondisplaced fracture of the {side} {nth} rib.", "{L}:pos"),
            ("there is a minimally displaced {side} {nth} rib fracture.", "{L}:pos"),
        ),
    ),
    "pleural_other": Phrases(
        label="Pleural Other",
        fields=lambda f: {"side": f.side, "loc": f.location},
        unc=(("possible {side} {loc} pleural thickening.", "{L}:unc", _OTHER_UNC),),
        pos=(
            ("{side} {loc} pleural thickening.", "{L}:pos", _OTHER_POS),
            ("there is {side} {loc} pleural thickening.", "{L}:pos", _OTHER_POS),
        ),
    ),
}
_NO_STABLE_WORDING = ("fracture", "pleural_other")  # no `stable` wording: stated when unchanged


def describe(f: Finding, rng: Rng) -> Sentence:
    """A sentence stating a present finding: hedged or unchanged ones take the UNC wording (`phrase`),
    whose tags, not the certainty drawn at, give the labels."""
    cert = UNC if f.hedged or (f.status == "stable" and f.name not in _NO_STABLE_WORDING) else POS
    return phrase(PHRASES[f.name], f, rng, cert)
