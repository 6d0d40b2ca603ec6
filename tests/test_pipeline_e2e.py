"""End-to-end `dvc repro` of the data stages on a small synthetic source, in a scratch copy of the project."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline.mimic import readers, schema
from pipeline.studies import REJECT_REASONS

ROOT = Path(__file__).resolve().parents[1]
DATA_STAGES = ("synthesize", "sections", "labels", "studies")
pytestmark = pytest.mark.slow


def _dvc(cwd: Path, *args: str) -> str:
    env = os.environ | {
        "DVC_NO_ANALYTICS": "1",
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    done = subprocess.run(
        [str(Path(sys.executable).parent / "dvc"), *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, f"dvc {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def make_project(where: Path, n_patients: int = 70) -> Path:
    where.mkdir(parents=True)
    for name in ("pipeline", "stages"):
        shutil.copytree(ROOT / name, where / name, ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["synthesize"]["n_patients"] = n_patients
    params["synthesize"]["split_fractions"] = {"train": 0.5, "validate": 0.25, "test": 0.25}
    (where / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    (where / "dvc.yaml").write_text(
        yaml.safe_dump({"stages": {k: stages[k] for k in DATA_STAGES}}, sort_keys=False)
    )
    subprocess.run(["git", "init", "-q"], cwd=where, check=True)
    _dvc(where, "init", "-q")
    return where


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    path = make_project(tmp_path_factory.mktemp("e2e") / "a")
    _dvc(path, "repro")
    return path


def test_every_study_is_accounted_for(project: Path):
    root = project / "data/synthetic/mimic-cxr-jpg/2.1.0"
    split = readers.read_split(root)
    metadata = readers.read_metadata(root)
    studies = project / "data/studies"
    out = pd.concat([pd.read_csv(studies / f"{s}.csv") for s in schema.SPLITS])
    rejects = pd.read_csv(studies / "rejects.csv", keep_default_na=False)
    ids = out["study_id"].tolist() + rejects["study_id"].tolist()
    assert len(ids) == len(set(ids))
    assert set(ids) == set(split["study_id"]) | set(metadata["study_id"])
    assert set(rejects["reason"]) <= set(REJECT_REASONS)
    assert (out["findings"].notna() | out["impression"].notna()).all()
    first_views = out["view_names"].str.split(";").str[0]
    assert first_views.isin(["PA", "AP"]).all()
    for paths in out["image_paths"].head(20):
        for rel in paths.split(";"):
            assert (root / rel).is_file()


def test_outputs_are_byte_identical_across_runs(project: Path, tmp_path: Path):
    other = make_project(tmp_path / "b")
    _dvc(other, "repro")
    for rel in ("data/interim/sections.parquet", "data/interim/labels.parquet", "data/studies/test.csv"):
        assert (project / rel).read_bytes() == (other / rel).read_bytes(), rel
    locks = [yaml.safe_load((p / "dvc.lock").read_text())["stages"] for p in (project, other)]
    for stage in DATA_STAGES:
        assert locks[0][stage]["outs"] == locks[1][stage]["outs"], stage


def test_second_repro_is_a_noop_and_a_studies_param_reruns_only_studies(project: Path):
    assert "Running stage" not in _dvc(project, "repro")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["studies"]["views"]["max_images"] = 1
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    log = _dvc(project, "repro")
    assert "Running stage 'studies'" in log
    for stage in ("synthesize", "sections", "labels"):
        assert f"Running stage '{stage}'" not in log
    train = pd.read_csv(project / "data/studies/train.csv")
    assert (train["n_images"] == 1).all()


def test_sections_match_the_ground_truth(project: Path):
    truth = pd.read_parquet(project / "data/synthetic/truth.parquet").set_index("study_id")
    got = pd.read_parquet(project / "data/interim/sections.parquet").set_index("study_id")
    both = truth.index.intersection(got.index)
    same = [
        (truth.loc[both, col].fillna("<none>") == got.loc[both, col].fillna("<none>")).mean()
        for col in ("findings", "impression")
    ]
    assert min(same) >= 0.99, same
