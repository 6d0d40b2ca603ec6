from __future__ import annotations

import io
import json
import math
import os
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pipeline.config import ConfigError, build
from pipeline.imaging import ImageReject, load_resized, resolve_image_path, shorter_side_size
from pipeline.mimic import schema
from pipeline.shards import (
    REJECT_REASONS,
    ShardsConfig,
    ShardsError,
    create_shards,
    decode_study,
    iter_tar_samples,
    load_index,
    read_study_csv,
)
from pipeline.shards.writer import plan_shards

VIEW_SETS = [("PA", "LATERAL"), ("AP",), ("PA", "LL", "AP AXIAL"), ("LATERAL",), ("AP", "LATERAL")]
LABEL_CELLS = ["1.0", "0.0", "-1.0", ""]


def synthetic_xray(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    base = 60 + 120 * np.exp(-(((xx - w / 2) / (0.3 * w)) ** 2 + ((yy - h / 2) / (0.4 * h)) ** 2))
    level = rng.integers(-40, 40)
    arr = np.clip(base + level + rng.normal(0, 8, size=(h, w)), 0, 255).astype(np.uint8)
    return Image.fromarray(arr, mode="L")


def make_study_fixture(
    root: Path, n_per_split: dict[str, int], size: tuple[int, int] = (80, 96), seed: int = 0
) -> tuple[Path, Path, dict[int, dict]]:
    """A MIMIC-shaped image tree + study CSVs; returns (mimic_root, studies_dir, truth by study_id)."""
    rng = np.random.default_rng(seed)
    mimic, studies = root / "mimic", root / "studies"
    studies.mkdir(parents=True, exist_ok=True)
    truth: dict[int, dict] = {}
    study_id = 50000000
    for split, n in n_per_split.items():
        records = []
        for i in range(n):
            study_id += 7
            subject_id = 10000000 + 13 * i + 1000 * len(split)
            views = VIEW_SETS[i % len(VIEW_SETS)]
            paths, means = [], []
            for j, _view in enumerate(views):
                rel = schema.image_relpath(subject_id, study_id, f"{study_id:08x}-{j:04d}")
                image = synthetic_xray(rng, size)
                (mimic / rel).parent.mkdir(parents=True, exist_ok=True)
                image.save(mimic / rel, format="JPEG", quality=95)
                paths.append(rel)
                means.append(float(np.asarray(Image.open(mimic / rel)).mean()))
            findings = "" if i % 4 == 1 else f"No pleural effusion. Heart size is normal. Study {i}."
            impression = "" if i % 4 == 2 else f"No acute process {i}."
            labels = [LABEL_CELLS[(i + k) % 4] for k in range(len(schema.LABEL_COLUMNS))]
            record = {
                "study_id": study_id,
                "image_paths": ";".join(paths),
                "view_names": ";".join(views),
                "findings": findings,
                "impression": impression,
                "subject_id": subject_id,
                "split": split,
                "study_date": 21500101 + i,
                "n_images": len(paths),
                **dict(zip(schema.LABEL_COLUMNS, labels, strict=True)),
            }
            records.append(record)
            truth[study_id] = {**record, "means": means}
        pd.DataFrame(records).to_csv(studies / f"{split}.csv", index=False)
    return mimic, studies, truth


def small_cfg(**kw) -> ShardsConfig:
    return ShardsConfig(**{"image_size": 32, "samples_per_shard": 4, "workers": 1, **kw})


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    mimic, studies, truth = make_study_fixture(root, {"train": 11, "validate": 3, "test": 5})
    out = root / "out"
    summary = create_shards(studies, mimic, out, small_cfg())
    return mimic, studies, out, truth, summary


def read_all(split_dir: Path) -> list[dict]:
    return [raw for p in sorted(split_dir.glob("shard-*.tar")) for raw in iter_tar_samples(p)]


def test_round_trip_ids_labels_texts_pixels(built):
    _, _, out, truth, summary = built
    assert summary["n_rejected_images"] == 0 and summary["n_rejected_studies"] == 0
    for split, n in {"train": 11, "validate": 3, "test": 5}.items():
        samples = [decode_study(raw) for raw in read_all(out / split)]
        assert len(samples) == n == load_index(out / split)["n_samples"]
        for s in samples:
            t = truth[s.study_id]
            assert (s.subject_id, s.split, s.views) == (t["subject_id"], split, t["view_names"].split(";"))
            assert (s.findings, s.impression) == (t["findings"], t["impression"])
            expected = [math.nan if t[c] == "" else float(t[c]) for c in schema.LABEL_COLUMNS]
            np.testing.assert_array_equal(s.labels, expected)
            for image, mean in zip(s.images, t["means"], strict=True):
                assert image.mode == "L" and min(image.size) == 32
                assert image.size == shorter_side_size((80, 96), 32)
                assert abs(np.asarray(image, dtype=float).mean() - mean) < 3.0


def test_order_train_shuffled_seeded_others_in_csv_order(built):
    _, studies, out, _, _ = built
    for split in ("validate", "test"):
        csv_ids = pd.read_csv(studies / f"{split}.csv")["study_id"].tolist()
        assert [int(r["__key__"][1:]) for r in read_all(out / split)] == csv_ids
    rows, _ = read_study_csv(studies / "train.csv", "train")
    order = [r.study_id for t in plan_shards(rows, "train", "", small_cfg()) for r in t.rows]
    assert [int(r["__key__"][1:]) for r in read_all(out / "train")] == order
    assert order != [r.study_id for r in rows] and sorted(order) == sorted(r.study_id for r in rows)
    other = [r.study_id for t in plan_shards(rows, "train", "", small_cfg(seed=7)) for r in t.rows]
    assert other != order


def test_index_and_tar_metadata(built):
    _, _, out, _, _ = built
    index = load_index(out / "train")
    assert [s["n_samples"] for s in index["shards"]] == [4, 4, 3]
    assert index["params"]["image_size"] == 32 and "workers" not in index["params"]
    with tarfile.open(out / "train" / "shard-000000.tar") as tar:
        members = tar.getmembers()
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) for m in members} == {(0, 0, 0, "", "", 0o444)}
    assert members[0].name.startswith("s") and members[0].name.endswith(".img0.jpg")
    assert not list((out / "train").glob(".*"))


