from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.errors import PipelineError
from pipeline.mimic import schema
from pipeline.studies import (
    REJECT_REASONS,
    STUDY_COLUMNS,
    StudiesParams,
    TextPolicy,
    ViewPolicy,
    assemble_studies,
)


def dicom(n: int) -> str:
    return "-".join(f"{n:08x}" for _ in range(5))


class Release:
    """A tiny release built row by row: images, reports and labels."""

    def __init__(self) -> None:
        self.meta: list[dict] = []
        self.split: list[dict] = []
        self.sections: list[dict] = []
        self.labels: list[dict] = []
        self.n = 0

    def image(
        self, subject: int, study: int, view: str, split: str = "train", meta=True, in_split=True
    ) -> str:
        self.n += 1
        d = dicom(self.n)
        if meta:
            self.meta.append(
                {
                    "dicom_id": d, "subject_id": subject, "study_id": study,
                    "PerformedProcedureStepDescription": "CHEST (PA AND LAT)", "ViewPosition": view,
                    "Rows": 300, "Columns": 250, "StudyDate": 21500101, "StudyTime": 80556.875,
                    "ProcedureCodeSequence_CodeMeaning": "", "ViewCodeSequence_CodeMeaning": "",
                    "PatientOrientationCodeSequence_CodeMeaning": "",
                }
            )  # fmt: skip
        if in_split:
            self.split.append({"dicom_id": d, "study_id": study, "subject_id": subject, "split": split})
        return d

    def report(self, subject: int, study: int, findings="Lungs clear.", impression="Normal.", status="ok"):
        self.sections.append(
            {
                "study_id": study, "subject_id": subject, "status": status, "findings": findings,
                "impression": impression, "last_paragraph": None,
            }
        )  # fmt: skip

    def label(self, subject: int, study: int, **values: float):
        row = {"subject_id": subject, "study_id": study} | dict.fromkeys(schema.LABEL_COLUMNS, np.nan)
        row.update({k.replace("_", " "): v for k, v in values.items()})
        self.labels.append(row)

    def study(self, subject: int, study: int, views=("PA", "LATERAL"), split="train", **kw) -> None:
        for v in views:
            self.image(subject, study, v, split)
        self.report(subject, study, **kw)

    def assemble(self, params: StudiesParams | None = None, image_list=None):
        meta = pd.DataFrame(self.meta, columns=schema.METADATA_COLUMNS)
        split = pd.DataFrame(self.split, columns=schema.SPLIT_COLUMNS)
        sections = pd.DataFrame(self.sections)
        labels = pd.DataFrame(self.labels, columns=schema.LABEL_FILE_COLUMNS)
        return assemble_studies(
            meta, split, sections, labels, params or StudiesParams(), image_list=image_list
        )


def all_ids(tables) -> list[int]:
    out = [int(s) for f in tables.splits.values() for s in f["study_id"]]
    return sorted(out + tables.rejects["study_id"].astype(int).tolist())


def reason_of(tables, study: int) -> str:
    row = tables.rejects.loc[tables.rejects["study_id"] == study]
    assert len(row) == 1, f"study {study} not rejected exactly once"
    return row["reason"].iloc[0]


def test_row_contract_and_view_order():
    r = Release()
    r.image(10000001, 50000001, "LATERAL")
    r.image(10000001, 50000001, "AP")
    r.image(10000001, 50000001, "PA")
    r.image(10000001, 50000001, "LL")
    r.report(10000001, 50000001)
    r.label(10000001, 50000001, Cardiomegaly=1.0, Edema=-1.0, Pneumothorax=0.0)
    t = r.assemble()
    row = t.splits["train"].iloc[0]
    assert list(t.splits["train"].columns) == STUDY_COLUMNS
    assert row["view_names"] == "PA;AP;LATERAL;LL"
    paths = row["image_paths"].split(";")
    assert len(paths) == 4 and all(p.startswith("files/p10/p10000001/s50000001/") for p in paths)
    assert paths[0].endswith(dicom(3) + ".jpg")
    assert row["n_images"] == 4 and row["split"] == "train"
    assert row["Cardiomegaly"] == 1.0 and row["Edema"] == -1.0 and row["Pneumothorax"] == 0.0
    assert np.isnan(row["Atelectasis"])


