from __future__ import annotations

import pandas as pd
import pytest

from pipeline.mimic.reports import MAX_REPORT_BYTES, ReportsTreeError, section_reports

GOOD = "                                 FINAL REPORT\n FINDINGS:  Lungs clear.\n \n IMPRESSION:  Normal.\n"


def put(root, subject: int, study: int, data: bytes) -> None:
    folder = root / "files" / f"p{str(subject)[:2]}" / f"p{subject}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"s{study}.txt").write_bytes(data)


def test_every_report_is_a_row_with_a_status(tmp_path):
    put(tmp_path, 10000001, 50000001, GOOD.encode())
    put(tmp_path, 10000001, 50000002, b"")
    put(tmp_path, 10000002, 50000003, b"\x00\x01PK\x03\x04")
    put(tmp_path, 11000003, 50000004, GOOD.replace("clear", "clear \xb0").encode("latin-1"))
    put(tmp_path, 11000003, 50000005, GOOD.encode() + b" x" * MAX_REPORT_BYTES)
    put(tmp_path, 11000003, 50000006, b"    \n  \n")
    (tmp_path / "files/p11/p11000003/notes.txt").write_text("not a report")
    (tmp_path / "files/p11/p11000003/s50000004").mkdir()  # image folder beside the report
    frame = section_reports(tmp_path, workers=2, progress=False)
    status = dict(zip(frame["study_id"], frame["status"], strict=True))
    assert status == {
        50000001: "ok",
        50000002: "empty",
        50000003: "binary",
        50000004: "decode_errors",
        50000005: "truncated",
        50000006: "empty",
    }
    row = frame.set_index("study_id").loc[50000004]
    assert row["decode_errors"] == 1 and row["subject_id"] == 11000003
    assert row["findings"] == "Lungs clear \ufffd."
    assert frame.set_index("study_id").loc[50000005, "impression"].startswith("Normal.")
    assert frame["study_id"].is_monotonic_increasing


def test_workers_do_not_change_the_table(tmp_path):
    for i in range(30):
        put(tmp_path, 10000000 + i % 7, 50000000 + i, GOOD.replace("clear", f"clear {i}").encode())
    one = section_reports(tmp_path, workers=1, progress=False)
    two = section_reports(tmp_path, workers=2, progress=False)
    pd.testing.assert_frame_equal(one, two)


def test_wrong_root_is_explained(tmp_path):
    with pytest.raises(ReportsTreeError, match="no reports tree here"):
        section_reports(tmp_path / "missing", progress=False)
    (tmp_path / "files").mkdir()
    with pytest.raises(ReportsTreeError, match="no reports tree here"):
        section_reports(tmp_path, progress=False)


def test_one_bad_file_or_folder_never_ends_the_scan(tmp_path, monkeypatch, capsys):
    """Permission denied, a symlink loop, a link out of the tree, an unlistable folder: each is one study's
    status (or a skipped folder, named on stderr), and every good report is still read."""
    import os

    from pipeline.mimic import reports

    put(tmp_path, 10000001, 50000001, GOOD.encode())
    put(tmp_path, 10000001, 50000002, GOOD.encode())  # made unreadable below
    folder = tmp_path / "files/p10/p10000001"
    (folder / "s50000003.txt").symlink_to("s50000003.txt")  # a loop
    outside = tmp_path / "secret.txt"
    outside.write_text("FINDINGS: not a report of this tree.")
    (folder / "s50000004.txt").symlink_to(outside)
    inside = tmp_path / "files" / "elsewhere.txt"
    inside.write_text(GOOD)
    (folder / "s50000005.txt").symlink_to(inside)  # a link that stays in the tree is fine
    put(tmp_path, 10000002, 50000006, GOOD.encode())  # its folder becomes unlistable below
    real_open, real_scandir = os.open, os.scandir

    def deny_open(path, *args, **kwargs):
        if str(path).endswith("s50000002.txt"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    def deny_scandir(path):
        if str(path).endswith("p10000002"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(reports.os, "open", deny_open)
    monkeypatch.setattr(reports.os, "scandir", deny_scandir)
    frame = section_reports(tmp_path, workers=1, progress=False)
    status = dict(zip(frame["study_id"], frame["status"], strict=True))
    assert status == {
        50000001: "ok",
        50000002: "unreadable",
        50000003: "unreadable",
        50000004: "outside_root",
        50000005: "ok",
    }
    assert pd.isna(frame.set_index("study_id").loc[50000004, "findings"])  # never read
    err = capsys.readouterr().err
    assert "skipped 1 unreadable report folder(s)" in err and "p10000002 (Permission denied)" in err


def test_negative_workers_are_explained(tmp_path):
    from pipeline.errors import PipelineError

    put(tmp_path, 10000001, 50000001, GOOD.encode())
    with pytest.raises(PipelineError, match="workers must be 0 .* got -1"):
        section_reports(tmp_path, workers=-1, progress=False)


def test_a_fifo_in_the_tree_is_unreadable_not_a_hang(tmp_path):
    """`open()` of a FIFO waits for a writer forever; the scan must count it and go on."""
    import os
    import threading

    put(tmp_path, 10000001, 50000001, GOOD.encode())
    folder = tmp_path / "files" / "p10" / "p10000001"
    os.mkfifo(folder / "s50000002.txt")
    result: dict = {}
    worker = threading.Thread(
        target=lambda: result.update(frame=section_reports(tmp_path, workers=1, progress=False)), daemon=True
    )
    worker.start()
    worker.join(timeout=60)
    if worker.is_alive():
        with open(folder / "s50000002.txt", "wb"):
            pass  # let the blocked reader finish
        pytest.fail("sectioning blocked on a FIFO")
    status = dict(zip(result["frame"]["study_id"], result["frame"]["status"], strict=True))
    assert status == {50000001: "ok", 50000002: "unreadable"}