def test_byte_identical_across_runs_and_worker_counts(built, tmp_path):
    mimic, studies, out, _, _ = built
    again = tmp_path / "again"
    create_shards(studies, mimic, again, small_cfg(workers=2))
    for split in ("train", "validate", "test"):
        for path in sorted((out / split).iterdir()):
            assert path.read_bytes() == (again / split / path.name).read_bytes(), path


def test_rerun_after_interruption_gives_same_bytes(built, tmp_path):
    mimic, studies, out, _, _ = built
    again = tmp_path / "again"
    create_shards(studies, mimic, again, small_cfg())
    victim = again / "train" / "shard-000001.tar"
    victim.write_bytes(victim.read_bytes()[:5000])  # a half-written shard from a killed run
    (again / "train" / ".shard-000002.tar.x.tar.tmp").write_bytes(b"junk")
    (again / "train" / "shard-000099.tar").write_bytes(b"stale")
    (again / "train" / "index.json").unlink()
    create_shards(studies, mimic, again, small_cfg())
    assert sorted(p.name for p in (again / "train").iterdir()) == sorted(
        p.name for p in (out / "train").iterdir()
    )
    for path in (out / "train").iterdir():
        assert path.read_bytes() == (again / "train" / path.name).read_bytes()


def _write_bad_inputs(mimic: Path, studies: Path) -> dict[str, str]:
    """Replace images of the fixture's first train studies by each kind of bad file."""
    frame = pd.read_csv(studies / "train.csv", dtype=str, keep_default_na=False)
    first = [row.split(";")[0] for row in frame["image_paths"]]
    good = (mimic / first[0]).read_bytes()
    bad = {
        "empty_file": b"",
        "truncated": good[: len(good) // 2],
        "not_an_image": b"<html>403 Forbidden</html>",
        "missing": None,
        "too_small": Image.new("L", (1, 1), 128),
    }
    reasons = {}
    for rel, (reason, content) in zip(first, bad.items(), strict=False):
        path = mimic / rel
        if content is None:
            path.unlink()
        elif isinstance(content, Image.Image):
            content.save(path, format="JPEG")
        else:
            path.write_bytes(content)
        reasons[rel] = reason
    deep = np.linspace(0, 65535, 80 * 96).reshape(96, 80).astype(np.uint16)
    Image.fromarray(deep).save(mimic / first[5], format="PNG")  # 16-bit grayscale behind a .jpg name
    return reasons


def test_bad_images_are_counted_rejects(tmp_path):
    mimic, studies, _ = make_study_fixture(tmp_path, {"train": 8})
    expected = _write_bad_inputs(mimic, studies)
    frame = pd.read_csv(studies / "train.csv", dtype=str, keep_default_na=False)
    frame.loc[7, "image_paths"] = "../../etc/passwd;" + frame.loc[7, "image_paths"].split(";", 1)[1]
    frame.to_csv(studies / "train.csv", index=False)
    expected["../../etc/passwd"] = "unsafe_path"
    summary = create_shards(
        studies, mimic, tmp_path / "out", small_cfg(max_reject_fraction=1.0, splits=("train",))
    )
    rejects = pd.read_csv(tmp_path / "out" / "rejects.csv", dtype=str, keep_default_na=False)
    got = dict(zip(rejects["image_path"], rejects["reason"], strict=True))
    study_level = got.pop("", None)
    assert got == expected
    assert set(rejects["reason"]) <= set(REJECT_REASONS)
    # study index 1 and 3 have a single image: both lose their only image and are rejected as studies
    assert study_level == "no_readable_image" and summary["n_rejected_studies"] == 2
    assert summary["n_rejected_images"] == 6
    samples = {s.study_id: s for s in map(decode_study, read_all(tmp_path / "out" / "train"))}
    assert len(samples) == 6
    deep = samples[int(frame.loc[5, "study_id"])]
    arr = np.asarray(deep.images[0])
    assert arr.min() <= 5 and arr.max() >= 250  # 16-bit range stretched, not clipped or shifted to black


def test_reject_limit_fails_with_clear_message(tmp_path):
    mimic, studies, _ = make_study_fixture(tmp_path, {"train": 8})
    _write_bad_inputs(mimic, studies)
    with pytest.raises(ShardsError, match=r"rejected .*max_reject_fraction.*rejects.csv"):
        create_shards(
            studies, mimic, tmp_path / "out", small_cfg(max_reject_fraction=0.05, splits=("train",))
        )
    assert (tmp_path / "out" / "rejects.csv").is_file()
    assert not (tmp_path / "out" / "train" / "index.json").exists()


def test_bad_rows_are_rejected_with_reasons(tmp_path):
    _, studies, _ = make_study_fixture(tmp_path, {"test": 5})
    frame = pd.read_csv(studies / "test.csv", dtype=str, keep_default_na=False)
    frame.loc[0, "view_names"] = "PA;LATERAL;AP"
    frame.loc[1, "Edema"] = "2.0"
    frame.loc[3, "study_id"] = frame.loc[2, "study_id"]
    frame.to_csv(studies / "test.csv", index=False)
    rows, rejects = read_study_csv(studies / "test.csv", "test")
    assert len(rows) == 2
    assert [r["reason"] for r in rejects] == ["bad_row", "bad_row", "duplicate_study"]
    assert "view_names" in rejects[0]["detail"] and "Edema" in rejects[1]["detail"]
    frame.drop(columns=["impression"]).to_csv(studies / "test.csv", index=False)
    with pytest.raises(ShardsError, match="missing columns.*impression"):
        read_study_csv(studies / "test.csv", "test")


def test_resolve_image_path_stays_inside_root(tmp_path):
    root = tmp_path / "root"
    (root / "files").mkdir(parents=True)
    assert resolve_image_path(root, "files/a.jpg") == (root / "files/a.jpg").resolve()
    assert resolve_image_path(root, str(root / "files/a.jpg")) == (root / "files/a.jpg").resolve()
    for bad in ("files/../../x.jpg", "/etc/passwd", ""):
        with pytest.raises(ImageReject) as info:
            resolve_image_path(root, bad)
        assert info.value.reason == "unsafe_path"


def test_draft_decode_keeps_quality_and_size():
    rng = np.random.default_rng(1)
    image = synthetic_xray(rng, (1000, 1200))
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=95)
    small, info = load_resized(buf.getvalue(), 128)
    assert info.drafted_size == (250, 300) and small.size == (128, 154)
    reference = image.resize(small.size, Image.Resampling.LANCZOS)
    diff = np.abs(np.asarray(small, dtype=float) - np.asarray(reference, dtype=float))
    assert diff.mean() < 2.0


