"""Golden bytes of the data river: a tiny synthetic release and its shards hash to committed constants.

The release and the shards must be bit-identical on every x86-64 machine with the pinned packages: DVC
hashes them, and a user on another machine must get the data (and so the models) this project shipped.
numpy's transcendental ufuncs once made a few JPEGs differ between an AVX-512 and an AVX2 machine; these
tests make such a difference fail CI instead of silently producing other data.

Regenerate the constants only after an intended change to the generator or the shard writer (or a
deliberate package upgrade), with `.venv/bin/python tests/test_golden_data.py`, and say why in the commit.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pandas as pd
import pytest

from pipeline.buildinfo import build_info, numpy_simd, tree_sha256
from pipeline.mimic import schema
from pipeline.shards import ShardsConfig, create_shards
from pipeline.synthetic import images
from pipeline.synthetic.generate import JPG_DIR, TRUTH_FILE, SplitFractions, SynthesizeParams, synthesize

ROOT = Path(__file__).resolve().parents[1]
# Seed 11 with 10 patients draws 17 of the 18 finding/incidental kinds, all view kinds and devices, and
# at image_scale 0.08 every image is taller than the 200-row working grid (so the upsampling path runs).
# Every value spelled out, so a change of the defaults (params.yaml's home) does not move the constants.
TINY = SynthesizeParams(
    seed=11,
    n_patients=10,
    split_fractions=SplitFractions(train=0.76, validate=0.12, test=0.12),
    image_scale=0.08,
    images=True,
    workers=1,
)
TINY_SHARDS = ShardsConfig(
    image_size=48,
    samples_per_shard=8,
    jpeg_quality=95,
    resample="lanczos",
    min_image_side=32,
    max_reject_fraction=0.01,
    seed=42,
    shuffle_train=True,
    workers=1,
    splits=("train", "validate", "test"),
)
# release / shards: (sha256 over the tree, number of files) from `tree_sha256`; pixels: (sha256 over every
# image's float32 intensities before quantisation, number of images). A last-bit difference rarely survives
# the rounding to uint8 in a release this small, but it always shows in the float pixels.
GOLDEN = {
    "release": ("cfc7a23ce73dc2a4f751b6c5a33ccb813f2dc485c0e6d817d5389d43a24353fb", 72),
    "pixels": ("9e7aea2e474089acddae0f5c6ef8e228613e1504840737179defb11b3e8965bf", 40),
    "shards": ("40bdf56ecd8dc09b31dc9c978c44d60f1daeb8ff70cee8f028de80c9fd2b9e2b", 10),
}
# The builds GOLDEN was made with (the bytes of JPEG, gzip and parquet files depend on them).
GOLDEN_BUILD = {
    "numpy": "2.4.6",
    "pillow": "13.0.0",
    "libjpeg_turbo": "3.2.0",
    "zlib": "1.2.13",
    "pandas": "3.1.1",
    "pyarrow": "25.0.1",
}


def write_study_csvs(release: Path, out: Path) -> None:
    """Study CSVs straight from the release's metadata and truth sidecar, one row per study with every
    image, so the shard hash depends on the images and the shard writer, not on the text stages."""
    meta = pd.read_csv(release / JPG_DIR / schema.METADATA_FILE, dtype=str, keep_default_na=False)
    truth = pd.read_parquet(release / TRUTH_FILE).set_index("study_id")
    out.mkdir(parents=True, exist_ok=True)
    rows: dict[str, list[dict]] = {split: [] for split in schema.SPLITS}
    for study_id, study_images in meta.groupby("study_id", sort=False):
        study = truth.loc[int(study_id)]
        paths = [
            schema.image_relpath(int(r.subject_id), int(r.study_id), r.dicom_id)
            for r in study_images.itertuples()
        ]
        labels = {c: "" if pd.isna(study[c]) else f"{study[c]:.1f}" for c in schema.LABEL_COLUMNS}
        rows[study["split"]].append(
            {
                "study_id": study_id,
                "image_paths": ";".join(paths),
                "view_names": ";".join(study_images["ViewPosition"]),
                "findings": study["findings"] or "",
                "impression": study["impression"] or "",
                "subject_id": study_images["subject_id"].iloc[0],
                "split": study["split"],
                "study_date": study_images["StudyDate"].iloc[0],
                "n_images": len(paths),
                **labels,
            }
        )
    for split, records in rows.items():
        pd.DataFrame(records, columns=schema.STUDY_CSV_COLUMNS).to_csv(out / f"{split}.csv", index=False)


def build_tiny(root: Path) -> dict[str, list]:
    """Synthesize the tiny release under `root`, shard it, and return the digest of each tree and of the
    float pixels (TINY has workers=1, so every image is rendered in this process, in a fixed order)."""
    release, studies, shards = root / "synthetic", root / "studies", root / "shards"
    pixels, n_images = hashlib.sha256(), 0
    render_float = images.render_float

    def recording(*args, **kwargs):
        nonlocal n_images
        img = render_float(*args, **kwargs)
        pixels.update(img.dtype.str.encode() + repr(img.shape).encode() + img.tobytes())
        n_images += 1
        return img

    with mock.patch.object(images, "render_float", recording):
        synthesize(TINY, release)
    write_study_csvs(release, studies)
    create_shards(studies, release / JPG_DIR, shards, TINY_SHARDS)
    return {
        "release": list(tree_sha256(release)),
        "pixels": [pixels.hexdigest(), n_images],
        "shards": list(tree_sha256(shards)),
    }


def mismatch_message(what: str, got: list, expected: tuple) -> str:
    info = build_info()
    simd = info["numpy_simd"]
    changed = [f"{k} {v} -> {info[k]}" for k, v in GOLDEN_BUILD.items() if info[k] != v]
    cause = (
        f"library builds changed since the constants were made ({', '.join(changed)})"
        if changed
        else "no library version changed, so this machine computes differently: some arithmetic that "
        "reaches the bytes depends on CPU features (e.g. a SIMD-dispatched np.exp/np.sin/np.power on float "
        "data, or a libm call)"
    )
    return (
        f"the tiny synthetic {what} hashes to {got[0]} ({got[1]} files or images), not the committed "
        f"{expected[0]} ({expected[1]}). If the generator or shard writer did not change, the data is "
        f"machine-dependent: {cause}. This run: python {info['python']}, numpy {info['numpy']} (SIMD "
        f"baseline {simd['baseline']}, dispatched {simd['found']}), Pillow {info['pillow']} with "
        f"libjpeg-turbo {info['libjpeg_turbo']}, zlib {info['zlib']}, pandas {info['pandas']}, pyarrow "
        f"{info['pyarrow']}, {info['libc']}, env {info['env']}. After an intended change, regenerate "
        "GOLDEN and GOLDEN_BUILD with `.venv/bin/python tests/test_golden_data.py`."
    )


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, list]:
    return build_tiny(tmp_path_factory.mktemp("golden"))


@pytest.mark.parametrize("what", ["release", "pixels", "shards"])
def test_tiny_data_hashes_to_golden_constants(tiny, what):
    assert tuple(tiny[what]) == GOLDEN[what], mismatch_message(what, tiny[what], GOLDEN[what])


def test_same_bytes_with_simd_dispatch_disabled(tiny, tmp_path):
    """The cross-machine guard on one machine: numpy, libjpeg-turbo and glibc's libm are told to use
    their baseline code paths in a subprocess (as on an older CPU), and the bytes must not change."""
    found = numpy_simd()["found"]
    if not found:
        pytest.skip("numpy dispatches nothing beyond its baseline on this CPU: nothing to switch off")
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "NPY_DISABLE_CPU_FEATURES": " ".join(found),
        "JSIMD_FORCENONE": "1",
        "GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX2,-FMA,-AVX",
    }
    cmd = [sys.executable, str(Path(__file__)), "--out", str(tmp_path), "--json"]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    other = json.loads(done.stdout.splitlines()[-1])
    assert other["numpy_found"] == [], f"NPY_DISABLE_CPU_FEATURES={found} did not take effect"
    for what in ("release", "pixels", "shards"):
        assert other["digests"][what] == tiny[what], (
            f"the tiny {what} differs when numpy runs its baseline code instead of {found}: some "
            "arithmetic that reaches the bytes depends on the CPU's SIMD features (look for np.exp, "
            "np.sin, np.power, … on float data in pipeline/synthetic or pipeline/imaging.py)"
        )


if __name__ == "__main__":
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description="Build the tiny release + shards and print their digests.")
    parser.add_argument("--out", help="work folder (default: a temporary one)")
    parser.add_argument("--json", action="store_true", help="one JSON line (for the subprocess test)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        digests = build_tiny(Path(args.out or scratch))
    if args.json:
        print(json.dumps({"digests": digests, "numpy_found": numpy_simd()["found"]}))
    else:
        print("GOLDEN = {")
        for what, (digest, n) in digests.items():
            print(f'    "{what}": ("{digest}", {n}),')
        print("}")
        info = build_info()
        print("GOLDEN_BUILD = {")
        for key in GOLDEN_BUILD:
            print(f'    "{key}": "{info[key]}",')
        print("}")
