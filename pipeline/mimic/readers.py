"""Schema-checked readers for the MIMIC-CXR-JPG release files.

Every problem a user can fix is a `ReleaseFileError` naming the file, the row and what to do; problems
that affect single studies are left in the frame for the study assembler to reject with a reason.
"""

from __future__ import annotations

import difflib
import gzip
import io
import os
import re
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.errors import PipelineError
from pipeline.io import decode_utf8
from pipeline.mimic import schema

DICOM_ID = re.compile(r"^[0-9a-f]{8}(-[0-9a-f]{8}){4}$")
_INT = re.compile(r"^\d+$")


class ReleaseFileError(PipelineError, ValueError):
    """A release file that cannot be used as it is; the message says what to do."""


REDOWNLOAD = "re-download it and check it against SHA256SUMS.txt"


def _file_bytes(path: Path, what: str = "file") -> bytes:
    """The file's bytes, gunzipped when it is a `.gz`; every way that can fail is one ReleaseFileError.

    The gzip module checks the stream's end marker, CRC and length, so a truncated download is caught
    here (a streaming CSV reader may stop quietly at the cut and return the rows before it)."""
    if not path.exists():
        raise ReleaseFileError(
            f"{path}: {what} not found; is the MIMIC-CXR-JPG root right (data.mimic_root)?"
        )
    if not path.is_file():
        raise ReleaseFileError(f"{path}: not a regular file; expected the release's {what}")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ReleaseFileError(
            f"{path}: cannot read it ({exc.strerror or exc}); check its permissions"
        ) from None
    if not raw:
        raise ReleaseFileError(f"{path}: file is empty; {REDOWNLOAD}")
    if path.suffix != ".gz":
        return raw
    try:
        data = gzip.decompress(raw)
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError, ValueError) as exc:
        raise ReleaseFileError(
            f"{path}: cannot decompress ({exc}); the file is truncated or corrupt — {REDOWNLOAD}"
        ) from None
    return data


def _utf8(path: Path, data: bytes) -> str:
    problem = "not UTF-8 text (byte {byte}); the file was re-saved in another encoding or is damaged — "
    return decode_utf8(path, data, ReleaseFileError, problem + REDOWNLOAD)


