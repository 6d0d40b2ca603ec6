"""The corpus cases of the release files and reports (the sections, labels and studies stages)."""

from __future__ import annotations

import gzip
import shutil
from collections.abc import Callable

import pandas as pd
from corpus import Case, Fails, Kept, Rejected, Workspace, params_edit

from pipeline.mimic import schema

# -- corruptions: release files -----------------------------------------------------------------------


def _sid(row: dict) -> int:
    return int(row["study_id"])


def drop_column(file: str, column: str):
    def corrupt(ws: Workspace) -> list[int]:
        ws.release.edit(file, lambda f: f.drop(columns=[column]))
        return []

    return corrupt


def rename_column(file: str, old: str, new: str):
    def corrupt(ws: Workspace) -> list[int]:
        ws.release.edit(file, lambda f: f.rename(columns={old: new}))
        return []

    return corrupt


def add_column(ws: Workspace) -> list[int]:
    ws.release.edit(schema.METADATA_FILE, lambda f: f.assign(Comment="re-exported"))
    return []


def set_cell(file: str, column: str, value: str, study: Callable[[Workspace], dict] | None = None):
    """Set one cell of the first row of `study` (default: the first train study) in `file`."""

    def corrupt(ws: Workspace) -> list[int]:
        sid = _sid((study or (lambda w: w.kept()))(ws))
        frame = ws.release.frame(file)
        row = frame.index[frame["study_id"] == str(sid)][0]
        frame.loc[row, column] = value
        ws.release.write(file, frame)
        return [sid]

    return corrupt


def truncate_file(file: str):
    def corrupt(ws: Workspace) -> list[int]:
        path = ws.release.root / file
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        return []

    return corrupt


def empty_file(file: str):
    def corrupt(ws: Workspace) -> list[int]:
        (ws.release.root / file).write_bytes(b"")
        return []

    return corrupt


def remove_file(file: str):
    def corrupt(ws: Workspace) -> list[int]:
        (ws.release.root / file).unlink()
        return []

    return corrupt


def crlf_and_bom(file: str):
    def corrupt(ws: Workspace) -> list[int]:
        ws.release.write(file, ws.release.frame(file), crlf=True, bom=True)
        return []

    return corrupt


def conflicting_duplicate_dicom(ws: Workspace) -> list[int]:
    """A dicom_id listed twice in the metadata, under two different studies."""
    a, b = ws.kept(k=0), ws.kept(k=1)
    meta = ws.release.frame(schema.METADATA_FILE)
    row = meta.loc[meta["study_id"] == str(_sid(a))].iloc[[0]].copy()
    row["study_id"], row["subject_id"] = str(_sid(b)), str(b["subject_id"])
    ws.release.write(schema.METADATA_FILE, pd.concat([meta, row], ignore_index=True))
    return [_sid(a), _sid(b)]


def exact_duplicate_rows(file: str):
    def corrupt(ws: Workspace) -> list[int]:
        frame = ws.release.frame(file)
        ws.release.write(file, pd.concat([frame, frame.iloc[[3, 3]]], ignore_index=True))
        return []

    return corrupt


def duplicate_label_study(ws: Workspace) -> list[int]:
    frame = ws.release.frame(schema.CHEXPERT_FILE)
    changed = frame.iloc[[0]].assign(Edema="1.0")
    ws.release.write(schema.CHEXPERT_FILE, pd.concat([frame, changed], ignore_index=True))
    return []


def drop_study_rows(file: str):
    """Remove every row of one kept study from `file` (the other file still lists it)."""

    def corrupt(ws: Workspace) -> list[int]:
        sid = _sid(ws.kept(k=2))
        ws.release.edit(file, lambda f: f.loc[f["study_id"] != str(sid)])
        return [sid]

    return corrupt


def split_subject_conflict(ws: Workspace) -> list[int]:
    """The split file files one study's images under another patient than the metadata does."""
    row = ws.kept(k=3)
    other = str(ws.kept(k=4)["subject_id"])
    ws.release.edit(
        schema.SPLIT_FILE,
        lambda f: f.assign(subject_id=f["subject_id"].where(f["study_id"] != str(_sid(row)), other)),
    )
    return [_sid(row)]


