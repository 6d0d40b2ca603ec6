from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest

from pipeline.mimic import readers, schema

DICOM = "02aa804e-bde0afdd-112c0b34-7bc16630-4e384014"


def meta_row(**kw) -> dict:
    row = {
        "dicom_id": DICOM, "subject_id": "10000032", "study_id": "50414267",
        "PerformedProcedureStepDescription": "CHEST (PA AND LAT)", "ViewPosition": "PA", "Rows": "3056",
        "Columns": "2544", "StudyDate": "21800506", "StudyTime": "213014.531",
        "ProcedureCodeSequence_CodeMeaning": "CHEST (PA AND LAT)", "ViewCodeSequence_CodeMeaning": "postero-anterior",
        "PatientOrientationCodeSequence_CodeMeaning": "Erect",
    }  # fmt: skip
    return row | kw


def write_gz(path, text: str) -> None:
    path.write_bytes(gzip.compress(text.encode("utf-8"), mtime=0))


def frame_text(rows: list[dict], columns: list[str], newline: str = "\n") -> str:
    return pd.DataFrame(rows, columns=columns).to_csv(index=False, lineterminator=newline)


def test_metadata_types_and_conventions(tmp_path):
    write_gz(
        tmp_path / schema.METADATA_FILE,
        frame_text([meta_row(), meta_row(ViewPosition="", StudyTime="80556.875")], schema.METADATA_COLUMNS),
    )
    m = readers.read_metadata(tmp_path)
    assert m["study_id"].dtype == "int64" and m["StudyDate"].tolist() == [21800506, 21800506]
    assert m["StudyTime"].tolist() == [213014.531, 80556.875]
    assert m["ViewPosition"].tolist() == ["PA", ""]


def test_crlf_and_bom_are_accepted(tmp_path):
    text = "\ufeff" + frame_text([meta_row()], schema.METADATA_COLUMNS, newline="\r\n")
    write_gz(tmp_path / schema.METADATA_FILE, text)
    assert readers.read_metadata(tmp_path)["dicom_id"].tolist() == [DICOM]


def test_missing_and_renamed_columns_name_the_problem(tmp_path):
    cols = [c if c != "ViewPosition" else "View Position" for c in schema.METADATA_COLUMNS]
    rows = [{("View Position" if k == "ViewPosition" else k): v for k, v in meta_row().items()}]
    write_gz(tmp_path / schema.METADATA_FILE, frame_text(rows, cols))
    with pytest.raises(
        readers.ReleaseFileError,
        match=r"missing column\(s\) 'ViewPosition' \(found 'View Position': renamed\?\)",
    ):
        readers.read_metadata(tmp_path)


def test_extra_columns_are_ignored(tmp_path):
    write_gz(
        tmp_path / schema.METADATA_FILE,
        frame_text([meta_row() | {"extra": "x"}], [*schema.METADATA_COLUMNS, "extra"]),
    )
    assert list(readers.read_metadata(tmp_path).columns) == schema.METADATA_COLUMNS


def test_truncated_gzip(tmp_path):
    data = gzip.compress(frame_text([meta_row()] * 200, schema.METADATA_COLUMNS).encode(), mtime=0)
    (tmp_path / schema.METADATA_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(readers.ReleaseFileError, match="truncated or corrupt.*SHA256SUMS"):
        readers.read_metadata(tmp_path)


@pytest.mark.parametrize("content", [b"", None])
def test_empty_or_missing_file(tmp_path, content):
    if content is not None:
        (tmp_path / schema.SPLIT_FILE).write_bytes(content)
    with pytest.raises(readers.ReleaseFileError, match="empty|not found"):
        readers.read_split(tmp_path)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("dicom_id", "not-a-dicom", "is not five dash-separated groups"),
        ("study_id", "5041426", "is not an 8-digit integer"),
        ("subject_id", "1000003x", "is not an 8-digit integer"),
        ("StudyDate", "2180-05-06", "is not an integer"),
        ("StudyTime", "21:30", "is not a number"),
    ],
)
def test_wrong_value_conventions(tmp_path, field, value, message):
    write_gz(
        tmp_path / schema.METADATA_FILE,
        frame_text([meta_row(), meta_row(**{field: value})], schema.METADATA_COLUMNS),
    )
    with pytest.raises(readers.ReleaseFileError, match=rf"row 3: .*{message}"):
        readers.read_metadata(tmp_path)


def test_split_values(tmp_path):
    rows = [
        {"dicom_id": DICOM, "study_id": "50414267", "subject_id": "10000032", "split": s}
        for s in ("train", "VALIDATE", "test")
    ]
    write_gz(tmp_path / schema.SPLIT_FILE, frame_text(rows, schema.SPLIT_COLUMNS))
    assert readers.read_split(tmp_path)["split"].tolist() == ["train", "validate", "test"]
    rows[1]["split"] = "dev"
    write_gz(tmp_path / schema.SPLIT_FILE, frame_text(rows, schema.SPLIT_COLUMNS))
    with pytest.raises(readers.ReleaseFileError, match="row 3: split 'dev'"):
        readers.read_split(tmp_path)


def label_text(values: dict, alias: bool = False) -> str:
    row = (
        {"subject_id": "10000032", "study_id": "50414267"} | dict.fromkeys(schema.LABEL_COLUMNS, "") | values
    )
    text = frame_text([row], schema.LABEL_FILE_COLUMNS)
    return text.replace("Lung Opacity", "Airspace Opacity") if alias else text


def test_label_file_values_and_alias(tmp_path):
    path = tmp_path / schema.CHEXPERT_FILE
    write_gz(
        path,
        label_text(
            {"Cardiomegaly": "1.0", "Edema": "-1.0", "Lung Opacity": "0.0", "No Finding": ""}, alias=True
        ),
    )
    frame = readers.read_label_file(path)
    assert frame["Cardiomegaly"].item() == 1.0 and frame["Edema"].item() == -1.0
    assert frame["Lung Opacity"].item() == 0.0 and np.isnan(frame["Atelectasis"].item())


@pytest.mark.parametrize(("column", "value"), [("Edema", "2.0"), ("Edema", "yes"), ("No Finding", "0.0")])
def test_label_values_outside_the_set(tmp_path, column, value):
    path = tmp_path / schema.CHEXPERT_FILE
    write_gz(path, label_text({column: value}))
    with pytest.raises(readers.ReleaseFileError, match=rf"study 50414267\): {column}='{value}'"):
        readers.read_label_file(path)


def test_image_filenames(tmp_path):
    (tmp_path / schema.IMAGE_FILENAMES_FILE).write_text("files/p10/p10000032/s50414267/a.jpg\r\n\n")
    assert readers.read_image_filenames(tmp_path) == {"files/p10/p10000032/s50414267/a.jpg"}
    with pytest.raises(readers.ReleaseFileError, match="check_image_list"):
        readers.read_image_filenames(tmp_path / "nowhere")
