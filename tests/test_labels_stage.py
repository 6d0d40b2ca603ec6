from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest

from pipeline.mimic import schema
from pipeline.mimic.labels import LabelsParams, build_labels, choose_text
from pipeline.mimic.readers import ReleaseFileError

SECTIONS = pd.DataFrame(
    {
        "study_id": [50000001, 50000002, 50000003, 50000004],
        "subject_id": [10000001, 10000002, 10000003, 10000004],
        "findings": ["Small left pleural effusion.", None, None, None],
        "impression": ["Mild cardiomegaly. No pneumothorax.", None, None, None],
        "last_paragraph": [None, "No acute cardiopulmonary process.", None, "Clear lungs."],
    }
)


def write_label_file(root, name: str, rows: dict[int, dict]) -> None:
    frame = pd.DataFrame(
        [
            {"subject_id": 10000000 + s % 10, "study_id": s} | dict.fromkeys(schema.LABEL_COLUMNS, np.nan) | v
            for s, v in rows.items()
        ],
        columns=schema.LABEL_FILE_COLUMNS,
    )
    (root / schema.LABEL_FILES[name]).write_bytes(gzip.compress(frame.to_csv(index=False).encode(), mtime=0))


def test_choose_text_follows_the_order():
    text, used = choose_text(SECTIONS, ("impression", "findings", "last_paragraph"))
    assert used.tolist() == ["impression", "last_paragraph", "none", "last_paragraph"]
    assert text.iloc[0] == "Mild cardiomegaly. No pneumothorax."
    _, used = choose_text(SECTIONS, ("findings",))
    assert used.tolist() == ["findings", "none", "none", "none"]


def test_rules_source_and_agreement(tmp_path):
    write_label_file(
        tmp_path,
        "chexpert",
        {50000001: {"Cardiomegaly": 1.0, "Pneumothorax": 0.0}, 50000002: {"No Finding": 1.0}},
    )
    write_label_file(tmp_path, "negbio", {50000001: {"Cardiomegaly": 1.0}, 50000002: {"No Finding": 1.0}})
    labels, metrics = build_labels(SECTIONS, tmp_path, LabelsParams(source="rules", workers=1))
    assert labels["study_id"].tolist() == [50000001, 50000002, 50000004]  # no text, no row
    row = labels.set_index("study_id").loc[50000001]
    assert row["Cardiomegaly"] == 1.0 and row["Pneumothorax"] == 0.0 and np.isnan(row["Pleural Effusion"])
    assert labels.set_index("study_id").loc[50000002, "No Finding"] == 1.0
    agree = metrics["agreement"]["rules_vs_chexpert"]
    assert agree["n_studies"] == 2 and agree["labels"]["Cardiomegaly"]["accuracy"] == 1.0
    assert metrics["agreement"]["rules_vs_negbio"]["labels"]["Pneumothorax"]["accuracy"] == 0.5
    assert metrics["label_counts"]["Cardiomegaly"] == {
        "positive": 1,
        "negative": 0,
        "uncertain": 0,
        "blank": 2,
    }


def test_shipped_source(tmp_path):
    write_label_file(tmp_path, "chexpert", {50000002: {"Edema": -1.0}, 50000001: {"Edema": 1.0}})
    labels, metrics = build_labels(SECTIONS, tmp_path, LabelsParams(source="chexpert", agreement=False))
    assert labels["study_id"].tolist() == [50000001, 50000002]
    assert list(labels.columns) == schema.LABEL_FILE_COLUMNS
    assert "agreement" not in metrics
    with pytest.raises(ReleaseFileError, match="label file not found.*rules"):
        build_labels(SECTIONS, tmp_path, LabelsParams(source="negbio"))