def unlist_study_images(ws: Workspace) -> list[int]:
    row = ws.kept(k=5)
    listing = ws.release.root / schema.IMAGE_FILENAMES_FILE
    keep = [line for line in listing.read_text().splitlines() if f"/s{_sid(row)}/" not in line]
    listing.write_text("\n".join(keep) + "\n")
    return [_sid(row)]


def drop_label_row(ws: Workspace) -> list[int]:
    sid = _sid(ws.kept(k=6))
    ws.release.edit(schema.CHEXPERT_FILE, lambda f: f.loc[f["study_id"] != str(sid)])
    return [sid]


# -- corruptions: reports -----------------------------------------------------------------------------


def write_report(content: bytes | Callable[[bytes], bytes], k: int = 0):
    def corrupt(ws: Workspace) -> list[int]:
        row = ws.kept(k=k)
        path = ws.release.report(_sid(row))
        path.write_bytes(content(path.read_bytes()) if callable(content) else content)
        return [_sid(row)]

    return corrupt


def remove_report(ws: Workspace) -> list[int]:
    row = ws.kept(k=1)
    ws.release.report(_sid(row)).unlink()
    return [_sid(row)]


def non_utf8(data: bytes) -> bytes:
    return data.replace(b"FINDINGS:", b"FINDINGS: Caf\xe9 au lait spot.", 1)


def huge(data: bytes) -> bytes:
    return data + b"\nADDENDUM: " + b"x" * (1 << 20)


def report_under_other_subject(ws: Workspace) -> list[int]:
    row, other = ws.kept(k=2), ws.kept(k=7)
    src = ws.release.report(_sid(row))
    dst = ws.release.reports / schema.report_relpath(int(other["subject_id"]), _sid(row))
    dst.parent.mkdir(parents=True, exist_ok=True)
    src.rename(dst)
    return [_sid(row)]


def stray_files(ws: Workspace) -> list[int]:
    row = ws.kept(k=0)
    report = ws.release.report(_sid(row))
    (report.parent / ".DS_Store").write_bytes(b"\x00\x01")
    report.with_name(report.name + ".bak").write_text("FINDINGS: old copy")
    (ws.release.reports / "files" / "README.txt").write_text("unpacked by hand")
    return []


def wrong_reports_root(ws: Workspace) -> list[int]:
    shutil.rmtree(ws.release.reports / "files")
    (ws.release.reports / "mimic-cxr-reports.zip").write_bytes(b"PK\x03\x04")
    return []


def patient_in_two_splits(ws: Workspace) -> list[int]:
    """A train study re-filed (in both files) under a patient of the test split: that patient is then in
    two splits, which the official, patient-disjoint split never does."""
    moved, test_patient = ws.kept(k=8), str(ws.kept("test")["subject_id"])
    for name in (schema.SPLIT_FILE, schema.METADATA_FILE):
        ws.release.edit(
            name,
            lambda f: f.assign(
                subject_id=f["subject_id"].where(f["study_id"] != str(_sid(moved)), test_patient)
            ),
        )
    return []


def header_only(file: str):
    def corrupt(ws: Workspace) -> list[int]:
        ws.release.edit(file, lambda f: f.iloc[:0])
        return []

    return corrupt


def not_gzip(file: str):
    """The plain CSV saved under the `.gz` name (a browser that unpacked the download)."""

    def corrupt(ws: Workspace) -> list[int]:
        path = ws.release.root / file
        path.write_bytes(gzip.decompress(path.read_bytes()))
        return []

    return corrupt


def latin1_header(file: str):
    def corrupt(ws: Workspace) -> list[int]:
        path = ws.release.root / file
        data = gzip.decompress(path.read_bytes())
        data = (
            data.replace(b"Atelectasis", b"Atelectasis \xe9", 1) if b"Atelectasis" in data else b"\xe9" + data
        )
        path.write_bytes(gzip.compress(data, mtime=0))
        return []

    return corrupt


