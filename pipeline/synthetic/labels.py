"""Label rows computed from the tagged mentions of the labelled section, by CheXpert's and NegBio's rules.

`MENTION_PATTERNS` is the keyword view of the same vocabulary: the tests use it to prove that every
observation word the generator writes into a labelled section carries a tag, so a correct rule labeler
can reproduce these files from the text alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pipeline.mimic.schema import PATHOLOGY_LABELS
from pipeline.synthetic.sentence import NEG, OTHER, POS, UNC, Sentence

VALUE = {POS: 1.0, NEG: 0.0, UNC: -1.0}

MENTION_PATTERNS: dict[str, str] = {
    "Atelectasis": r"atelecta|\bcollapse",
    "Cardiomegaly": r"cardiomegaly|\bheart\b|cardiac (?:silhouette|enlargement|size|contour|shadow)",
    "Consolidation": r"consolidat",
    "Edema": r"edema|\bchf\b|heart failure|vascular congestion|pulmonary congestion|indistinct",
    "Enlarged Cardiomediastinum": r"mediastin|\bcontours?\b",
    "Fracture": r"fracture",
    "Lung Lesion": r"(?<!calcified )nodul|\bmass(?:es)?\b|tumou?r|neoplasm|carcinoma|cavitary lesion",
    "Lung Opacity": r"opaci|infiltrat|air-?\s?space disease|increased density|reticula|(?<!pleural )\bscar",
    "Pleural Effusion": r"(?<!pericardial )effusion|pleural fluid",
    "Pleural Other": r"pleural thickening|fibrothorax|pleural scar|fibrosis",
    "Pneumonia": r"pneumonia|infection|infectious",
    "Pneumothorax": r"pneumothora",
    "Support Devices": r"\bpacer|\blines?\b|\bpicc\b|\btubes?\b|valve|catheter|pacemaker|hardware|device|"
    r"\bdrain|\bplate|screw|cannula|apparatus|\bcoil|support|equipment|mediport|\bicd\b|defib",
    OTHER: r"emphysema|scoliosis|hyperinfla|granuloma|calcifi|hernia|degenera|blunt|thickening|density|"
    r"fissure|deformity|volume loss|kyphosis|osteopenia|elevation",
}


def mentioned(text: str) -> set[str]:
    """Observations whose keywords occur in `text` (the check the tests run on every labelled sentence)."""
    low = text.lower()
    found = {obs for obs, pat in MENTION_PATTERNS.items() if re.search(pat, low)}
    if re.search(r"calcified nodul", low):
        found.discard("Lung Lesion")
    return found


def aggregate_chexpert(certainties: set[str]) -> float | None:
    """{neg, unc} → unc (checked first), {neg, pos} → pos, {unc, pos} → pos, single value, none → blank."""
    if not certainties:
        return None
    if NEG in certainties and UNC in certainties:
        return VALUE[UNC]
    if POS in certainties:
        return VALUE[POS]
    return VALUE[next(iter(certainties))]


def aggregate_negbio(certainties: set[str]) -> float | None:
    """As CheXpert, except that {neg, unc} → neg."""
    if NEG in certainties and UNC in certainties:
        return VALUE[NEG]
    return aggregate_chexpert(certainties)


def _mentions(sentences: Iterable[Sentence]) -> tuple[dict[str, set[str]], bool]:
    per_obs: dict[str, set[str]] = {}
    no_finding = True
    for sentence in sentences:
        for obs, cert in sentence.mentions:
            per_obs.setdefault(obs, set()).add(cert)
            if obs != "Support Devices" and cert in (POS, UNC):
                no_finding = False
    return per_obs, no_finding


def _row(per_obs: dict[str, set[str]], no_finding: bool, agg) -> dict[str, float | None]:
    empty: set[str] = set()
    row: dict[str, float | None] = {obs: agg(per_obs.get(obs, empty)) for obs in PATHOLOGY_LABELS}
    row["No Finding"] = 1.0 if no_finding else None
    return row


def label_row(sentences: Iterable[Sentence], negbio: bool = False) -> dict[str, float | None]:
    """The 14 labels of one study from the mentions of its labelled section."""
    return _row(*_mentions(sentences), aggregate_negbio if negbio else aggregate_chexpert)


def label_rows(sentences: Iterable[Sentence]) -> tuple[dict[str, float | None], dict[str, float | None]]:
    """CheXpert and NegBio rows from one pass over the mentions."""
    per_obs, no_finding = _mentions(sentences)
    return _row(per_obs, no_finding, aggregate_chexpert), _row(per_obs, no_finding, aggregate_negbio)
