"""Hand-written report sentences with the exact 14 labels the CheXpert logic gives them.

Each case lists only the non-blank labels; every other column must be blank. No Finding is written out
where it is expected (1.0), so its absence asserts suppression.
"""

from __future__ import annotations

import math

import pytest

from pipeline.mimic import schema
from pipeline.mimic.labeler import label_text

P, N, U = 1.0, 0.0, -1.0
NF = {"No Finding": P}

CASES: list[tuple[str, str, dict[str, float]]] = [
    # --- plain positives
    ("pos", "Small left pleural effusion.", {"Pleural Effusion": P}),
    ("pos", "Moderate cardiomegaly.", {"Cardiomegaly": P}),
    ("pos", "Bibasilar atelectasis.", {"Atelectasis": P}),
    ("pos", "Right lower lobe consolidation.", {"Consolidation": P}),
    ("pos", "Findings consistent with right lower lobe pneumonia.", {"Pneumonia": P}),
    ("pos", "Large right pneumothorax.", {"Pneumothorax": P}),
    ("pos", "Moderate pulmonary edema.", {"Edema": P}),
    ("pos", "Left upper lobe opacity.", {"Lung Opacity": P}),
    ("pos", "A 2 cm nodule in the right upper lobe.", {"Lung Lesion": P}),
    ("pos", "Spiculated mass in the left hilum.", {"Lung Lesion": P}),
    ("pos", "Acute fracture of the left seventh rib.", {"Fracture": P}),
    ("pos", "Right apical pleural thickening.", {"Pleural Other": P}),
    ("pos", "Widened mediastinum.", {"Enlarged Cardiomediastinum": P}),
    ("pos", "The heart is enlarged.", {"Cardiomegaly": P}),
    ("pos", "Likely right basilar atelectasis.", {"Atelectasis": P}),
    ("pos", "Hydropneumothorax at the right base.", {"Pneumothorax": P, "Pleural Effusion": P}),
    # --- support devices (do not suppress No Finding)
    ("devices", "Endotracheal tube terminates 4 cm above the carina.", {"Support Devices": P, **NF}),
    ("devices", "Right PICC line tip in the mid SVC.", {"Support Devices": P, **NF}),
    (
        "devices",
        "Left-sided pacemaker with leads in the right atrium and ventricle.",
        {"Support Devices": P, **NF},
    ),
    ("devices", "Nasogastric tube courses below the diaphragm.", {"Support Devices": P, **NF}),
    ("devices", "Pacemaker leads are in normal position.", {"Support Devices": P, **NF}),
    ("devices", "Median sternotomy wires are intact.", {"Support Devices": P, **NF}),
    ("devices", "The endotracheal tube has been removed.", {"Support Devices": N, **NF}),
    # --- simple negation
    ("neg", "No pleural effusion.", {"Pleural Effusion": N, **NF}),
    ("neg", "No pneumothorax.", {"Pneumothorax": N, **NF}),
    ("neg", "There is no focal consolidation.", {"Consolidation": N, **NF}),
    ("neg", "Without evidence of pneumonia.", {"Pneumonia": N, **NF}),
    ("neg", "No evidence of pulmonary edema.", {"Edema": N, **NF}),
    ("neg", "Heart size is normal.", {"Cardiomegaly": N, **NF}),
    ("neg", "Normal heart size.", {"Cardiomegaly": N, **NF}),
    (
        "neg",
        "The cardiomediastinal silhouette is within normal limits.",
        {"Enlarged Cardiomediastinum": N, **NF},
    ),
    ("neg", "Heart size is at the upper limits of normal.", {"Cardiomegaly": N, **NF}),
    ("neg", "The heart is not enlarged.", {"Cardiomegaly": N, **NF}),
    ("neg", "Pneumothorax is no longer seen.", {"Pneumothorax": N, **NF}),
    ("neg", "The left pleural effusion has resolved.", {"Pleural Effusion": N, **NF}),
    ("neg", "Interval resolution of the right lower lobe pneumonia.", {"Pneumonia": N, **NF}),
    ("neg", "Lungs are clear of consolidation.", {"Consolidation": N, **NF}),
    ("neg", "Negative for pneumothorax.", {"Pneumothorax": N, **NF}),
    ("neg", "Absence of pleural effusion.", {"Pleural Effusion": N, **NF}),
    ("neg", "No acute fracture is identified.", {"Fracture": N, **NF}),
    ("neg", "Pneumothorax is not seen.", {"Pneumothorax": N, **NF}),
    ("neg", "No definite focal opacity.", {"Lung Opacity": N, **NF}),
    # --- negation scope: lists
    ("list", "No pleural effusion or pneumothorax.", {"Pleural Effusion": N, "Pneumothorax": N, **NF}),
    (
        "list",
        "No pleural effusion, pneumothorax, or focal consolidation.",
        {"Pleural Effusion": N, "Pneumothorax": N, "Consolidation": N, **NF},
    ),
    (
        "list",
        "There is no evidence of pneumonia, pulmonary edema, or pneumothorax.",
        {"Pneumonia": N, "Edema": N, "Pneumothorax": N, **NF},
    ),
    ("list", "No effusion and no pneumothorax.", {"Pleural Effusion": N, "Pneumothorax": N, **NF}),
    ("list", "No pneumothorax, small left pleural effusion.", {"Pneumothorax": N, "Pleural Effusion": P}),
    ("list", "No effusion, pneumothorax is present.", {"Pleural Effusion": N, "Pneumothorax": P}),
    ("list", "Neither effusion nor pneumothorax.", {"Pleural Effusion": N, "Pneumothorax": N, **NF}),
    (
        "list",
        "The heart size, mediastinal contours, and hila are normal.",
        {"Cardiomegaly": N, "Enlarged Cardiomediastinum": N, **NF},
    ),
    ("list", "No focal consolidation to suggest pneumonia.", {"Consolidation": N, "Pneumonia": N, **NF}),
    # --- negation scope: terminators
    (
        "scope",
        "No pneumothorax, but there is a small right pleural effusion.",
        {"Pneumothorax": N, "Pleural Effusion": P},
    ),
    ("scope", "No effusion; there is mild bibasilar atelectasis.", {"Pleural Effusion": N, "Atelectasis": P}),
    ("scope", "No pneumothorax. Small left effusion.", {"Pneumothorax": N, "Pleural Effusion": P}),
    (
        "scope",
        "No pneumothorax, however a small effusion persists.",
        {"Pneumothorax": N, "Pleural Effusion": P},
    ),
    ("scope", "Cardiomegaly without pulmonary edema.", {"Cardiomegaly": P, "Edema": N}),
    ("scope", "Small left effusion, heart size normal.", {"Pleural Effusion": P, "Cardiomegaly": N}),
    ("scope", "Heart is enlarged but the lungs are normal.", {"Cardiomegaly": P}),
    ("scope", "No edema, which was present previously.", {"Edema": N, **NF}),
    ("scope", "Right lower lobe opacity, no pleural effusion.", {"Lung Opacity": P, "Pleural Effusion": N}),
    ("scope", "No pleural effusion and a small pneumothorax.", {"Pleural Effusion": N, "Pneumothorax": P}),
    # --- pre-negation uncertainty (double negation)
    ("pre", "Pneumonia cannot be excluded.", {"Pneumonia": U}),
    ("pre", "Cannot exclude a small left pleural effusion.", {"Pleural Effusion": U}),
    ("pre", "Early pneumonia is not excluded.", {"Pneumonia": U}),
    ("pre", "A small pneumothorax cannot be ruled out.", {"Pneumothorax": U}),
    ("pre", "We cannot rule out aspiration pneumonia.", {"Pneumonia": U}),
    ("pre", "Infection cannot be entirely excluded.", {"Pneumonia": U}),
    ("pre", "No new consolidation.", {"Consolidation": U}),
    ("pre", "No new focal opacity or effusion.", {"Lung Opacity": U, "Pleural Effusion": U}),
    # --- post-negation uncertainty
    ("post", "Possible small left pleural effusion.", {"Pleural Effusion": U}),
    ("post", "Findings suspicious for pneumonia.", {"Pneumonia": U}),
    ("post", "Opacity may represent atelectasis.", {"Lung Opacity": P, "Atelectasis": U}),
    (
        "post",
        "Right basilar opacity, atelectasis versus pneumonia.",
        {"Lung Opacity": P, "Atelectasis": U, "Pneumonia": U},
    ),
    ("post", "Atelectasis or pneumonia at the left base.", {"Atelectasis": U, "Pneumonia": U}),
    ("post", "Concern for pulmonary edema.", {"Edema": U}),
    ("post", "Small left effusion, if any.", {"Pleural Effusion": U}),
    ("post", "Stable cardiomediastinal silhouette.", {"Enlarged Cardiomediastinum": U}),
    ("post", "The cardiomediastinal silhouette is unchanged.", {"Enlarged Cardiomediastinum": U}),
    ("post", "Questionable nodule in the right lower lobe.", {"Lung Lesion": U}),
    ("post", "The left pleural effusion is not well visualized.", {"Pleural Effusion": U}),
    ("post", "The right costophrenic angle is not well visualized.", {**NF}),
    ("post", "Mild pulmonary vascular congestion.", {"Edema": U}),
    ("post", "Blunting of the left costophrenic angle.", {"Pleural Effusion": U}),
    ("post", "Borderline heart size.", {"Cardiomegaly": U}),
    ("post", "Differential diagnosis includes pneumonia.", {"Pneumonia": U}),
    ("post", "Pneumothorax is suspected.", {"Pneumothorax": U}),
    ("post", "No change in the small left pleural effusion.", {"Pleural Effusion": U}),
    # --- unmentions
    ("unmention", "No pericardial effusion.", {**NF}),
    ("unmention", "Small pericardial effusion.", {**NF}),
    ("unmention", "No pericardial or pleural effusion.", {"Pleural Effusion": N, **NF}),
    ("unmention", "Calcified nodule in the right upper lobe.", {}),
    ("unmention", "Opacity projecting over the heart.", {"Lung Opacity": P}),
    ("unmention", "Left apical pleural scarring.", {"Pleural Other": P}),
    ("unmention", "Nipple shadow in the left lower zone.", {**NF}),
    ("unmention", "Mild soft tissue edema of the chest wall.", {**NF}),
    ("unmention", "Kerley B lines are present.", {"Edema": P}),
    ("unmention", "Electrodes over the heart.", {**NF}),
    # --- No Finding suppression by other findings
    ("nofinding", "No acute cardiopulmonary process.", {**NF}),
    ("nofinding", "Lungs are clear.", {**NF}),
    ("nofinding", "Hyperinflated lungs consistent with emphysema.", {}),
    ("nofinding", "Moderate thoracic scoliosis.", {}),
    ("nofinding", "No emphysema.", {**NF}),
    ("nofinding", "Small hiatal hernia. No effusion.", {"Pleural Effusion": N}),
    ("nofinding", "Possible emphysema.", {}),
    # --- chf rule
    ("chf", "Findings consistent with CHF.", {"Edema": P, "Cardiomegaly": U}),
    ("chf", "Mild congestive heart failure.", {"Edema": P, "Cardiomegaly": U}),
    ("chf", "Possible heart failure.", {"Edema": U, "Cardiomegaly": U}),
    ("chf", "No evidence of CHF.", {"Edema": N, **NF}),
    ("chf", "Cardiomegaly with CHF.", {"Edema": P, "Cardiomegaly": P}),
    # --- aggregation conflicts within one report
    ("aggregate", "Small left effusion. No right effusion.", {"Pleural Effusion": P}),
    ("aggregate", "No effusion. Possible small effusion on the left.", {"Pleural Effusion": U}),
    ("aggregate", "Possible pneumonia. Right lower lobe pneumonia.", {"Pneumonia": P}),
    (
        "aggregate",
        "Right effusion. No left effusion. A tiny effusion cannot be excluded.",
        {"Pleural Effusion": U},
    ),
    ("aggregate", "No pneumothorax. No pneumothorax.", {"Pneumothorax": N, **NF}),
    # --- text shape
    ("shape", "no pleural effusion\nno pneumothorax", {"Pleural Effusion": N, "Pneumothorax": N, **NF}),
    ("shape", "SMALL LEFT PLEURAL EFFUSION", {"Pleural Effusion": P}),
    ("shape", "1. Small left effusion.\n \n2. No pneumothorax.", {"Pleural Effusion": P, "Pneumothorax": N}),
    ("shape", "Lungs are clear w/o effusion.", {"Pleural Effusion": N, **NF}),
    ("shape", "Effusion and/or atelectasis at the left base.", {"Pleural Effusion": U, "Atelectasis": U}),
]


def _expected(labels: dict[str, float]) -> list[float]:
    return [labels.get(name, math.nan) for name in schema.LABEL_COLUMNS]


@pytest.mark.parametrize(("family", "text", "labels"), CASES, ids=[f"{c[0]}:{c[1][:40]}" for c in CASES])
def test_sentence_labels(family: str, text: str, labels: dict[str, float]) -> None:
    got = dict(zip(schema.LABEL_COLUMNS, label_text(text), strict=True))
    want = dict(zip(schema.LABEL_COLUMNS, _expected(labels), strict=True))
    diff = {
        k: (got[k], want[k])
        for k in want
        if not (got[k] == want[k] or (got[k] != got[k] and want[k] != want[k]))
    }
    assert not diff, f"{text!r}: (got, want) {diff}"


def test_case_count_covers_every_family() -> None:
    families = {c[0] for c in CASES}
    assert len(CASES) >= 80
    assert {"neg", "list", "scope", "pre", "post", "unmention", "nofinding", "chf", "aggregate"} <= families