def test_every_study_accounted_for_with_its_reason():
    r = Release()
    r.study(10000001, 50000001)  # ok
    r.study(10000002, 50000002, views=("LATERAL",))  # no_frontal
    r.study(10000003, 50000003, findings=None, impression=None)  # insufficient_text
    r.study(10000004, 50000004, status="empty", findings=None, impression=None)  # empty_report
    r.study(10000005, 50000005, status="binary", findings=None, impression=None)  # unreadable_report
    for v in ("PA",):
        r.image(10000006, 50000006, v)  # no_report
    r.image(10000007, 50000007, "PA", meta=False)  # no_metadata
    r.image(10000008, 50000008, "PA", in_split=False)  # not_in_split
    r.report(10000008, 50000008)
    d = r.image(10000009, 50000009, "PA")
    r.meta.append(dict(r.meta[-1], Rows=999))  # duplicate_dicom (conflicting rows)
    r.report(10000009, 50000009)
    r.image(10000010, 50000010, "PA", split="train")
    r.image(10000010, 50000010, "LATERAL", split="test")  # conflicting_ids
    r.report(10000010, 50000010)
    r.study(10000011, 50000011)
    r.sections[-1]["subject_id"] = 10000099  # report under another subject
    assert d
    t = r.assemble()
    expected = {
        50000002: "no_frontal", 50000003: "insufficient_text", 50000004: "empty_report",
        50000005: "unreadable_report", 50000006: "no_report", 50000007: "no_metadata",
        50000008: "not_in_split", 50000009: "duplicate_dicom", 50000010: "conflicting_ids",
        50000011: "conflicting_ids",
    }  # fmt: skip
    for study, reason in expected.items():
        assert reason_of(t, study) == reason
    assert t.splits["train"]["study_id"].tolist() == [50000001]
    assert all_ids(t) == sorted([50000001, *expected])
    assert set(t.rejects["reason"]) <= set(REJECT_REASONS)
    assert t.summary["rejected_studies"] == len(expected)
    assert t.rejects.loc[t.rejects["study_id"] == 50000008, "split"].item() == ""
    assert t.rejects.loc[t.rejects["study_id"] == 50000002, "split"].item() == "train"


def test_exact_duplicate_rows_are_dropped_not_rejected():
    r = Release()
    r.study(10000001, 50000001)
    r.meta.append(dict(r.meta[0]))
    r.split.append(dict(r.split[0]))
    t = r.assemble()
    assert t.splits["train"]["n_images"].tolist() == [2]
    assert t.summary["counts"]["duplicate_metadata_rows_dropped"] == 1
    assert t.summary["counts"]["duplicate_split_rows_dropped"] == 1


def test_view_policy_options():
    r = Release()
    r.study(10000001, 50000001, views=("PA", "LATERAL", "", "SWIMMERS", "AP"))
    r.study(10000002, 50000002, views=("LATERAL", "LL"))
    t = r.assemble(StudiesParams(views=ViewPolicy(require_frontal=False, include_other=True, max_images=4)))
    rows = t.splits["train"].set_index("study_id")
    assert rows.loc[50000001, "view_names"] == "PA;AP;LATERAL;SWIMMERS"
    assert rows.loc[50000002, "view_names"] == "LATERAL;LL"
    assert t.summary["counts"]["images_over_max_images"] == 1
    t = r.assemble(StudiesParams(views=ViewPolicy(include_lateral=False)))
    assert t.splits["train"]["view_names"].tolist() == ["PA;AP"]
    assert reason_of(t, 50000002) == "no_frontal"
    t = r.assemble(StudiesParams(views=ViewPolicy(require_frontal=False, include_lateral=False)))
    assert reason_of(t, 50000002) == "no_usable_view"


