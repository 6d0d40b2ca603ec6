"""The corpus cases of images and study CSVs (the shards stage)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from corpus import Case, Fails, Kept, Rejected, Workspace, both, params_edit
from PIL import Image

# -- corruptions: images and study CSVs (shards stage) ------------------------------------------------


def replace_image(make: Callable[[Path], None], k: int = 0, only_image: bool = False):
    """Replace the first (frontal) image of the k-th train study with what `make` writes."""

    def corrupt(ws: Workspace) -> list[int]:
        frame = ws.good["studies"]["train"]
        n = frame["n_images"].astype(int)
        rows = frame.loc[(n == 1) if only_image else (n >= 2)]
        row = rows.iloc[k].to_dict()
        make(ws.release.image(row["image_paths"].split(";")[0]))
        return [int(row["study_id"])]

    return corrupt


def zero_bytes(path: Path) -> None:
    path.write_bytes(b"")


def truncated_jpeg(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def html_page(path: Path) -> None:
    path.write_bytes(b"<html><body>403 Forbidden</body></html>")


def cmyk_jpeg(path: Path) -> None:
    Image.open(path).convert("CMYK").save(path, format="JPEG", quality=95)


def png_16bit(path: Path) -> None:
    gray = np.asarray(Image.open(path).convert("L"), dtype=np.uint16) * 257
    Image.fromarray(gray).save(path, format="PNG")


def one_pixel(path: Path) -> None:
    Image.new("L", (1, 1), 128).save(path, format="JPEG")


def delete(path: Path) -> None:
    path.unlink()


def edit_study_csv(fn: Callable[[pd.DataFrame, Workspace], tuple[pd.DataFrame, list[int]]]):
    def corrupt(ws: Workspace) -> list[int]:
        path = ws.path / "studies" / "train.csv"
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        frame, touched = fn(frame, ws)
        frame.to_csv(path, index=False)
        return touched

    return corrupt


def _first_path(frame: pd.DataFrame, row: int, path: str) -> pd.DataFrame:
    paths = frame.loc[row, "image_paths"].split(";")
    frame.loc[row, "image_paths"] = ";".join([path, *paths[1:]])
    return frame


def dotdot_path(frame: pd.DataFrame, ws: Workspace):
    del ws
    return _first_path(frame, 0, "files/../../../../etc/passwd"), [int(frame.loc[0, "study_id"])]


def outside_absolute_path(frame: pd.DataFrame, ws: Workspace):
    secret = ws.path / "outside.jpg"
    shutil.copy(ws.release.image(frame.loc[1, "image_paths"].split(";")[0]), secret)
    return _first_path(frame, 1, str(secret)), [int(frame.loc[1, "study_id"])]


def inside_absolute_path(frame: pd.DataFrame, ws: Workspace):
    first = frame.loc[2, "image_paths"].split(";")[0]
    return _first_path(frame, 2, str(ws.release.image(first).resolve())), [int(frame.loc[2, "study_id"])]


def duplicate_study_row(frame: pd.DataFrame, ws: Workspace):
    del ws
    return pd.concat([frame, frame.iloc[[0]]], ignore_index=True), []


def bad_label_cell(frame: pd.DataFrame, ws: Workspace):
    del ws
    frame.loc[3, "Edema"] = "maybe"
    return frame, [int(frame.loc[3, "study_id"])]


def drop_study_column(frame: pd.DataFrame, ws: Workspace):
    del ws
    return frame.drop(columns=["view_names"]), []


SHARD_CASES = [
    Case("image: zero bytes", replace_image(zero_bytes), Rejected("empty_file")),
    Case("image: truncated JPEG", replace_image(truncated_jpeg), Rejected("truncated")),
    Case("image: not a JPEG", replace_image(html_page), Rejected("not_an_image")),
    Case("image: CMYK JPEG", replace_image(cmyk_jpeg), Kept(counts={"JPEG/CMYK": 1}, changed=True)),
    Case("image: 16-bit PNG behind .jpg", replace_image(png_16bit), Kept(counts={"PNG/I;16": 1}, changed=True)),
    Case("image: 1×1", replace_image(one_pixel), Rejected("too_small")),
    Case("image: missing", replace_image(delete), Rejected("missing")),
    Case("image: a study's only image unreadable", replace_image(zero_bytes, only_image=True),
         Rejected("no_readable_image")),
    Case("study CSV: path with ..", edit_study_csv(dotdot_path), Rejected("unsafe_path")),
    Case("study CSV: absolute path outside the root", edit_study_csv(outside_absolute_path), Rejected("unsafe_path")),
    Case("study CSV: absolute path inside the root", edit_study_csv(inside_absolute_path), Kept(changed=True)),
    Case("study CSV: duplicate study row", edit_study_csv(duplicate_study_row), Rejected("duplicate_study")),
    Case("study CSV: label outside the set", edit_study_csv(bad_label_cell), Rejected("bad_row")),
    Case("study CSV: missing column", edit_study_csv(drop_study_column),
         Fails("shards", ("train.csv: missing columns", "view_names", "study CSV contract"))),
    Case("params: more rejects than allowed",
         both(replace_image(zero_bytes), params_edit(lambda p: p["shards"].update(max_reject_fraction=0.0))),
         Fails("shards", ("rejected", "max_reject_fraction"))),
    Case("params: unknown shards key", params_edit(lambda p: p["shards"].update(img_size=64)),
         Fails("shards", (r"unknown key 'img_size' \(did you mean 'image_size'\?\)",))),
]  # fmt: skip