def latin1_row(file: str):
    def corrupt(ws: Workspace) -> list[int]:
        path = ws.release.root / file
        data = gzip.decompress(path.read_bytes())
        lines = data.split(b"\n")
        lines[3] = lines[3].replace(b",", b",\xe9", 1)
        path.write_bytes(gzip.compress(b"\n".join(lines), mtime=0))
        return []

    return corrupt


def latin1_image_list(ws: Workspace) -> list[int]:
    listing = ws.release.root / schema.IMAGE_FILENAMES_FILE
    listing.write_bytes(listing.read_bytes() + b"files/p10/caf\xe9.jpg\n")
    return []


def report_link(target: Callable[[Workspace, dict], object]):
    """Replace the k-th kept study's report by a symbolic link to what `target` returns."""

    def corrupt(ws: Workspace) -> list[int]:
        row = ws.kept(k=4)
        path = ws.release.report(_sid(row))
        dest = target(ws, row)
        path.unlink()
        path.symlink_to(dest)
        return [_sid(row)]

    return corrupt


def outside_copy(ws: Workspace, row: dict):
    outside = ws.path / "elsewhere.txt"
    outside.write_bytes(ws.release.report(_sid(row)).read_bytes())
    return outside


def inside_copy(ws: Workspace, row: dict):
    inside = ws.release.reports / "files" / "moved" / f"s{_sid(row)}.txt"
    inside.parent.mkdir()
    inside.write_bytes(ws.release.report(_sid(row)).read_bytes())
    return inside


def itself(ws: Workspace, row: dict):
    return ws.release.report(_sid(row))


def subject_folder_loop(ws: Workspace) -> list[int]:
    """A patient's report folder replaced by a symbolic link to itself (ELOOP on every access)."""
    row = ws.kept(k=5)
    folder = ws.release.report(_sid(row)).parent
    kept = {
        int(s)
        for f in ws.good["studies"].values()
        for s in f.loc[f["subject_id"] == str(row["subject_id"]), "study_id"]
    }
    shutil.rmtree(folder)
    folder.symlink_to(folder.name)
    return sorted(kept)


def raw_params(text: bytes | Callable[[bytes], bytes]):
    def corrupt(ws: Workspace) -> list[int]:
        old = ws.params.read_bytes()
        ws.params.write_bytes(text(old) if callable(text) else text)
        return []

    return corrupt


# -- the corpus ---------------------------------------------------------------------------------------

META, SPLIT, CHEXPERT = schema.METADATA_FILE, schema.SPLIT_FILE, schema.CHEXPERT_FILE
NEGBIO = schema.NEGBIO_FILE
REDOWNLOAD = "re-download it and check it against SHA256SUMS.txt"

