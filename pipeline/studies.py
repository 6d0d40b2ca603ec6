"""The study CSV generator: metadata + split + sections + labels → one row per study.

Every study named in the split or metadata file ends in exactly one output CSV or in `rejects.csv` with
the first reason that applies, in this order (the closed set `REJECT_REASONS`):

- ``duplicate_dicom``: a dicom_id appears in the metadata with conflicting rows (identical repeats are
  dropped and counted, not rejected).
- ``conflicting_ids``: the study's images disagree on subject or split across the two files, or its
  report lives under another subject.
- ``not_in_split``: the study has metadata but no row in the split file.
- ``no_metadata``: the study is in the split file but none of its images has a metadata row.
- ``no_listed_image``: none of its images is in `IMAGE_FILENAMES` (the release does not have the file).
- ``no_frontal``: the view policy requires a PA/AP image and there is none.
- ``no_usable_view``: the view policy excludes every image the study has.
- ``no_report``: no report file for the study.
- ``unreadable_report``: the report is binary or could not be read (permission denied, a symlink loop).
- ``report_outside_root``: the report is a symbolic link (or under a linked folder) that leads out of the
  reports tree; it is not read, as image paths that leave the image root are not.
- ``oversized_report``: the report file is over 1 MiB (a radiology report is a few kB: this is another
  file, or many reports run together).
- ``empty_report``: the report has no visible text.
- ``insufficient_text``: the text policy's sections are missing.

A patient must be in exactly one split (the official split is patient-disjoint): a split file that puts
one patient's studies into two splits is an error naming them, not a reject, since every such study would
leak between training and evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.errors import PipelineError
from pipeline.mimic import schema
from pipeline.mimic.views import UNKNOWN_VIEW, is_known_view, view_kind, view_name, view_rank

REJECT_REASONS = (
    "duplicate_dicom",
    "conflicting_ids",
    "not_in_split",
    "no_metadata",
    "no_listed_image",
    "no_frontal",
    "no_usable_view",
    "no_report",
    "unreadable_report",
    "report_outside_root",
    "oversized_report",
    "empty_report",
    "insufficient_text",
)
# (reason, section statuses, detail); no statuses = the study has no report row at all.
REPORT_REJECTS = (
    ("no_report", (), "no s<study_id>.txt for the study in the reports tree"),
    ("unreadable_report", ("binary", "unreadable"), "binary content or an unreadable file"),
    ("report_outside_root", ("outside_root",), "a link that leads out of the reports tree"),
    ("oversized_report", ("truncated",), "report file over 1 MiB"),
    ("empty_report", ("empty",), "no visible text"),
)
STUDY_COLUMNS = schema.STUDY_CSV_COLUMNS
REJECT_COLUMNS = ["study_id", "subject_id", "split", "reason", "detail"]
TEXT_REQUIREMENTS = ("either", "findings", "impression", "both")


class SplitLeakError(PipelineError, ValueError):
    """The split file puts one patient into more than one split."""


def check_patient_splits(split: pd.DataFrame, skip: set[int]) -> None:
    """Raise SplitLeakError naming the patients whose studies (other than `skip`) lie in several splits."""
    rows = split.loc[~split["study_id"].isin(skip), ["subject_id", "split"]].drop_duplicates()
    per_subject = rows.groupby("subject_id")["split"].nunique()
    leaking = rows[rows["subject_id"].isin(per_subject.index[per_subject > 1])]
    leaks = leaking.groupby("subject_id")["split"].agg(lambda s: ", ".join(sorted(s)))
    if len(leaks):
        shown = "; ".join(f"{sid} ({names})" for sid, names in list(leaks.items())[:10])
        raise SplitLeakError(
            f"{schema.SPLIT_FILE}: {len(leaks)} patient(s) in more than one split: {shown}; the official "
            "split is patient-disjoint, so their studies would leak between training and evaluation — "
            "use the release's split file unedited (or put each patient in one split)"
        )


@dataclass(frozen=True)
class ViewPolicy:
    require_frontal: bool = True
    include_lateral: bool = True
    include_other: bool = False
    max_images: int = 4

    def __post_init__(self) -> None:
        if self.max_images < 1:
            raise ValueError(f"max_images must be ≥ 1, got {self.max_images}")


@dataclass(frozen=True)
class TextPolicy:
    require: str = "either"
    fill_from_last_paragraph: bool = False

    def __post_init__(self) -> None:
        if self.require not in TEXT_REQUIREMENTS:
            raise ValueError(f"require must be one of {TEXT_REQUIREMENTS}, got {self.require!r}")


@dataclass(frozen=True)
class StudiesParams:
    views: ViewPolicy = field(default_factory=ViewPolicy)
    text: TextPolicy = field(default_factory=TextPolicy)
    path_style: str = "relative"
    check_image_list: bool = True

    def __post_init__(self) -> None:
        if self.path_style not in ("relative", "absolute"):
            raise ValueError(f"path_style must be 'relative' or 'absolute', got {self.path_style!r}")


@dataclass
class StudyTables:
    splits: dict[str, pd.DataFrame]
    rejects: pd.DataFrame
    summary: dict


class _Rejects:
    """Collects (study → reason, detail); the first reason recorded for a study wins."""

    def __init__(self) -> None:
        self.rows: dict[int, tuple[str, str]] = {}

    def add(self, study_ids, reason: str, details=None) -> None:
        assert reason in REJECT_REASONS, reason
        ids = np.asarray(study_ids, dtype="int64")
        details = [""] * len(ids) if details is None else list(details)
        for sid, detail in zip(ids.tolist(), details, strict=True):
            self.rows.setdefault(sid, (reason, detail))

    def __contains__(self, study_id: int) -> bool:
        return study_id in self.rows

    def mask(self, study_ids: pd.Series) -> pd.Series:
        return study_ids.isin(self.rows.keys())


def _map_unique(values: pd.Series, fn) -> pd.Series:
    """`values.map(fn)` computed once per distinct value (a release has a handful of view names)."""
    uniques = values.unique()
    return values.map(dict(zip(uniques, map(fn, uniques), strict=True)))


def _join_runs(keys: pd.Series, values: pd.Series) -> pd.Series:
    """`;`-join `values` over runs of equal, sorted `keys` (a groupby-join without per-group overhead)."""
    k = keys.to_numpy()
    if not len(k):
        return pd.Series([], index=pd.Index(k, name=keys.name), dtype=object)
    starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
    ends = np.r_[starts[1:], len(k)]
    items = values.tolist()
    joined = [";".join(items[a:b]) for a, b in zip(starts.tolist(), ends.tolist(), strict=True)]
    return pd.Series(joined, index=pd.Index(k[starts], name=keys.name))


def _study_ids_with(frame: pd.DataFrame, bad: pd.Series) -> np.ndarray:
    return np.unique(frame.loc[bad, "study_id"].to_numpy())


def _check_images(
    metadata: pd.DataFrame, split: pd.DataFrame, rejects: _Rejects, counts: dict
) -> pd.DataFrame:
    """Join metadata and split per image; reject studies whose ids disagree. Returns one row per image."""
    exact_dup = metadata.duplicated(keep="first")
    counts["duplicate_metadata_rows_dropped"] = int(exact_dup.sum())
    metadata = metadata.loc[~exact_dup]
    conflict = metadata["dicom_id"].duplicated(keep=False)
    rejects.add(_study_ids_with(metadata, conflict), "duplicate_dicom", None)
    metadata = metadata[["dicom_id", "subject_id", "study_id", "ViewPosition", "StudyDate"]]
    split_dup = split.duplicated(keep="first")
    counts["duplicate_split_rows_dropped"] = int(split_dup.sum())
    split = split.loc[~split_dup]
    split_conflict = split["dicom_id"].duplicated(keep=False)
    rejects.add(_study_ids_with(split, split_conflict), "duplicate_dicom", None)

    for frame, name in ((split, "split"), (metadata, "metadata")):
        per_study = frame.groupby("study_id")["subject_id"].nunique()
        bad = per_study.index[per_study > 1]
        rejects.add(bad, "conflicting_ids", [f"several subject_ids in the {name} file"] * len(bad))
    per_study = split.groupby("study_id")["split"].nunique()
    bad = per_study.index[per_study > 1]
    rejects.add(bad, "conflicting_ids", ["images in more than one split"] * len(bad))
    check_patient_splits(split, set(bad.tolist()))

    merged = metadata.merge(
        split[["dicom_id", "study_id", "subject_id", "split"]],
        on="dicom_id",
        how="outer",
        suffixes=("", "_split"),
        indicator=True,
    )
    both = merged["_merge"] == "both"
    mismatch = both & (
        (merged["study_id"] != merged["study_id_split"])
        | (merged["subject_id"] != merged["subject_id_split"])
    )
    ids = np.unique(
        np.concatenate([merged.loc[mismatch, "study_id"], merged.loc[mismatch, "study_id_split"]])
    )
    rejects.add(
        ids, "conflicting_ids", ["dicom_id with different study/subject in metadata and split"] * len(ids)
    )

    split_only = merged["_merge"] == "right_only"
    meta_only = merged["_merge"] == "left_only"
    counts["split_images_without_metadata"] = int(split_only.sum())
    counts["metadata_images_without_split"] = int(meta_only.sum())
    split_studies = set(split["study_id"].tolist())
    meta_studies = set(metadata["study_id"].tolist())
    no_meta = sorted(split_studies - meta_studies)
    rejects.add(no_meta, "no_metadata", ["no metadata row for any image of the study"] * len(no_meta))
    not_split = sorted(meta_studies - split_studies)
    rejects.add(not_split, "not_in_split", ["metadata rows but no split row"] * len(not_split))

    images = merged.loc[both].drop(columns=["study_id_split", "subject_id_split", "_merge"])
    # One-sided rows made the outer join's id columns float; the matched rows get their integers back.
    images = images.astype({"study_id": "int64", "subject_id": "int64", "StudyDate": "int64"})
    return images.reset_index(drop=True)


def _study_identity(metadata: pd.DataFrame, split: pd.DataFrame) -> pd.DataFrame:
    """study_id → subject_id, split for every study in either file (for reject rows)."""
    ident = pd.concat(
        [split[["study_id", "subject_id", "split"]], metadata[["study_id", "subject_id"]].assign(split="")]
    )
    ident = ident.sort_values(["study_id", "split"], ascending=[True, False], kind="stable")
    return ident.drop_duplicates("study_id").set_index("study_id")


def _select_views(images: pd.DataFrame, policy: ViewPolicy, rejects: _Rejects, counts: dict) -> pd.DataFrame:
    images = images.assign(view_name=_map_unique(images["ViewPosition"], view_name))
    images["kind"] = _map_unique(images["view_name"], view_kind)
    unknown = ~_map_unique(images["view_name"], is_known_view).astype(bool)
    counts["images_with_unrecognised_view"] = int(unknown.sum())
    counts["images_with_blank_view"] = int((images["view_name"] == UNKNOWN_VIEW).sum())
    images["rank"] = view_rank(images["view_name"])
    images = images.sort_values(["study_id", "rank", "dicom_id"], kind="stable")

    has_frontal = (images["kind"] == "frontal").groupby(images["study_id"]).any()
    if policy.require_frontal:
        missing = has_frontal.index[~has_frontal]
        missing = [s for s in missing if s not in rejects]
        rejects.add(missing, "no_frontal", ["no PA or AP image"] * len(missing))
    keep = images["kind"] == "frontal"
    if policy.include_lateral:
        keep |= images["kind"] == "lateral"
    if policy.include_other:
        keep |= images["kind"] == "other"
    counts["images_excluded_by_view_policy"] = int((~keep & ~rejects.mask(images["study_id"])).sum())
    kept = images.loc[keep]
    gone = sorted(set(images["study_id"].tolist()) - set(kept["study_id"].tolist()))
    rejects.add(gone, "no_usable_view", ["the view policy excludes every image"] * len(gone))
    position = kept.groupby("study_id").cumcount()
    over = position >= policy.max_images
    counts["images_over_max_images"] = int((over & ~rejects.mask(kept["study_id"])).sum())
    return kept.loc[~over]


def _text_status(sections: pd.DataFrame, policy: TextPolicy) -> pd.DataFrame:
    sections = sections.set_index("study_id")
    findings = sections["findings"].astype(object)
    if policy.fill_from_last_paragraph:
        fill = findings.isna() & sections["impression"].isna()
        findings = findings.where(~fill, sections["last_paragraph"])
    return pd.DataFrame(
        {"findings": findings, "impression": sections["impression"], "status": sections["status"]}
    )


def assemble_studies(
    metadata: pd.DataFrame,
    split: pd.DataFrame,
    sections: pd.DataFrame,
    labels: pd.DataFrame,
    params: StudiesParams,
    image_list: set[str] | None = None,
    mimic_root: str | Path = ".",
) -> StudyTables:
    """Build the per-split study tables, the rejects and the summary (module docstring has the rules)."""
    counts: dict = {}
    rejects = _Rejects()
    identity = _study_identity(metadata, split)
    images = _check_images(metadata, split, rejects, counts)
    images["relpath"] = [
        schema.image_relpath(s, t, d)
        for s, t, d in zip(images["subject_id"], images["study_id"], images["dicom_id"], strict=True)
    ]

    if image_list is not None:
        listed = pd.Series([p in image_list for p in images["relpath"].tolist()], index=images.index)
        counts["images_not_in_image_list"] = int((~listed).sum())
        unlisted_studies = set(images["study_id"].tolist()) - set(images.loc[listed, "study_id"].tolist())
        rejects.add(
            sorted(unlisted_studies), "no_listed_image", ["not in IMAGE_FILENAMES"] * len(unlisted_studies)
        )
        images = images.loc[listed]

    images = _select_views(images, params.views, rejects, counts)

    dup = sections["study_id"].duplicated(keep=False)
    ids = np.unique(sections.loc[dup, "study_id"])
    rejects.add(ids, "conflicting_ids", ["reports for the study under several subjects"] * len(ids))
    sections = sections.loc[~dup]
    text = _text_status(sections, params.text)
    study_ids = pd.Index(sorted(set(images["study_id"].tolist())), name="study_id")
    subjects = images.groupby("study_id")["subject_id"].first()
    report_subject = sections.set_index("study_id")["subject_id"].reindex(study_ids)
    bad = report_subject.notna() & (report_subject != subjects.reindex(study_ids))
    ids = study_ids[bad.to_numpy()]
    rejects.add(ids, "conflicting_ids", ["report filed under another subject"] * len(ids))
    status = text["status"].reindex(study_ids)
    for reason, statuses, detail in REPORT_REJECTS:
        ids = study_ids[status.isin(statuses).to_numpy() if statuses else status.isna().to_numpy()]
        rejects.add(ids, reason, [detail] * len(ids))
    f = text["findings"].reindex(study_ids).notna().to_numpy()
    i = text["impression"].reindex(study_ids).notna().to_numpy()
    ok = {"either": f | i, "findings": f, "impression": i, "both": f & i}[params.text.require]
    missing = study_ids[~ok]
    rejects.add(missing, "insufficient_text", [f"text policy '{params.text.require}' not met"] * len(missing))

    kept = images.loc[~rejects.mask(images["study_id"])]
    if params.path_style == "absolute":
        root = Path(mimic_root).resolve()
        kept = kept.assign(relpath=[str(root / p) for p in kept["relpath"]])
    kept = kept.sort_values(["study_id", "rank", "dicom_id"], kind="stable")
    grouped = kept.groupby("study_id", sort=True)
    table = pd.DataFrame(
        {
            "image_paths": _join_runs(kept["study_id"], kept["relpath"]),
            "view_names": _join_runs(kept["study_id"], kept["view_name"]),
            "subject_id": grouped["subject_id"].first(),
            "split": grouped["split"].first(),
            "study_date": grouped["StudyDate"].min(),
            "n_images": grouped.size(),
        }
    )
    table = table.join(text[["findings", "impression"]], how="left")
    label_frame = labels.drop(columns=["subject_id"], errors="ignore").set_index("study_id")
    table = table.join(label_frame[schema.LABEL_COLUMNS], how="left")
    counts["studies_without_label_row"] = int((~table.index.isin(label_frame.index)).sum())
    table = table.reset_index()[STUDY_COLUMNS]
    splits = {s: table.loc[table["split"] == s].reset_index(drop=True) for s in schema.SPLITS}

    reject_frame = pd.DataFrame(
        [(sid, *r) for sid, r in sorted(rejects.rows.items())], columns=["study_id", "reason", "detail"]
    )
    ident = identity.reindex(reject_frame["study_id"])
    reject_frame.insert(1, "subject_id", ident["subject_id"].to_numpy())
    reject_frame.insert(2, "split", ident["split"].fillna("").to_numpy())
    reject_frame = reject_frame.astype({"study_id": "int64", "subject_id": "int64"})[REJECT_COLUMNS]
    summary = _summary(splits, reject_frame, sections, counts, identity)
    return StudyTables(splits=splits, rejects=reject_frame, summary=summary)


def _summary(
    splits: dict[str, pd.DataFrame], rejects: pd.DataFrame, sections: pd.DataFrame, counts: dict, identity
) -> dict:
    out_views: dict[str, int] = {}
    for frame in splits.values():
        for names in frame["view_names"]:
            for name in names.split(";"):
                out_views[name] = out_views.get(name, 0) + 1
    kept = pd.concat(splits.values())
    f, i = kept["findings"].notna(), kept["impression"].notna()
    n_sec = max(len(sections), 1)
    return {
        "input_studies": len(identity),
        "output_studies": {s: len(t) for s, t in splits.items()} | {"total": len(kept)},
        "output_images": {s: int(t["n_images"].sum()) for s, t in splits.items()},
        "rejected_studies": len(rejects),
        "reject_reasons": {r: int((rejects["reason"] == r).sum()) for r in REJECT_REASONS},
        "rejects_by_split": {(s or "none"): int((rejects["split"] == s).sum()) for s in (*schema.SPLITS, "")},
        "section_coverage_output": {
            "findings": round(float(f.mean()), 4) if len(kept) else 0.0,
            "impression": round(float(i.mean()), 4) if len(kept) else 0.0,
            "both": round(float((f & i).mean()), 4) if len(kept) else 0.0,
        },
        "section_coverage_reports": {
            "reports": len(sections),
            "findings": round(float(sections["findings"].notna().sum() / n_sec), 4),
            "impression": round(float(sections["impression"].notna().sum() / n_sec), 4),
            "neither": round(
                float((sections["findings"].isna() & sections["impression"].isna()).sum() / n_sec), 4
            ),
            "decode_errors": int((sections["status"] == "decode_errors").sum()),
        },
        "views": dict(sorted(out_views.items())),
        "counts": counts,
    }


def write_tables(tables: StudyTables, out_dir: str | Path) -> None:
    """`{train,validate,test}.csv` and `rejects.csv`, each written atomically."""
    from pipeline.io import write_csv

    out_dir = Path(out_dir)
    for split, frame in tables.splits.items():
        write_csv(out_dir / f"{split}.csv", frame)
    write_csv(out_dir / "rejects.csv", tables.rejects)
