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


def bomb_header(path: Path) -> None:
    """A valid PNG whose header claims 30000×30000 pixels (Pillow's decompression-bomb error)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))  # fmt: skip


def symlink_loop(path: Path) -> None:
    path.unlink()
    path.symlink_to(path.name)


def nul_in_path(frame: pd.DataFrame, ws: Workspace):
    del ws
    first = frame.loc[4, "image_paths"].split(";")[0]
    return _first_path(frame, 4, first.replace("/s", "/s\x00", 1)), [int(frame.loc[4, "study_id"])]


def long_name(frame: pd.DataFrame, ws: Workspace):
    del ws
    return _first_path(frame, 5, "files/p10/" + "x" * 300 + ".jpg"), [int(frame.loc[5, "study_id"])]


def set_study_cell(column: str, value: Callable[[str], str], row: int = 6):
    """Edit one cell; the touched study is the row's (none when the id itself is replaced)."""

    def fn(frame: pd.DataFrame, ws: Workspace):
        del ws
        sid = int(frame.loc[row, "study_id"])
        frame.loc[row, column] = value(frame.loc[row, column])
        return frame, [] if column == "study_id" else [sid]

    return fn


def same_image_twice(paths: str) -> str:
    return ";".join([paths.split(";")[0], *paths.split(";")])


def many_images(paths: str) -> str:
    return ";".join([paths.split(";")[0]] * 10_000)


def raw_study_csv(fn: Callable[[bytes], bytes], split: str = "train"):
    def corrupt(ws: Workspace) -> list[int]:
        path = ws.path / "studies" / f"{split}.csv"
        path.write_bytes(fn(path.read_bytes()))
        return []

    return corrupt


def latin1_cell(data: bytes) -> bytes:
    lines = data.split(b"\n")
    lines[2] = lines[2].replace(b",", b",caf\xe9 ", 1)
    return b"\n".join(lines)


def extra_cells(data: bytes) -> bytes:
    lines = data.split(b"\n")
    lines[3] += b",extra,cells"
    return b"\n".join(lines)


def copy_to_split(which: str, change_study: bool):
    """Copy a train row into `which`.csv: the same study (change_study=False) or, with a new study id, the
    same patient — either leaks between the splits."""

    def corrupt(ws: Workspace) -> list[int]:
        train = pd.read_csv(ws.path / "studies" / "train.csv", dtype=str, keep_default_na=False)
        path = ws.path / "studies" / f"{which}.csv"
        other = pd.read_csv(path, dtype=str, keep_default_na=False)
        row = train.iloc[[0]].assign(split=which)
        if change_study:
            row = row.assign(study_id="59999999")
        pd.concat([other, row], ignore_index=True).to_csv(path, index=False)
        return []

    return corrupt


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
    # -- round 2 (issue 17) ----------------------------------------------------------------------------
    # 1. split leakage at the shard stage's door
    Case("study CSV: a train study also in test.csv", copy_to_split("test", change_study=False),
         Fails("shards", (r"1 study id\(s\) in more than one split: \d{8} \(train, test\)", "exactly one split"))),
    Case("study CSV: a train patient in validate.csv", copy_to_split("validate", change_study=True),
         Fails("shards", (r"1 patient\(s\) in more than one split: \d{8} \(train, validate\)",))),
    # 3. every per-file failure is a counted reject
    Case("image: decompression-bomb header", replace_image(bomb_header), Rejected("too_large")),
    Case("image: symlink loop", replace_image(symlink_loop), Rejected("unreadable")),
    Case("study CSV: NUL byte in a path", edit_study_csv(nul_in_path), Rejected("unsafe_path")),
    Case("study CSV: file name too long", edit_study_csv(long_name), Rejected("unreadable")),
    # 5. the study CSV contract at the door
    Case("study CSV: empty file", raw_study_csv(lambda b: b""),
         Fails("shards", ("train.csv: file is empty", "dvc repro studies"))),
    Case("study CSV: Latin-1 byte", raw_study_csv(latin1_cell),
         Fails("shards", (r"train.csv: line 3: not UTF-8 \(byte 0xe9", "save it as UTF-8"))),
    Case("study CSV: a row with too many fields", raw_study_csv(extra_cells),
         Fails("shards", ("train.csv: not a readable CSV",))),
    Case("study CSV: 120-digit study_id", edit_study_csv(set_study_cell("study_id", lambda v: "5" * 120)),
         Rejected("bad_row")),
    Case("study CSV: negative subject_id", edit_study_csv(set_study_cell("subject_id", lambda v: "-" + v)),
         Rejected("bad_row")),
    Case("study CSV: one image listed twice",
         edit_study_csv(set_study_cell("image_paths", same_image_twice)), Rejected("bad_row")),
    Case("study CSV: 10,000 images in one study",
         edit_study_csv(set_study_cell("image_paths", many_images)), Rejected("bad_row")),
    # 8. params.yaml types
    Case("params: splits is empty", params_edit(lambda p: p["shards"].update(splits=[])),
         Fails("shards", ("params.yaml:shards: splits is empty",))),
    Case("params: a number written as text", params_edit(lambda p: p["shards"].update(max_reject_fraction="1e-2")),
         Fails("shards", ("params.yaml:shards.max_reject_fraction: expected a number, got '1e-2'", "decimal point"))),
    Case("params: negative shards seed", params_edit(lambda p: p["shards"].update(seed=-1)),
         Fails("shards", (r"params.yaml:shards.seed: a seed must lie in 0",))),
]  # fmt: skip
