"""The labeler's table API, aggregation variants, bad input, the CSV interface and agreement metrics."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from pipeline.mimic import schema
from pipeline.mimic.labeler import (
    agreement,
    agreement_table,
    choose_label_section,
    choose_label_text,
    label_csv,
    label_reports,
    label_text,
)
from pipeline.mimic.labeler.__main__ import main as cli_main
from pipeline.mimic.labeler.aggregate import create_resolution_table

REPORTS = [
    "No acute cardiopulmonary process.",
    "Small left pleural effusion. No pneumothorax.",
    "No effusion. Possible small effusion on the left.",
    "Moderate cardiomegaly with mild pulmonary edema. Endotracheal tube in place.",
    "Right lower lobe opacity may represent pneumonia.",
]


def test_label_reports_columns_values_and_index() -> None:
    texts = pd.Series(REPORTS, index=[50000001, 50000002, 50000003, 50000004, 50000005])
    frame = label_reports(texts)
    assert list(frame.columns) == schema.LABEL_COLUMNS
    assert list(frame.index) == list(texts.index)
    assert (frame.dtypes == np.float64).all()
    values = frame.to_numpy()
    assert np.isin(values[~np.isnan(values)], [1.0, 0.0, -1.0]).all()
    assert set(frame["No Finding"].dropna()) <= {1.0}
    assert frame.loc[50000001, "No Finding"] == 1.0
    assert frame.loc[50000002, ["Pleural Effusion", "Pneumothorax"]].tolist() == [1.0, 0.0]
    assert frame.loc[50000004, ["Cardiomegaly", "Edema", "Support Devices"]].tolist() == [1.0, 1.0, 1.0]
    assert frame.loc[50000005, "Pneumonia"] == -1.0


def test_negbio_resolves_negative_and_uncertain_to_negative() -> None:
    chexpert = label_reports(REPORTS, aggregation="chexpert")
    negbio = label_reports(REPORTS, aggregation="negbio")
    assert chexpert.loc[2, "Pleural Effusion"] == -1.0
    assert negbio.loc[2, "Pleural Effusion"] == 0.0
    other = [c for c in schema.LABEL_COLUMNS if c != "Pleural Effusion"]
    pd.testing.assert_frame_equal(chexpert[other], negbio[other])


def test_resolution_tables() -> None:
    pos, neg, unc = 1, 2, 4
    chexpert, negbio = create_resolution_table("chexpert"), create_resolution_table("negbio")
    assert math.isnan(chexpert[0]) and math.isnan(negbio[0])
    assert [chexpert[m] for m in (pos, neg, unc)] == [1.0, 0.0, -1.0]
    assert chexpert[neg | unc] == -1.0 and negbio[neg | unc] == 0.0
    assert chexpert[pos | neg] == 1.0 and chexpert[pos | unc] == 1.0
    assert chexpert[pos | neg | unc] == -1.0 and negbio[pos | neg | unc] == 0.0
    with pytest.raises(ValueError, match="aggregation"):
        create_resolution_table("majority")
    with pytest.raises(ValueError, match="aggregation"):
        label_reports(["x"], aggregation="majority")


def test_workers_give_identical_labels() -> None:
    texts = [REPORTS[i % len(REPORTS)] + f" Study {i}." for i in range(4500)]
    serial = label_reports(texts, workers=1)
    parallel = label_reports(texts, workers=2)
    pd.testing.assert_frame_equal(serial, parallel)
    assert serial.attrs["labeler"]["reports"] == 4500


def test_bad_input_never_crashes_and_is_counted() -> None:
    big = ("Small left pleural effusion. " * 40000)[: 1 << 20]
    texts = [
        "",
        "   \n \n  ",
        None,
        b"No pneumothorax. \xff\xfe effusion",
        big,
        "no effusion no pneumothorax",
    ]
    frame = label_reports(texts)
    stats = frame.attrs["labeler"]
    assert stats["empty"] == 3 and stats["non_utf8"] == 1
    assert frame.iloc[0:3].isna().all().all()
    assert frame.iloc[3][["Pneumothorax", "Pleural Effusion"]].tolist() == [0.0, 1.0]
    assert frame.iloc[4]["Pleural Effusion"] == 1.0
    assert frame.iloc[5][["Pleural Effusion", "Pneumothorax", "No Finding"]].tolist() == [0.0, 0.0, 1.0]
    with pytest.raises(TypeError, match="str or bytes"):
        label_reports([12345])


def test_text_without_punctuation_keeps_scopes_bounded() -> None:
    filler = "the patient is status post surgery in the interval with the study compared to the prior exam "
    text = "no pneumothorax " + filler + "bibasilar atelectasis " + filler + "heart size normal"
    labels = dict(zip(schema.LABEL_COLUMNS, label_text(text), strict=True))
    assert labels["Pneumothorax"] == 0.0
    assert labels["Atelectasis"] == 1.0
    assert labels["Cardiomegaly"] == 0.0


def test_choose_label_text_order_and_blanks() -> None:
    assert choose_label_text("F", "I", "L") == "I"
    assert choose_label_text("F", "  ", "L") == "F"
    assert choose_label_text(None, None, "L") == "L"
    assert choose_label_text(None, float("nan"), None) == ""
    assert choose_label_text("F", "I", "L", order=("findings", "impression")) == "F"
    assert choose_label_section(None, None, "L") == ("last_paragraph", "L")
    assert choose_label_section(None, None, None) == ("none", "")
    with pytest.raises(ValueError, match="unknown section"):
        choose_label_text("F", "I", "L", order=("conclusion",))


def test_label_csv_with_header_keeps_columns_and_orders_labels(tmp_path) -> None:
    source = tmp_path / "in.csv"
    pd.DataFrame({"id": ["a", "b"], "Report Impression": REPORTS[:2]}).to_csv(source, index=False)
    stats = label_csv(source, tmp_path / "out.csv")
    out = pd.read_csv(tmp_path / "out.csv")
    assert list(out.columns) == ["id", "Report Impression", *schema.CHEXPERT_ORDER]
    assert out["id"].tolist() == ["a", "b"]
    assert out.loc[1, "Pleural Effusion"] == 1.0 and math.isnan(out.loc[1, "No Finding"])
    assert stats["reports"] == 2


def test_label_csv_headerless_and_non_utf8(tmp_path) -> None:
    source = tmp_path / "reports.csv"
    source.write_bytes(b'"No pneumothorax."\n"Small effusion \xe9\xff."\n')
    stats = label_csv(source, tmp_path / "out.csv", text_column="Reports")
    out = pd.read_csv(tmp_path / "out.csv")
    assert out["Reports"].tolist()[0] == "No pneumothorax."
    assert out.loc[0, "Pneumothorax"] == 0.0 and out.loc[1, "Pleural Effusion"] == 1.0
    assert stats["non_utf8"] >= 1


def test_label_csv_errors_are_actionable(tmp_path) -> None:
    source = tmp_path / "in.csv"
    pd.DataFrame({"a": ["x"], "b": ["y"]}).to_csv(source, index=False)
    with pytest.raises(ValueError, match="no column 'Report Impression'"):
        label_csv(source, tmp_path / "out.csv")
    with pytest.raises(FileNotFoundError):
        label_csv(tmp_path / "missing.csv", tmp_path / "out.csv")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    label_csv(empty, tmp_path / "out_empty.csv")
    assert list(pd.read_csv(tmp_path / "out_empty.csv").columns) == [
        "Report Impression",
        *schema.CHEXPERT_ORDER,
    ]


def test_cli_writes_labels_and_reports_errors(tmp_path, capsys) -> None:
    source = tmp_path / "in.csv"
    pd.DataFrame({"Report Impression": REPORTS}).to_csv(source, index=False)
    assert cli_main([str(source), str(tmp_path / "out.csv"), "--aggregation", "negbio"]) == 0
    assert len(pd.read_csv(tmp_path / "out.csv")) == len(REPORTS)
    assert cli_main([str(tmp_path / "nope.csv"), str(tmp_path / "out.csv")]) == 2
    assert "not found" in capsys.readouterr().err


def _labels(rows: list[list[float]], ids: list[int]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["Pneumonia"])
    frame.insert(0, "study_id", ids)
    return frame


def test_agreement_confusion_accuracy_and_macro_f1() -> None:
    nan = math.nan
    reference = _labels([[1.0], [0.0], [-1.0], [nan], [1.0], [nan]], [1, 2, 3, 4, 5, 9])
    predicted = _labels([[1.0], [0.0], [0.0], [nan], [-1.0], [1.0]], [5, 4, 3, 2, 1, 7])
    result = agreement(predicted, reference, labels=["Pneumonia"])
    assert result["n_studies"] == 5 and result["only_predicted"] == 1 and result["only_reference"] == 1
    entry = result["labels"]["Pneumonia"]
    # pairs (ref, pred) by study: 1:(1,-1) 2:(0,nan) 3:(-1,0) 4:(nan,0) 5:(1,1)
    assert entry["confusion"]["1"] == {"1": 1, "0": 0, "-1": 1, "blank": 0}
    assert entry["confusion"]["0"]["blank"] == 1 and entry["confusion"]["-1"]["0"] == 1
    assert entry["confusion"]["blank"]["0"] == 1
    assert entry["accuracy"] == pytest.approx(0.2)
    # F1: class 1 = 2*1/(2+1); 0, -1, blank have no true positives.
    assert entry["f1"]["1"] == pytest.approx(2 / 3, abs=1e-6)
    assert entry["macro_f1"] == pytest.approx((2 / 3) / 4, abs=1e-6)
    table = agreement_table(result)
    assert table.loc[0, "label"] == "Pneumonia" and table.loc[0, "n"] == 5


def test_agreement_perfect_and_absent_classes() -> None:
    frame = label_reports(REPORTS)
    frame.insert(0, "study_id", range(len(REPORTS)))
    result = agreement(frame, frame.copy())
    assert result["macro_f1_pathology"] == 1.0 and result["accuracy_mean"] == 1.0
    assert result["labels"]["Fracture"]["f1"]["1"] is None


def test_agreement_rejects_bad_values_and_duplicates() -> None:
    good = _labels([[1.0]], [1])
    with pytest.raises(ValueError, match="1, 0, -1 or blank"):
        agreement(_labels([[2.0]], [1]), good, labels=["Pneumonia"])
    with pytest.raises(ValueError, match="duplicate"):
        agreement(_labels([[1.0], [0.0]], [1, 1]), good, labels=["Pneumonia"])
    with pytest.raises(ValueError, match="lack columns"):
        agreement(good, good)
