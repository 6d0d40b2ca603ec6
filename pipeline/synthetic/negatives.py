"""Pertinent negatives and mention-free normal statements, the bulk of real report text.

Tagged as CheXpert reads them: "no new consolidation" / "no new opacities" are uncertain, not negative.
"""

from __future__ import annotations

from pipeline.synthetic.rng import Rng
from pipeline.synthetic.sentence import Sentence, pick, sent

_NEG: dict[str, list[Sentence]] = {
    "effusion+pneumothorax": [
        sent("no pleural effusion or pneumothorax.", "Pleural Effusion:neg", "Pneumothorax:neg"),
        sent("there is no pleural effusion or pneumothorax.", "Pleural Effusion:neg", "Pneumothorax:neg"),
        sent("no pneumothorax or pleural effusion.", "Pneumothorax:neg", "Pleural Effusion:neg"),
        sent("no pleural effusion or pneumothorax is seen.", "Pleural Effusion:neg", "Pneumothorax:neg"),
    ],
    "consolidation+effusion+pneumothorax": [
        sent(
            "the lungs are clear without focal consolidation, effusion, or pneumothorax.",
            "Consolidation:neg",
            "Pleural Effusion:neg",
            "Pneumothorax:neg",
        ),
        sent(
            "no focal consolidation, pleural effusion, or pneumothorax.",
            "Consolidation:neg",
            "Pleural Effusion:neg",
            "Pneumothorax:neg",
        ),
        sent(
            "there is no focal consolidation, pleural effusion or pneumothorax.",
            "Consolidation:neg",
            "Pleural Effusion:neg",
            "Pneumothorax:neg",
        ),
    ],
    "cardiomegaly+mediastinum": [
        sent(
            "heart size and mediastinal contours are normal.",
            "Cardiomegaly:neg",
            "Enlarged Cardiomediastinum:neg",
        ),
        sent(
            "the heart size is normal. The mediastinal and hilar contours are normal.",
            "Cardiomegaly:neg",
            "Enlarged Cardiomediastinum:neg",
        ),
    ],
    "effusion": [
        sent("no pleural effusion.", "Pleural Effusion:neg"),
        sent("there is no pleural effusion.", "Pleural Effusion:neg"),
        sent("no large pleural effusion.", "Pleural Effusion:neg"),
    ],
    "pneumothorax": [
        sent("no pneumothorax.", "Pneumothorax:neg"),
        sent("there is no pneumothorax.", "Pneumothorax:neg"),
        sent("no evidence of pneumothorax.", "Pneumothorax:neg"),
    ],
    "consolidation": [
        sent("no focal consolidation.", "Consolidation:neg"),
        sent("there is no focal consolidation.", "Consolidation:neg"),
        # "no new X" is uncertainty in CheXpert (pre-negation patterns), so a pertinent negative it is not
        sent("no new consolidation.", "Consolidation:unc"),
    ],
    "pneumonia": [
        sent("no evidence of pneumonia.", "Pneumonia:neg"),
        sent("there is no radiographic evidence of pneumonia.", "Pneumonia:neg"),
        sent("no pneumonia.", "Pneumonia:neg"),
    ],
    "edema": [
        sent("no pulmonary edema.", "Edema:neg"),
        sent("there is no pulmonary vascular congestion or edema.", "Edema:neg", "Edema:neg"),
        sent("no evidence of pulmonary edema.", "Edema:neg"),
    ],
    "cardiomegaly": [
        sent("heart size is normal.", "Cardiomegaly:neg"),
        sent("the heart is normal in size.", "Cardiomegaly:neg"),
        sent("no cardiomegaly.", "Cardiomegaly:neg"),
        sent("the heart is not enlarged.", "Cardiomegaly:neg"),
    ],
    "mediastinum": [
        sent("the cardiomediastinal silhouette is normal.", "Enlarged Cardiomediastinum:neg"),
        sent("mediastinal and hilar contours are unremarkable.", "Enlarged Cardiomediastinum:neg"),
        sent("the mediastinal contours are normal.", "Enlarged Cardiomediastinum:neg"),
    ],
    "fracture": [
        sent("no displaced fracture is seen.", "Fracture:neg"),
        sent("no acute rib fracture.", "Fracture:neg"),
    ],
    "lesion": [sent("no pulmonary nodules or masses.", "Lung Lesion:neg", "Lung Lesion:neg")],
    "atelectasis": [sent("no atelectasis.", "Atelectasis:neg")],
    "opacity": [sent("no new opacities.", "Lung Opacity:unc"), sent("no focal opacity.", "Lung Opacity:neg")],
    "pleural_other": [sent("no pleural thickening.", "Pleural Other:neg", "Other:neg")],
    "devices": [sent("no lines or tubes are present.", "Support Devices:neg", "Support Devices:neg")],
}

_CLEAR = [
    sent("the lungs are clear."),
    sent("lungs are well expanded and clear."),
    sent("the lungs are clear bilaterally."),
    sent("both lungs are clear."),
]
_BONES = [
    sent("no acute osseous abnormality."),
    sent("the osseous structures are unremarkable."),
    sent("bony structures are intact."),
    sent("the visualized upper abdomen is unremarkable."),
]
_NORMAL_IMPRESSION = [
    sent("no acute cardiopulmonary process."),
    sent("no acute cardiopulmonary abnormality."),
    sent("no acute intrathoracic process."),
    sent("normal chest radiograph."),
    sent("no radiographic evidence of acute cardiopulmonary disease."),
]
_EXTRA = [
    sent("no free air is seen below the right hemidiaphragm."),
    sent("the hila are unremarkable."),
    sent("the soft tissues of the chest wall are unremarkable."),
    sent("the trachea is midline."),
    sent("there is no acute osseous abnormality involving the thoracic cage."),
]
_TECHNICAL = [
    sent("lung volumes are low."),
    sent("the patient is slightly rotated."),
    sent("the study is limited by patient positioning."),
    sent("AP upright view of the chest."),
]


def negative(key: str, rng: Rng) -> Sentence:
    return pick(rng, _NEG[key])


def has_negative(key: str) -> bool:
    return key in _NEG


def lungs_clear(rng: Rng) -> Sentence:
    return pick(rng, _CLEAR)


def bones_normal(rng: Rng) -> Sentence:
    return pick(rng, _BONES)


def normal_impression(rng: Rng) -> Sentence:
    return pick(rng, _NORMAL_IMPRESSION)


def extra_normal(rng: Rng) -> Sentence:
    return pick(rng, _EXTRA)


def technical_note(rng: Rng) -> Sentence:
    return pick(rng, _TECHNICAL)


def non_ascii_note(rng: Rng) -> Sentence:
    """The real corpus has a handful of UTF-8 reports; downstream readers must survive them."""
    return pick(
        rng,
        [
            sent(f"the patient is rotated approximately {int(rng.integers(5, 20))}° to the right."),
            sent("outside films from the Hôpital ___ were reviewed."),
            sent("the right hemidiaphragm is seen at the T10–T11 level."),
        ],
    )
