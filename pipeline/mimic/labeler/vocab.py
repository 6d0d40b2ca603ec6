"""Mention and unmention phrases per observation, written for chest radiograph reports.

Phrases are regular-expression fragments over *cleaned* text (lower case, single spaces, see
`rules.clean_text`). A mention that overlaps an unmention of the same observation is dropped, so the
unmention lists carry the look-alikes: "pericardial effusion" is not a pleural effusion, a "calcified
nodule" is not a lung lesion, "over the heart" says where something is, not how big the heart is.
`OTHER_FINDING` is not a label: its positive or uncertain mentions only suppress No Finding.
"""

from __future__ import annotations

import re

from pipeline.mimic.labeler.trie import trie_pattern

OTHER_FINDING = "Other Finding"
SUPPORT_DEVICES = "Support Devices"
CARDIOMEGALY = "Cardiomegaly"
NO_FINDING = "No Finding"

_SIDE = r"(?:(?:left|right|bilateral|bibasilar|basilar|apical|lower|upper|middle|lobe|small|tiny|large) )*"

MENTIONS: dict[str, tuple[str, ...]] = {
    "Atelectasis": (
        r"atelecta(?:sis|ses|tic|sis-like)",
        r"collapsed? (?:lung|lobe|segment)s?",
        r"(?:lobar|lobe|segmental|subsegmental|lung|lingular|basilar) collapse",
        r"collapse of the " + _SIDE + r"(?:lung|lobe|lingula)",
    ),
    "Cardiomegaly": (
        r"cardiomegaly",
        r"heart",
        r"heart size",
        r"size of the heart",
        r"cardiac (?:size|silhouette|contour|shadow|enlargement)",
        r"enlarge(?:d|ment of the) (?:heart|cardiac silhouette)",
        r"(?:biventricular|ventricular|atrial|left ventricular|right ventricular) enlargement",
        r"cardiac hypertrophy",
    ),
    "Enlarged Cardiomediastinum": (
        r"cardiomediastin(?:al|um)",
        r"cardio-mediastinal",
        r"mediastinum",
        r"mediastinal (?:and (?:hilar|cardiac) )?(?:silhouettes?|contours?|widening|width|enlargement|shadow|"
        r"configuration|size)",
        r"(?:cardiac|hilar) and mediastinal (?:silhouettes?|contours?)",
        r"wide(?:ned|ning) (?:of the )?(?:superior )?mediastinum",
        r"(?:widened|enlarged|wide|prominent) (?:superior )?mediastin(?:um|al contours?)",
    ),
    "Lung Lesion": (
        r"nodules?",
        r"masse?s?",
        r"mass-?like",
        r"lesions?",
        r"tumou?rs?",
        r"neoplasms?",
        r"neoplastic (?:process|disease)",
        r"carcinomas?",
        r"(?:lung|pulmonary) cancer",
        r"malignanc(?:y|ies)",
        r"cavitary (?:lesion|mass|nodule)s?",
        r"cavitation",
    ),
    "Lung Opacity": (
        r"opaci(?:ty|ties|fication|fications|fied)",
        r"densit(?:y|ies)",
        r"infiltrat(?:e|es|ion|ive)",
        r"air[- ]?space (?:disease|process|opacity|opacities|filling)",
        r"ground[- ]glass",
        r"haz(?:y|iness)",
        r"interstitial (?:markings?|opacit(?:y|ies)|pattern|abnormalit(?:y|ies)|disease|prominence|changes?)",
        r"reticula(?:r|tion|nodular)",
        r"scar(?:ring|s)?",
        r"parenchymal (?:scarring|abnormalit(?:y|ies)|disease)",
        r"(?:pulmonary|lung|interstitial) fibrosis",
    ),
    "Edema": (
        r"o?edema",
        r"o?edematous",
        r"chf",
        r"(?:congestive )?heart failure",
        r"(?:pulmonary|vascular|venous|hilar|perihilar) (?:vascular )?congestion",
        r"congestion",
        r"vascular (?:engorgement|redistribution|prominence|plethora)",
        r"(?:indistinct(?:ness)?|blurr(?:ing|ed)|engorged|prominent) (?:of the )?(?:pulmonary )?"
        r"(?:vessels|vasculature|vascular markings)",
        r"kerley b",
        r"(?:fluid|volume) overload",
    ),
    "Consolidation": (r"consolidat(?:ion|ions|ive|ed)",),
    "Pneumonia": (
        r"pneumonias?",
        r"bronchopneumonia",
        r"pneumonitis",
        r"pna",
        r"infections?",
        r"infectious (?:process|etiology|cause)",
        r"infected",
    ),
    "Pneumothorax": (r"pneumothora(?:x|ces)", r"hydropneumothora(?:x|ces)", r"ptx"),
    "Pleural Effusion": (
        r"effusions?",
        r"pleural fluid",
        r"hydrothora(?:x|ces)",
        r"hydropneumothora(?:x|ces)",
        r"ha?emothora(?:x|ces)",
        r"(?:layering|loculated|fissural|subpulmonic) fluid",
        r"fluid (?:in|within) the (?:\w+ )?(?:pleural space|fissures?)",
        r"blunt(?:ed|ing)(?: of)?(?: the)? " + _SIDE + r"(?:costophrenic|cp) (?:angles?|sulc(?:us|i))",
        r"(?:costophrenic|cp) (?:angles?|sulc(?:us|i)) (?:is |are )?(?:blunting|blunted)",
    ),
    "Pleural Other": (
        r"pleural (?:thickening|plaques?|calcifications?|scar(?:ring|s)?|fibrosis|abnormalit(?:y|ies))",
        r"fibrothorax",
        r"thickened pleura",
        r"pleural[- ]based (?:thickening|plaque)",
    ),
    "Fracture": (
        r"fractur(?:e|es|ed)",
        r"fx",
        r"compression deformit(?:y|ies)",
    ),
    "Support Devices": (
        r"(?:endotracheal|et|tracheostomy|trach|enteric|feeding|nasogastric|ng|og|orogastric|chest|"
        r"mediastinal|thoracostomy|gastrostomy|pigtail|drainage|dobhoff|dobbhoff|nasoenteric) tubes?",
        r"tubes?",
        r"(?:central venous|central|venous|picc|midline|swan[- ]ganz|pulmonary artery|arterial|dialysis|"
        r"hemodialysis|internal jugular|ij|subclavian|port) (?:lines?|catheters?)",
        r"lines?",
        r"catheters?",
        r"picc",
        r"pacemakers?",
        r"pacers?",
        r"(?:pacing|pacer|pacemaker|icd|aicd|cardiac) (?:leads?|wires?|device|generator)",
        r"leads?",
        r"a?icd",
        r"defibrillators?",
        r"port[- ]?a[- ]?cath",
        r"(?:chest|infusion|power) port",
        r"stents?",
        r"(?:prosthetic|replaced|mechanical) (?:aortic |mitral |tricuspid )?valves?",
        r"(?:aortic|mitral|tricuspid) valve (?:replacement|prosthesis|repair)",
        r"(?:sternotomy|sternal) wires?",
        r"wires?",
        r"drains?",
        r"(?:intra-?aortic )?balloon pump",
        r"iabp",
        r"(?:embolization )?coils?",
        r"(?:surgical )?clips",
        r"hardware",
        r"(?:loop )?recorder",
        r"devices?",
    ),
    OTHER_FINDING: (
        r"emphysema(?:tous)?",
        r"copd",
        r"chronic obstructive",
        r"hyperinflat(?:ion|ed)",
        r"hyperexpan(?:sion|ded)",
        r"bull(?:a|ae|ous)",
        r"scoliosis",
        r"kyphosis|kyphotic",
        r"granulom(?:a|as|ata|atous)",
        r"calcifi(?:ed|cation|cations)",
        r"(?:hiatal |hiatus )?hernias?",
        r"degenerat(?:ive|ion)",
        r"osteophyt(?:e|es|osis)",
        r"osteopeni(?:a|c)",
        r"spondylo(?:sis|tic)",
        r"atheroscleros(?:is|tic)|atherosclerotic",
        r"tortu(?:ous|osity)",
        r"elevat(?:ed|ion)(?: of)?(?: the)? (?:left |right )?(?:hemi-?)?diaphragms?",
        r"eventration",
        r"thicken(?:ing|ed)",
        r"cuffing",
        r"cephalization",
        r"volume loss",
        r"deformit(?:y|ies)",
        r"ha?ematomas?",
        r"ha?emorrhage",
        r"contusions?",
        r"bronchiectasis",
        r"bronchitis",
        r"asthma",
        r"airways? disease",
        r"plaques?",
        r"pneumomediastinum",
        r"pneumoperitoneum",
        r"free (?:intraperitoneal )?air",
        r"metasta(?:sis|ses|tic)",
        r"(?:lymph)?adenopathy",
        r"aspiration",
        r"air[- ]fluid levels?",
        r"dilat(?:ed|ation)",
        r"lucenc(?:y|ies)",
        # from CheXpert's no-finding list: abnormal, though none of the 13 observations
        r"bronchospasm",
        r"bronchiolitis",
        r"interstitial markings",
        r"aortic disease",
        r"osteodystrophy",
        r"inflam(?:mation|matory|ed)",
        r"fissures?",
        r"hypertension",
        r"prominen(?:ce|t)",
        r"blunt(?:ed|ing)",
        r"thoracentesis",
        r"radiopaque",
        r"aerophagia",
        r"arthropath(?:y|ies)",
        r"tracheostomy",
        r"bullets?",
        # common chest radiograph abnormalities of the same kind
        r"(?:low|diminished|decreased|reduced) lung volumes?",
        r"hypo(?:inflat|ventilat|aerat|expan)(?:ion|ed)",
        r"hyperaerat(?:ion|ed)",
        r"fibro(?:sis|tic)",
        r"(?:post-?operative|post-?surgical|surgical) changes?",
        r"cholecystectomy",
        r"syndesmophytes?",
        r"end-?plate",
        r"arthriti(?:s|c)",
        r"spurring",
        r"ectatic|ectasia",
        r"wedg(?:e|ing)",
        r"flatten(?:ed|ing)",
    ),
}