def _read_csv(path: Path, columns: list[str], data: bytes | None = None) -> pd.DataFrame:
    data = _file_bytes(path) if data is None else data
    if not data.strip(b"\xef\xbb\xbf \t\r\n"):
        raise ReleaseFileError(f"{path}: file is empty; {REDOWNLOAD}")
    _utf8(path, data)
    try:
        frame = pd.read_csv(
            io.BytesIO(data), dtype=str, keep_default_na=False, na_values=[], engine="pyarrow"
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ReleaseFileError(f"{path}: not a readable CSV ({reason}); {REDOWNLOAD}") from None
    frame.columns = [c.strip().lstrip("\ufeff") for c in frame.columns]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        others = [c for c in frame.columns if c not in columns]
        hints = []
        for col in missing:
            found = _renamed(col, others)
            hints.append(f"'{col}'" + (f" (found '{found}': renamed?)" if found else ""))
        raise ReleaseFileError(
            f"{path}: missing column(s) {', '.join(hints)}; expected columns {columns}. "
            "Use the files of MIMIC-CXR-JPG 2.0.0/2.1.0 as released."
        )
    dup = frame.columns[frame.columns.duplicated()].tolist()
    if dup:
        raise ReleaseFileError(f"{path}: duplicated column(s) {dup}")
    return frame[columns]


def _renamed(column: str, candidates: list[str]) -> str | None:
    """The candidate that looks like `column` renamed (case, `_`/space and small typos ignored)."""

    def norm(name: str) -> str:
        return re.sub(r"[^a-z0-9]", "", name.lower())

    by_norm = {norm(c): c for c in candidates}
    close = difflib.get_close_matches(norm(column), list(by_norm), n=1, cutoff=0.75)
    return by_norm[close[0]] if close else None


def _int_column(frame: pd.DataFrame, column: str, path: Path, digits: int | None = None) -> pd.Series:
    values = frame[column].str.strip()
    bad = ~values.str.fullmatch(r"\d+")
    if digits is not None:
        bad |= values.str.len() != digits
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        expect = f"an {digits}-digit integer" if digits else "an integer"
        raise ReleaseFileError(
            f"{path}: row {row + 2}: {column}={frame[column].iloc[row]!r} is not {expect} "
            f"({int(bad.sum())} such rows); the file does not follow the release's conventions"
        )
    return values.astype("int64")


def _nonempty(path: Path, frame: pd.DataFrame) -> pd.DataFrame:
    """A release file with its header but no rows is a damaged copy (every study would vanish quietly)."""
    if frame.empty:
        raise ReleaseFileError(f"{path}: has a header but no rows; the copy is incomplete — {REDOWNLOAD}")
    return frame


def read_metadata(root: str | os.PathLike) -> pd.DataFrame:
    """One row per image, typed: ids int64, StudyDate int64, StudyTime float64, text columns str."""
    path = Path(root) / schema.METADATA_FILE
    frame = _nonempty(path, _read_csv(path, schema.METADATA_COLUMNS))
    frame["dicom_id"] = frame["dicom_id"].str.strip()
    bad = ~frame["dicom_id"].str.fullmatch(DICOM_ID.pattern)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise ReleaseFileError(
            f"{path}: row {row + 2}: dicom_id {frame['dicom_id'].iloc[row]!r} is not five dash-separated "
            f"groups of 8 lowercase hex digits ({int(bad.sum())} such rows)"
        )
    for column in ("subject_id", "study_id"):
        frame[column] = _int_column(frame, column, path, digits=8)
    for column in ("Rows", "Columns", "StudyDate"):
        blank = frame[column].str.strip() == ""
        frame.loc[blank, column] = "0"
        frame[column] = _int_column(frame, column, path)
    time = pd.to_numeric(frame["StudyTime"].str.strip().replace("", "nan"), errors="coerce")
    bad = time.isna() & (frame["StudyTime"].str.strip() != "")
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise ReleaseFileError(
            f"{path}: row {row + 2}: StudyTime {frame['StudyTime'].iloc[row]!r} is not a number"
        )
    frame["StudyTime"] = time
    frame["ViewPosition"] = frame["ViewPosition"].str.strip().str.upper()
    return frame


def read_split(root: str | os.PathLike) -> pd.DataFrame:
    """One row per image: dicom_id, study_id, subject_id, split ∈ {train, validate, test}."""
    path = Path(root) / schema.SPLIT_FILE
    frame = _nonempty(path, _read_csv(path, schema.SPLIT_COLUMNS))
    frame["dicom_id"] = frame["dicom_id"].str.strip()
    for column in ("subject_id", "study_id"):
        frame[column] = _int_column(frame, column, path, digits=8)
    frame["split"] = frame["split"].str.strip().str.lower().replace({"val": "validate", "valid": "validate"})
    bad = ~frame["split"].isin(schema.SPLITS)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise ReleaseFileError(
            f"{path}: row {row + 2}: split {frame['split'].iloc[row]!r} is not one of {list(schema.SPLITS)}"
        )
    return frame


def read_label_file(path: str | os.PathLike) -> pd.DataFrame:
    """A chexpert/negbio file: subject_id, study_id, 14 labels as float64 (1, 0, -1, NaN = blank)."""
    path = Path(path)
    frame = _nonempty(path, _read_csv_renamed(path))
    for column in ("subject_id", "study_id"):
        frame[column] = _int_column(frame, column, path, digits=8)
    block = frame[schema.LABEL_COLUMNS].to_numpy(dtype=object)
    codes, uniques = pd.factorize(block.ravel())
    table = np.array([_label_value(u) for u in uniques], dtype=np.float64)
    values = table[codes].reshape(block.shape) if len(uniques) else np.full(block.shape, np.nan)
    no_finding = schema.LABEL_COLUMNS.index("No Finding")
    invalid = np.isinf(values)
    invalid[:, no_finding] |= np.isin(values[:, no_finding], (0.0, -1.0))
    if invalid.any():
        row, col = (int(i[0]) for i in np.nonzero(invalid))
        column = schema.LABEL_COLUMNS[col]
        allowed = "1.0 or blank" if column == "No Finding" else "1.0, 0.0, -1.0 or blank"
        raise ReleaseFileError(
            f"{path}: row {row + 2} (study {frame['study_id'].iloc[row]}): {column}={block[row, col]!r}; "
            f"label values must be {allowed} ({int(invalid.sum())} such cells)"
        )
    frame[schema.LABEL_COLUMNS] = values
    dup = frame["study_id"].duplicated(keep=False)
    if dup.any():
        first = int(frame.loc[dup, "study_id"].iloc[0])
        raise ReleaseFileError(
            f"{path}: study {first} has more than one row ({int(dup.sum())} duplicated rows)"
        )
    return frame


def _label_value(cell: str) -> float:
    """1/0/-1 (any float spelling) or blank → float; anything else → inf, reported by the caller."""
    cell = cell.strip()
    if not cell:
        return np.nan
    try:
        value = float(cell)
    except ValueError:
        return np.inf
    return value if value in schema.LABEL_VALUES else np.inf


def _read_csv_renamed(path: Path) -> pd.DataFrame:
    """A label file, with the release's old column names (`LABEL_ALIASES`) mapped to today's."""
    data = _file_bytes(path)
    end = data.find(b"\n")
    first_line = _utf8(path, data if end < 0 else data[:end])
    head = [c.strip().strip('"').lstrip("\ufeff") for c in first_line.strip().split(",")]
    rename = {a: b for a, b in schema.LABEL_ALIASES.items() if a in head}
    if not rename:
        return _read_csv(path, schema.LABEL_FILE_COLUMNS, data)
    wanted = [next((a for a, b in rename.items() if b == c), c) for c in schema.LABEL_FILE_COLUMNS]
    return _read_csv(path, wanted, data).rename(columns=rename)


def read_image_filenames(root: str | os.PathLike) -> set[str]:
    """The release's list of image paths; used instead of touching the image tree."""
    path = Path(root) / schema.IMAGE_FILENAMES_FILE
    if not path.exists():
        raise ReleaseFileError(
            f"{path}: file not found; it ships with MIMIC-CXR-JPG (one relative image path per line). "
            "Set studies.check_image_list: false to skip this check."
        )
    text = _utf8(path, _file_bytes(path, "image list")).lstrip("\ufeff")
    names = {line.strip() for line in text.splitlines() if line.strip()}
    if not names:
        raise ReleaseFileError(
            f"{path}: lists no images; {REDOWNLOAD} (or set studies.check_image_list: false)"
        )
    return names
