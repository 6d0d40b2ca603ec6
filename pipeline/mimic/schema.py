"""Names and column layouts of the MIMIC-CXR-JPG 2.1.0 release (see data-facts.md).

One place for every file name and column list, shared by the readers, the generator and the synthetic
source so that the synthetic twin can never drift from what the readers accept.
"""

from __future__ import annotations

METADATA_FILE = "mimic-cxr-2.0.0-metadata.csv.gz"
SPLIT_FILE = "mimic-cxr-2.0.0-split.csv.gz"
CHEXPERT_FILE = "mimic-cxr-2.0.0-chexpert.csv.gz"
NEGBIO_FILE = "mimic-cxr-2.0.0-negbio.csv.gz"
TEST_SET_LABELED_FILE = "mimic-cxr-2.1.0-test-set-labeled.csv"
IMAGE_FILENAMES_FILE = "IMAGE_FILENAMES"
SHA256SUMS_FILE = "SHA256SUMS.txt"
LABEL_FILES = {"chexpert": CHEXPERT_FILE, "negbio": NEGBIO_FILE}

METADATA_COLUMNS = [
    "dicom_id",
    "subject_id",
    "study_id",
    "PerformedProcedureStepDescription",
    "ViewPosition",
    "Rows",
    "Columns",
    "StudyDate",
    "StudyTime",
    "ProcedureCodeSequence_CodeMeaning",
    "ViewCodeSequence_CodeMeaning",
    "PatientOrientationCodeSequence_CodeMeaning",
]
SPLIT_COLUMNS = ["dicom_id", "study_id", "subject_id", "split"]
SPLITS = ("train", "validate", "test")

# Column order of the shipped chexpert/negbio files (alphabetical, as released).
LABEL_COLUMNS = [
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Enlarged Cardiomediastinum",
    "Fracture",
    "Lung Lesion",
    "Lung Opacity",
    "No Finding",
    "Pleural Effusion",
    "Pleural Other",
    "Pneumonia",
    "Pneumothorax",
    "Support Devices",
]
LABEL_FILE_COLUMNS = ["subject_id", "study_id", *LABEL_COLUMNS]
# CheXpert's own order (the labeler's output order in the CheXpert tool).
CHEXPERT_ORDER = [
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Lesion",
    "Lung Opacity",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
]
PATHOLOGY_LABELS = [c for c in CHEXPERT_ORDER if c != "No Finding"]
LABEL_ALIASES = {"Airspace Opacity": "Lung Opacity"}
LABEL_VALUES = (1.0, 0.0, -1.0)

FRONTAL_VIEWS = ("PA", "AP")
LATERAL_VIEWS = ("LATERAL", "LL")
# Views seen in the release; anything else (and blank) is treated as "other" and counted.
RARE_VIEWS = (
    "PA LLD",
    "LAO",
    "RAO",
    "AP AXIAL",
    "AP LLD",
    "XTABLE LATERAL",
    "AP RLD",
    "SWIMMERS",
    "PA RLD",
    "LPO",
)
KNOWN_VIEWS = (*FRONTAL_VIEWS, *LATERAL_VIEWS, *RARE_VIEWS)

# The study CSV contract: MedProbCLIP's five columns, then ids and dates, then the 14 labels.
STUDY_CSV_COLUMNS = [
    "study_id",
    "image_paths",
    "view_names",
    "findings",
    "impression",
    "subject_id",
    "split",
    "study_date",
    "n_images",
    *LABEL_COLUMNS,
]


def subject_group(subject_id: int) -> str:
    """`p10` … `p19`: the first two digits of the subject id."""
    return f"p{str(subject_id)[:2]}"


def image_relpath(subject_id: int, study_id: int, dicom_id: str) -> str:
    """Image path relative to the MIMIC-CXR-JPG root."""
    return f"files/{subject_group(subject_id)}/p{subject_id}/s{study_id}/{dicom_id}.jpg"


def report_relpath(subject_id: int, study_id: int) -> str:
    """Report path relative to the reports root (the `.txt` sits next to the study's image folder)."""
    return f"files/{subject_group(subject_id)}/p{subject_id}/s{study_id}.txt"