UNMENTIONS: dict[str, tuple[str, ...]] = {
    "Cardiomegaly": (
        r"(?:over|overlying|overlie|overlies|behind|through|projecting over|projects over|projected over|"
        r"anterior to|posterior to|below|above|along|at the level of) the (?:heart|cardiac silhouette)",
        r"heart (?:failure|border|borders|sounds?|valves?|disease|rate)",
    ),
    "Enlarged Cardiomediastinum": (
        r"mediastinal (?:drains?|tubes?|wires?|clips?|shift|lymph|lymphadenopathy|nodes?)",
        r"(?:within|into|in) the mediastinum",
    ),
    "Lung Lesion": (
        r"calcified (?:\w+ )?(?:nodul\w*|granulom\w*|lesions?|lymph nodes?)",
        r"mass effect",
        r"(?:nipple|skin|breast|soft tissue|chest wall|neck|mediastinal|adrenal|renal|liver|hepatic|"
        r"osseous|bone|bony|lytic|sclerotic|blastic|skeletal|vertebral|rib|spinal) (?:\w+ )?"
        r"(?:lesions?|masse?s?|nodul\w*)",
        r"nodul(?:e|ar) (?:shadow|densit\w*) (?:of|from) the nipples?",
    ),
    "Lung Opacity": (
        r"pleural scar(?:ring|s)?",
        r"(?:bone|mineral|soft[- ]tissue|breast|nipple|metallic|metal|radiopaque|surgical|osseous) densit\w*",
        r"(?:radio-?)?opaci(?:ty|ties) (?:of|from|related to|due to) "
        r"(?:the )?(?:nipples?|breasts?|skin|soft tissues?)",
        r"calcified (?:\w+ )?scar",
        r"densit(?:y|ies) of the (?:bones?|heart)",
    ),
    "Edema": (
        r"(?:soft[- ]tissue|subcutaneous|chest wall|scalp|extremity|bowel wall|mucosal|airway|laryngeal) "
        r"o?edema",
        r"(?:nasal|sinus) congestion",
    ),
    "Pleural Effusion": (
        r"pericardial (?:effusions?|fluid)",
        r"(?:joint|knee|abdominal|peritoneal) effusions?",
    ),
    "Pneumonia": (
        r"(?:urinary tract|line|catheter|wound|skin) infections?",
        # an old, healed or granulomatous infection is a sequela, not a pneumonia
        r"(?:prior|previous|old|remote|healed|past|granulomatous|tuberculous|tuberculosis|tb|"
        r"histoplasmosis|fungal|mycobacterial) (?:\w+ )?(?:infections?|infectious (?:process|disease))",
    ),
    "Fracture": (
        r"(?:fractured|fracture of the|broken) (?:sternal |sternotomy |pacer |pacemaker )?(?:wires?|leads?)",
    ),
    "Support Devices": (
        r"kerley b lines?",
        r"(?:pleural|septal|fissure|skin|skin fold|azygoesophageal|paraspinal|paratracheal|demarcation) "
        r"lines?",
        r"lines? of demarcation",
        r"in line with",
        r"(?:lead|leads) to",
        r"(?:eustachian|fallopian|bronchial) tubes?",
        r"tube (?:and|or) lines?",
    ),
    OTHER_FINDING: (r"(?:bone|mineral) densit\w*",),
}