RELEASE_CASES = [
    Case("metadata: missing column", drop_column(META, "ViewPosition"),
         Fails("studies", (META, "missing column.*'ViewPosition'", "MIMIC-CXR-JPG 2.0.0/2.1.0 as released"))),
    Case("metadata: renamed column", rename_column(META, "study_id", "StudyID"),
         Fails("studies", (META, r"'study_id' \(found 'StudyID': renamed\?\)"))),
    Case("metadata: extra column", add_column, Kept()),
    Case("metadata: wrong dtype", set_cell(META, "study_id", "5x000001"),
         Fails("studies", (META, r"row \d+: study_id='5x000001' is not an 8-digit integer"))),
    Case("metadata: bad StudyTime", set_cell(META, "StudyTime", "noon"),
         Fails("studies", (META, r"row \d+: StudyTime 'noon' is not a number"))),
    Case("metadata: truncated gzip", truncate_file(META), Fails("studies", (META, "truncated or corrupt", REDOWNLOAD))),
    Case("metadata: empty file", empty_file(META), Fails("studies", (META, "file is empty", REDOWNLOAD))),
    Case("metadata: missing file", remove_file(META), Fails("studies", (META, "file not found", "data.mimic_root"))),
    Case("metadata: CRLF and BOM", crlf_and_bom(META), Kept()),
    Case("split: CRLF and BOM", crlf_and_bom(SPLIT), Kept()),
    Case("split: unknown split value", set_cell(SPLIT, "split", "training"),
         Fails("studies", (SPLIT, r"row \d+: split 'training' is not one of"))),
    Case("metadata: one dicom_id under two studies", conflicting_duplicate_dicom, Rejected("duplicate_dicom")),
    Case("metadata: repeated identical rows", exact_duplicate_rows(META),
         Kept(counts={"duplicate_metadata_rows_dropped": 2})),
    Case("split: repeated identical rows", exact_duplicate_rows(SPLIT),
         Kept(counts={"duplicate_split_rows_dropped": 2})),
    Case("study in split, not in metadata", drop_study_rows(META), Rejected("no_metadata")),
    Case("study in metadata, not in split", drop_study_rows(SPLIT), Rejected("not_in_split")),
    Case("split and metadata disagree on the patient", split_subject_conflict, Rejected("conflicting_ids")),
    Case("IMAGE_FILENAMES lacks a study", unlist_study_images, Rejected("no_listed_image")),
    Case("IMAGE_FILENAMES missing", remove_file(schema.IMAGE_FILENAMES_FILE),
         Fails("studies", ("IMAGE_FILENAMES: file not found", "studies.check_image_list: false"))),
    Case("labels: value outside {1, 0, -1, blank}", set_cell(CHEXPERT, "Edema", "2.0"),
         Fails("labels", (CHEXPERT, r"row \d+ \(study \d{8}\): Edema='2.0'", "1.0, 0.0, -1.0 or blank"))),
    Case("labels: text instead of a value", set_cell(CHEXPERT, "Pneumonia", "yes"),
         Fails("labels", (CHEXPERT, "Pneumonia='yes'"))),
    Case("labels: No Finding = 0", set_cell(CHEXPERT, "No Finding", "0.0"),
         Fails("labels", (CHEXPERT, "No Finding='0.0'", "1.0 or blank"))),
    Case("labels: duplicate study rows", duplicate_label_study,
         Fails("labels", (CHEXPERT, r"study \d{8} has more than one row"))),
    Case("labels: missing column", drop_column(CHEXPERT, "Fracture"),
         Fails("labels", (CHEXPERT, "missing column.*'Fracture'"))),
    Case("labels: study without a label row", drop_label_row,
         Kept(counts={"studies_without_label_row": 1}, changed=True,
              row=lambda r: all(r[c] == "" for c in schema.LABEL_COLUMNS))),
    Case("report: missing", remove_report, Rejected("no_report")),
    Case("report: empty file", write_report(b""), Rejected("empty_report")),
    Case("report: whitespace only", write_report(b" \n\r\n\t \n"), Rejected("empty_report")),
    Case("report: binary", write_report(bytes(range(256)) * 8), Rejected("unreadable_report")),
    Case("report: not UTF-8", write_report(non_utf8),
         Kept(counts={"decode_errors": 1}, changed=True, row=lambda r: "Caf\ufffd au lait spot." in r["findings"])),
    Case("report: 1 MB long", write_report(huge), Rejected("oversized_report")),
    Case("report: headers only", write_report(b"FINDINGS:\n\nIMPRESSION:\n"), Rejected("insufficient_text")),
    Case("report: filed under another patient", report_under_other_subject, Rejected("conflicting_ids")),
    Case("reports tree: stray files", stray_files, Kept()),
    Case("reports root: zip not unpacked", wrong_reports_root,
         Fails("sections", ("no reports tree here", "unzip mimic-cxr-reports.zip"))),
    Case("params: typo'd key", params_edit(lambda p: p["studies"].update(view={"max_images": 2})),
         Fails("studies", (r"params.yaml:studies: unknown key 'view' \(did you mean 'views'\?\)",))),
    Case("params: bad value", params_edit(lambda p: p["labels"].update(source="chexbert")),
         Fails("labels", ("params.yaml:labels: source must be one of",))),
    Case("params: missing section", params_edit(lambda p: p.pop("sections")),
         Fails("sections", ("section 'sections' is missing",))),
    # -- round 2 (issue 17) ----------------------------------------------------------------------------
    # 1. split leakage
    Case("split: a patient in two splits", patient_in_two_splits,
         Fails("studies", (SPLIT, r"1 patient\(s\) in more than one split: \d{8} \(test, train\)", "patient-disjoint"))),
    # 3. one bad file in the reports tree is a counted reject, never the end of the scan
    Case("report: symlink loop", report_link(itself), Rejected("unreadable_report")),
    Case("reports tree: a patient folder that is a symlink loop", subject_folder_loop, Rejected("no_report")),
    # 4. damaged label files name the file and say what to do
    Case("labels: truncated gzip", truncate_file(CHEXPERT), Fails("labels", (CHEXPERT, "truncated or corrupt", REDOWNLOAD))),
    Case("labels: not gzip", not_gzip(CHEXPERT), Fails("labels", (CHEXPERT, "cannot decompress", REDOWNLOAD))),
    Case("labels: empty file", empty_file(CHEXPERT), Fails("labels", (CHEXPERT, "file is empty", REDOWNLOAD))),
    Case("labels: non-UTF-8 header", latin1_header(CHEXPERT),
         Fails("labels", (CHEXPERT, r"line 1: not UTF-8 text \(byte 0xe9\)", REDOWNLOAD))),
    Case("labels: header and no rows", header_only(CHEXPERT), Fails("labels", (CHEXPERT, "header but no rows"))),
    Case("labels: negbio damaged (only used for agreement)", truncate_file(NEGBIO), Kept()),
    Case("split: not gzip", not_gzip(SPLIT), Fails("studies", (SPLIT, "cannot decompress", REDOWNLOAD))),
    Case("metadata: non-UTF-8 byte in a row", latin1_row(META), Fails("studies", (META, r"line 4: not UTF-8"))),
    Case("IMAGE_FILENAMES: not UTF-8", latin1_image_list,
         Fails("studies", (schema.IMAGE_FILENAMES_FILE, r"line \d+: not UTF-8"))),
    # 8. params.yaml types
    Case("params: invalid YAML", raw_params(b"sections: {workers: 1\nlabels: []\n"),
         Fails("sections", (r"params.yaml: line \d+, column \d+: invalid YAML",))),
    Case("params: not UTF-8", raw_params(lambda b: b.replace(b"sections:", b"# caf\xe9\nsections:", 1)),
         Fails("sections", (r"params.yaml: line \d+: not UTF-8 text; save the file as UTF-8",))),
    Case("params: a key given twice", raw_params(lambda b: b + b"sections:\n  workers: 2\n"),
         Fails("sections", (r"params.yaml: line \d+, column \d+: invalid YAML \(key 'sections' appears twice",))),
    Case("params: float for an integer", params_edit(lambda p: p["studies"].update(views={"max_images": 2.5})),
         Fails("studies", (r"params.yaml:studies.views.max_images: expected an integer, got 2.5 \(float\)",))),
    Case("params: quoted 'false'", params_edit(lambda p: p["studies"].update(check_image_list="false")),
         Fails("studies", (r"params.yaml:studies.check_image_list: expected true or false, got 'false'", "quoted"))),
    Case("params: a section that is not a mapping", params_edit(lambda p: p.update(labels="chexpert")),
         Fails("labels", (r"params.yaml:labels: expected a mapping, got 'chexpert'",))),
    Case("params: negative workers", params_edit(lambda p: p["sections"].update(workers=-1)),
         Fails("sections", (r"params.yaml:sections.workers: must be 0 \(all cores\) or a positive number of processes, got -1",))),
    # 10. smaller ones
    Case("metadata: header and no rows", header_only(META), Fails("studies", (META, "header but no rows", REDOWNLOAD))),
    Case("report: symlink to a file outside the reports tree", report_link(outside_copy),
         Rejected("report_outside_root")),
    Case("report: symlink inside the reports tree", report_link(inside_copy), Kept()),
]  # fmt: skip