def test_config_is_typed_and_checked():
    cfg = build(ShardsConfig, {"image_size": 224, "splits": ["test"]}, "params.yaml:shards")
    assert cfg.image_size == 224 and cfg.splits == ("test",)
    with pytest.raises(ConfigError, match="did you mean 'image_size'"):
        build(ShardsConfig, {"image_sise": 224}, "params.yaml:shards")
    with pytest.raises(ConfigError, match="resample"):
        build(ShardsConfig, {"resample": "nearest"}, "params.yaml:shards")


def test_missing_inputs_give_actionable_errors(tmp_path):
    with pytest.raises(ShardsError, match="image root not found"):
        create_shards(tmp_path, tmp_path / "nope", tmp_path / "out", small_cfg())
    with pytest.raises(ShardsError, match="study CSV not found"):
        create_shards(tmp_path, tmp_path, tmp_path / "out", small_cfg())
    with pytest.raises(ShardsError, match="run the `shards` stage"):
        load_index(tmp_path)


def test_sample_json_is_sorted_and_complete(built):
    _, _, out, _, _ = built
    raw = read_all(out / "test")[0]
    meta = json.loads(raw["json"])
    assert list(meta) == sorted(meta)
    assert set(meta) == {"study_id", "subject_id", "split", "study_date", "views", "image_paths", "labels"}
    assert len(meta["labels"]) == 14