# Mentions that are uncertain by nature unless negated (signs that suggest, not establish, the finding).
INHERENTLY_UNCERTAIN: tuple[str, ...] = (
    r"(?:pulmonary|vascular|venous|hilar|perihilar) (?:vascular )?congestion",
    r"congestion",
    r"vascular (?:engorgement|redistribution|prominence|plethora)",
    r"(?:indistinct(?:ness)?|blurr(?:ing|ed)|engorged|prominent) (?:of the )?(?:pulmonary )?"
    r"(?:vessels|vasculature|vascular markings)",
    r"blunt(?:ed|ing)(?: of)?(?: the)? " + _SIDE + r"(?:costophrenic|cp) (?:angles?|sulc(?:us|i))",
    r"(?:costophrenic|cp) (?:angles?|sulc(?:us|i)) (?:is |are )?(?:blunting|blunted)",
)

# A mention that only names the organ ("the heart", "cardiac silhouette") says nothing about its size:
# it counts only where its sentence describes one ("the heart is enlarged", "heart size is normal").
ORGAN_ONLY = {
    CARDIOMEGALY: re.compile(
        r"heart|heart size|size of the heart|cardiac (?:size|silhouette|contour|shadow)"
    ),
}
SIZE_WORDS = re.compile(
    r"\b(?:enlarg\w*|large|larger|big|bigger|increas\w*|prominen\w*|cardiomegaly|hypertroph\w*|dilat\w*|"
    r"globular|size|sized|mild|mildly|moderate|moderately|severe|severely|marked|markedly|massive|"
    r"massively|upper limits?|top|borderline)\b"
)

# Mention texts (cleaned) that also make Cardiomegaly uncertain when positive or uncertain.
HEART_FAILURE = re.compile(r"\b(?:chf|heart failure)\b")

OBSERVATIONS: tuple[str, ...] = tuple(MENTIONS)


def alternation(phrases: tuple[str, ...]) -> re.Pattern[str]:
    """One word-bounded regex per vocabulary, factored as a trie so each word is rejected in C quickly."""
    return re.compile(r"\b" + trie_pattern(sorted(set(phrases))) + r"\b")


def compile_vocabulary() -> tuple[tuple[str, re.Pattern[str], re.Pattern[str] | None], ...]:
    """(observation, mention regex, unmention regex or None) for every observation, in a fixed order."""
    return tuple(
        (obs, alternation(MENTIONS[obs]), alternation(UNMENTIONS[obs]) if obs in UNMENTIONS else None)
        for obs in OBSERVATIONS
    )


INHERENTLY_UNCERTAIN_RE = re.compile(r"(?:" + "|".join(INHERENTLY_UNCERTAIN) + r")")
