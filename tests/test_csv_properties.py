"""Property-based tests of the CSV readers (issue 17, class 2): on any input they return a result that
keeps the accounting or raise the one documented error naming the file — never anything else — in time
linear in the input. Hypothesis settings keep the whole file to a few seconds."""

from __future__ import annotations

import gzip
import time
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.io import write_csv
from pipeline.mimic import readers, schema
from pipeline.shards.rows import STUDY_COLUMNS, ShardsError, read_study_csv

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
# Generous: pandas parses ~100 MB/s; 5 µs per byte plus a fixed 1.5 s is 10-50× what these runs take.
SECONDS_PER_BYTE, FIXED_SECONDS = 5e-6, 1.5

text = st.text(
    st.characters(min_codepoint=0, max_codepoint=0x2FFF, blacklist_categories=("Cs",)), max_size=40
)
cell = st.one_of(text, st.sampled_from(["", "1.0", "-1", "0", "50000001", "-3", "1e400", '"', ",", "\n"]))


def timed(fn, n_bytes: int):
    start = time.perf_counter()
    try:
        return fn()
    finally:
        elapsed = time.perf_counter() - start
        assert elapsed < FIXED_SECONDS + SECONDS_PER_BYTE * n_bytes, f"{elapsed:.2f} s for {n_bytes} bytes"


def study_record(i: int, cells: dict[str, str]) -> dict[str, str]:
    base = {c: "" for c in STUDY_COLUMNS}
    base.update(
        study_id=str(50000000 + i), subject_id=str(10000000 + i), split="train", n_images="1",
        image_paths=f"files/p10/p{10000000 + i}/s{50000000 + i}/a.jpg", view_names="PA",
    )  # fmt: skip
    base.update(cells)
    return base


@FAST
@given(rows=st.lists(st.dictionaries(st.sampled_from(STUDY_COLUMNS), cell, max_size=6), max_size=12))
def test_study_csv_rows_are_kept_or_rejected(rows, tmp_path_factory):
    path = tmp_path_factory.mktemp("csv") / "train.csv"
    frame = pd.DataFrame([study_record(i, r) for i, r in enumerate(rows)], columns=STUDY_COLUMNS)
    write_csv(path, frame)  # the writer every stage uses: its output must read back row for row
    try:
        kept, rejects = timed(lambda: read_study_csv(path, "train"), path.stat().st_size)
    except ShardsError as exc:  # only a whole-file problem, naming the file
        assert str(path) in str(exc)
        return
    assert len(kept) + len(rejects) == len(frame)  # every row: a study or a counted reject
    assert len({r.study_id for r in kept}) == len(kept)
    for row in kept:
        assert 0 < row.study_id < 10**8 and 0 < row.subject_id < 10**8
        assert row.image_paths and len(row.image_paths) == len(row.view_names) == len(set(row.image_paths))
        assert all(v in (None, 1.0, 0.0, -1.0) for v in row.labels)
    assert {r["reason"] for r in rejects} <= {"bad_row", "duplicate_study"}


@FAST
@given(data=st.binary(max_size=300), gz=st.booleans())
def test_study_csv_from_arbitrary_bytes(data, gz, tmp_path_factory):
    path = tmp_path_factory.mktemp("csv") / "train.csv"
    header = (",".join(STUDY_COLUMNS) + "\n").encode()
    path.write_bytes(gzip.compress(data) if gz else header + data)
    try:
        kept, rejects = timed(lambda: read_study_csv(path, "train"), len(data))
    except ShardsError as exc:
        assert str(path) in str(exc)
        return
    assert not gz and len(kept) + len(rejects) <= data.count(b"\n") + data.count(b"\r") + 1


READERS = {
    schema.METADATA_FILE: readers.read_metadata,
    schema.SPLIT_FILE: readers.read_split,
    schema.CHEXPERT_FILE: lambda root: readers.read_label_file(Path(root) / schema.CHEXPERT_FILE),
}
HEADERS = {
    schema.METADATA_FILE: schema.METADATA_COLUMNS,
    schema.SPLIT_FILE: schema.SPLIT_COLUMNS,
    schema.CHEXPERT_FILE: schema.LABEL_FILE_COLUMNS,
}


@FAST
@given(
    name=st.sampled_from(sorted(READERS)),
    data=st.binary(max_size=400),
    how=st.sampled_from(["gz", "raw", "cut"]),
)
def test_release_readers_on_arbitrary_bytes(name, data, how, tmp_path_factory):
    """Any bytes under a release file's name: a typed frame or a ReleaseFileError naming the file."""
    root = tmp_path_factory.mktemp("release")
    body = (",".join(HEADERS[name]) + "\n").encode() + data
    packed = gzip.compress(body, mtime=0)
    (root / name).write_bytes({"gz": packed, "raw": body, "cut": packed[: len(packed) // 2]}[how])
    try:
        frame = timed(lambda: READERS[name](root), len(body))
    except readers.ReleaseFileError as exc:
        assert str(root / name) in str(exc)
        return
    assert how == "gz" and len(frame) >= 1 and frame["study_id"].dtype == "int64"


@FAST
@given(
    rows=st.lists(
        st.tuples(cell, cell, st.sampled_from(["train", "validate", "test", "val", "x"])),
        min_size=1,
        max_size=10,
    )
)
def test_split_reader_values(rows, tmp_path_factory):
    root = tmp_path_factory.mktemp("release")
    frame = pd.DataFrame([{"dicom_id": "d", "study_id": a, "subject_id": b, "split": s} for a, b, s in rows])
    (root / schema.SPLIT_FILE).write_bytes(gzip.compress(frame.to_csv(index=False).encode(), mtime=0))
    try:
        got = readers.read_split(root)
    except readers.ReleaseFileError as exc:
        assert schema.SPLIT_FILE in str(exc)
        return
    assert len(got) == len(rows) and set(got["split"]) <= set(schema.SPLITS)
    assert ((got["study_id"] >= 0) & (got["study_id"] < 10**8)).all()


@pytest.mark.parametrize("size", [300_000, 1 << 20])
@pytest.mark.parametrize("shape", ["spaces", "quotes", "commas"])
def test_adversarial_long_cells_parse_in_linear_time(tmp_path, size, shape):
    """The shapes that make backtracking parsers quadratic: one huge cell of spaces after a capital, an
    unterminated run of quotes, a line of separators."""
    filler = {"spaces": "F" + " " * size, "quotes": '"' * size, "commas": "," * size}[shape]
    path = tmp_path / "train.csv"
    frame = pd.DataFrame([study_record(0, {"findings": filler})], columns=STUDY_COLUMNS)
    frame.to_csv(path, index=False)
    kept, rejects = timed(lambda: read_study_csv(path, "train"), path.stat().st_size)
    assert len(kept) + len(rejects) == 1
    if kept:
        assert kept[0].findings == filler.strip()
    root = tmp_path / "release"
    root.mkdir()
    line = f"{'a' * 44},50000001,10000001,{filler if shape == 'spaces' else 'x'}\n"
    data = (",".join(schema.SPLIT_COLUMNS) + "\n" + line).encode()
    (root / schema.SPLIT_FILE).write_bytes(gzip.compress(data, mtime=0))
    with pytest.raises(readers.ReleaseFileError):  # not a split value: refused, quickly
        timed(lambda: readers.read_split(root), len(data))