def test_stage_entry_point(tmp_path):
    import subprocess
    import sys

    mimic, studies, _ = make_study_fixture(tmp_path, {"test": 3})
    params = tmp_path / "params.yaml"
    params.write_text("shards:\n  image_size: 32\n  splits: [test]\n  workers: 1\n")
    cmd = [sys.executable, "stages/shards.py", "--studies", str(studies), "--mimic-root", str(mimic)]
    cmd += ["--out", str(tmp_path / "out"), "--params", str(params)]
    root = Path(__file__).resolve().parents[1]
    env = {"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(cmd, cwd=root, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert "test: 3 studies" in done.stdout and load_index(tmp_path / "out" / "test")["n_samples"] == 3
    params.write_text("shards:\n  imagesize: 32\n")
    done = subprocess.run(cmd, cwd=root, capture_output=True, text=True, env=env)
    assert (
        done.returncode == 2 and "did you mean 'image_size'" in done.stderr and "Traceback" not in done.stderr
    )


def test_every_per_file_failure_is_a_reject_reason(tmp_path, monkeypatch):
    """The OS refusing a file (permission, loop, long name, NUL) and a hostile header are each a counted
    reject with its reason, never an exception out of the shard writer."""
    import errno

    from pipeline.imaging import IMAGE_REJECT_REASONS, read_image_bytes

    image = tmp_path / "a.jpg"
    synthetic_xray(np.random.default_rng(0), (64, 64)).save(image, format="JPEG")
    loop = tmp_path / "loop.jpg"
    loop.symlink_to("loop.jpg")
    cases = {
        "files/\x00/a.jpg": "unsafe_path",
        "loop.jpg": "unreadable",
        "x" * 300 + ".jpg": "unreadable",
    }
    for path, reason in cases.items():
        with pytest.raises(ImageReject) as info:
            read_image_bytes(resolve_image_path(tmp_path, path))
        assert info.value.reason == reason, path
    real = os.open

    def denied(path, *args, **kwargs):
        if os.path.basename(path) == "a.jpg":
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", denied)
    with pytest.raises(ImageReject) as info:
        read_image_bytes(resolve_image_path(tmp_path, "a.jpg"))
    assert info.value.reason == "unreadable" and "Permission denied" in info.value.detail
    assert {"too_large", "unreadable"} <= set(IMAGE_REJECT_REASONS) <= set(REJECT_REASONS)


def test_a_fifo_or_a_folder_as_an_image_is_a_reject_without_waiting(tmp_path):
    """Opening a FIFO for reading waits for a writer forever: the image reader must not block on one."""
    import threading

    from pipeline.imaging import read_image_bytes

    os.mkfifo(tmp_path / "pipe.jpg")
    (tmp_path / "dir.jpg").mkdir()
    outcome: dict = {}

    def read(name: str) -> None:
        try:
            read_image_bytes(resolve_image_path(tmp_path, name))
        except ImageReject as exc:
            outcome[name] = exc.reason

    for name, reason in (("pipe.jpg", "unreadable"), ("dir.jpg", "not_an_image")):
        worker = threading.Thread(target=read, args=(name,), daemon=True)
        worker.start()
        worker.join(timeout=30)
        if worker.is_alive():  # unblock the reader so the test process can end
            with open(tmp_path / "pipe.jpg", "wb"):
                pass
            pytest.fail(f"reading {name} blocked")
        assert outcome[name] == reason


def test_decoder_bugs_and_memory_errors_are_not_rejects(monkeypatch):
    """Only Pillow's failure types on bad bytes are `undecodable`; a bug of ours (TypeError) keeps its
    traceback and a MemoryError propagates, so an image's verdict never depends on free memory."""
    from pipeline import imaging

    buf = io.BytesIO()
    synthetic_xray(np.random.default_rng(0), (64, 64)).save(buf, format="JPEG")
    for error in (TypeError("our bug"), MemoryError()):

        def fail(*args, error=error, **kwargs):
            raise error

        monkeypatch.setattr(imaging, "to_gray8", fail)
        with pytest.raises(type(error)):
            load_resized(buf.getvalue(), 32)


def test_decompression_bomb_headers_are_too_large(tmp_path):
    import struct
    import zlib

    def png(width: int, height: int) -> bytes:
        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

        ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
        return (
            b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\0"))
            + chunk(b"IEND", b"")
        )

    for size in (12000, 30000):  # over the warning threshold (89 M px), over the error threshold
        with pytest.raises(ImageReject) as info:
            load_resized(png(size, size), 32)
        assert info.value.reason == "too_large"


def test_study_csv_contract_at_the_door(tmp_path):
    _, studies, _ = make_study_fixture(tmp_path, {"train": 6})
    path = studies / "train.csv"
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame.loc[0, "study_id"] = "9" * 120
    frame.loc[1, "subject_id"] = "-" + frame.loc[1, "subject_id"]
    first = frame.loc[2, "image_paths"].split(";")[0]
    frame.loc[2, "image_paths"] = f"{first};{frame.loc[2, 'image_paths']}"
    frame.loc[2, "view_names"] = f"PA;{frame.loc[2, 'view_names']}"
    frame.loc[3, "image_paths"] = ";".join([first] * 10_000)
    frame.to_csv(path, index=False)
    rows, rejects = read_study_csv(path, "train")
    details = [r["detail"] for r in rejects]
    assert len(rows) == 2 and [r["reason"] for r in rejects] == ["bad_row"] * 4
    assert "at most 8 digits" in details[0] and "subject_id='-1" in details[1]
    assert "listed more than once" in details[2] and "10000 image_paths" in details[3]
    for data, message in [
        (b"", "file is empty"),
        (path.read_bytes().replace(b"No acute", b"No \xe9acute", 1), r"line \d+: not UTF-8 \(byte 0xe9"),
    ]:
        path.write_bytes(data)
        with pytest.raises(ShardsError, match=message):
            read_study_csv(path, "train")


def test_a_study_or_patient_in_two_splits_is_refused(tmp_path):
    mimic, studies, _ = make_study_fixture(tmp_path, {"train": 4, "test": 3})
    train = pd.read_csv(studies / "train.csv", dtype=str, keep_default_na=False)
    test = pd.read_csv(studies / "test.csv", dtype=str, keep_default_na=False)
    leaked = train.iloc[[1]].assign(split="test")
    pd.concat([test, leaked]).to_csv(studies / "test.csv", index=False)
    sid, subject = leaked["study_id"].item(), leaked["subject_id"].item()
    with pytest.raises(
        ShardsError,
        match=rf"study id\(s\) in more than one split: {sid} \(train, test\).*patient\(s\) in more than one split: {subject} \(train, test\)",
    ):
        create_shards(
            studies, mimic, tmp_path / "out", small_cfg(splits=("train",))
        )  # also when one split is built
    assert not (tmp_path / "out" / "train" / "index.json").exists()