@pytest.mark.parametrize(
    ("require", "kept"),
    [("either", [1, 2, 3]), ("findings", [1, 2]), ("impression", [1, 3]), ("both", [1])],
)
def test_text_policy(require, kept):
    r = Release()
    r.study(10000001, 50000001)
    r.study(10000002, 50000002, impression=None)
    r.study(10000003, 50000003, findings=None)
    r.study(10000004, 50000004, findings=None, impression=None)
    t = r.assemble(StudiesParams(text=TextPolicy(require=require)))
    assert t.splits["train"]["study_id"].tolist() == [50000000 + k for k in kept]
    assert all_ids(t) == [50000001, 50000002, 50000003, 50000004]


def test_image_list_and_absolute_paths(tmp_path):
    r = Release()
    r.study(10000001, 50000001)
    r.study(10000002, 50000002)
    listed = {schema.image_relpath(10000001, 50000001, dicom(1))}
    t = r.assemble(image_list=listed)
    assert t.splits["train"]["view_names"].tolist() == ["PA"]
    assert reason_of(t, 50000002) == "no_listed_image"
    meta = pd.DataFrame(r.meta, columns=schema.METADATA_COLUMNS)
    split = pd.DataFrame(r.split, columns=schema.SPLIT_COLUMNS)
    t = assemble_studies(
        meta, split, pd.DataFrame(r.sections), pd.DataFrame(columns=schema.LABEL_FILE_COLUMNS),
        StudiesParams(path_style="absolute"), mimic_root=tmp_path,
    )  # fmt: skip
    first = t.splits["train"]["image_paths"].iloc[0].split(";")[0]
    assert first.startswith(str(tmp_path.resolve()) + "/files/p10/")
    assert t.summary["counts"]["studies_without_label_row"] == 2


def test_splits_go_to_their_own_tables():
    r = Release()
    r.study(10000001, 50000001, split="train")
    r.study(10000002, 50000002, split="validate")
    r.study(10000003, 50000003, split="test")
    t = r.assemble()
    assert {s: f["study_id"].tolist() for s, f in t.splits.items()} == {
        "train": [50000001],
        "validate": [50000002],
        "test": [50000003],
    }


def test_unknown_views_are_counted_and_treated_as_other():
    r = Release()
    r.study(10000001, 50000001, views=("PA", "WEIRD VIEW", "lateral"))
    t = r.assemble(StudiesParams(views=ViewPolicy(include_other=True)))
    assert t.splits["train"]["view_names"].item() == "PA;LATERAL;WEIRD VIEW"
    assert t.summary["counts"]["images_with_unrecognised_view"] == 1
    t = r.assemble()
    assert t.splits["train"]["view_names"].item() == "PA;LATERAL"
    assert t.summary["counts"]["images_excluded_by_view_policy"] == 1


def test_cli_one_liners_name_the_problem(tmp_path, capsys):
    """`medprobclip studies`: a bad option and a damaged release file each give one line naming it."""
    from pipeline.cli import main
    from pipeline.synthetic.generate import SynthesizeParams, synthesize

    synthesize(SynthesizeParams(n_patients=4, images=False, workers=1), tmp_path / "src")
    root, reports = tmp_path / "src/mimic-cxr-jpg/2.1.0", tmp_path / "src/mimic-cxr-reports"
    argv = [
        "studies",
        "--mimic-root",
        str(root),
        "--reports-root",
        str(reports),
        "--out",
        str(tmp_path / "o"),
    ]
    assert main([*argv, "--workers", "-1"]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err == "error: medprobclip studies: --workers must be 0 (all cores) or a number of processes, got -1"
    )
    label_file = root / schema.CHEXPERT_FILE
    label_file.write_bytes(label_file.read_bytes()[:100])
    assert main([*argv, "--workers", "1"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(err) == 1 and str(label_file) in err[0] and "truncated or corrupt" in err[0], err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_a_patient_in_two_splits_is_an_error_naming_them():
    r = Release()
    r.study(10000001, 50000001, split="train")
    r.study(10000001, 50000002, split="test")
    r.study(10000002, 50000003, split="train")
    with pytest.raises(
        PipelineError, match=r"1 patient\(s\) in more than one split: 10000001 \(test, train\)"
    ):
        r.assemble()
