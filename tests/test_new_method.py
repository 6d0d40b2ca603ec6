"""A new method is one loss module and one params block: the registry finds the module, `dvc.yaml` grows
its train/evaluate stages for every seed, and the comparison and the report name it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline.comparison import PER_QUERY_COLUMNS
from pipeline.losses import LOSSES, display_name
from pipeline.losses.clip import ClipLoss
from pipeline.training.config import resolve_config

ROOT = Path(__file__).resolve().parents[1]
TOY_MODULE = textwrap.dedent(
    '''
    """A toy method for tests: CLIP's loss under another name."""

    from pipeline.losses.clip import ClipLoss


    class ToyLoss(ClipLoss):
        name = "toyclip"
        display_name = "Toy-CLIP"
    '''
)


def with_toy_method(params: dict) -> dict:
    params = dict(params)
    params["methods"] = [*params["methods"], "toyclip"]
    params["losses"] = {**params["losses"], "toyclip": {"head": "deterministic", "temperature_init": 0.05}}
    return params


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the code, dvc.yaml and params.yaml with the toy loss module and its params block added."""
    shutil.copytree(ROOT / "pipeline", tmp_path / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "pipeline/losses/toyclip.py").write_text(TOY_MODULE, encoding="utf-8")
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    params = with_toy_method(yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8")))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return tmp_path


def python(cwd: Path, code: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_the_registry_discovers_a_new_loss_module(project: Path):
    out = python(project, "from pipeline.losses import LOSSES; print(LOSSES['toyclip'].display_name)")
    assert out.strip() == "Toy-CLIP"
    resolved = python(
        project,
        "from pipeline.training.config import resolve_config; "
        "print(resolve_config('toyclip', 'params.yaml', seed=7).train.seed)",
    )
    assert resolved.strip() == "7"


def test_dvc_yaml_grows_the_stages_of_a_new_method(project: Path):
    dvc = Path(sys.executable).with_name("dvc")
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    subprocess.run(
        [str(dvc), "init", "-q"], cwd=project, check=True, env={**os.environ, "DVC_NO_ANALYTICS": "1"}
    )
    listed = subprocess.run(
        [str(dvc), "stage", "list", "--name-only"], cwd=project, capture_output=True, text=True, check=True
    ).stdout.split()
    seeds = yaml.safe_load((project / "params.yaml").read_text())["seeds"]
    for seed in seeds:
        assert {f"train@toyclip-{seed}", f"evaluate@toyclip-{seed}"} <= set(listed)
    assert {"compare", "report"} <= set(listed)


@pytest.fixture
def toy_registered():
    class ToyLoss(ClipLoss):
        name = "toyclip"
        display_name = "Toy-CLIP"

    yield ToyLoss
    LOSSES.pop("toyclip")


def fake_per_query(n: int, hits: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ranks = np.where(rng.random(n) < hits, 0, rng.integers(1, n, n))
    table = {"study_id": np.arange(n)}
    for d in ("i2t", "t2i"):
        table |= {f"{d}_rank": ranks, f"{d}_confidence": rng.random(n), f"{d}_top1_confidence": rng.random(n)}
    return pd.DataFrame(table)[list(PER_QUERY_COLUMNS)]


def test_the_comparison_and_report_name_a_new_method(toy_registered, tmp_path: Path):
    from pipeline.evaluation.params import EvaluateParams
    from pipeline.report import comparison_section
    from pipeline.results import CompareParams, compare_results, load_results, run_files

    params = with_toy_method(yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8")))
    assert resolve_config("toyclip", _write(tmp_path, params)).method == "toyclip"
    methods, tables = (
        ("clip", "toyclip"),
        {"clip": fake_per_query(200, 0.2, 1), "toyclip": fake_per_query(200, 0.6, 2)},
    )
    for method in methods:
        files = run_files(tmp_path / "metrics", method, 1)
        files.per_query.parent.mkdir(parents=True, exist_ok=True)
        files.training.parent.mkdir(parents=True, exist_ok=True)
        tables[method].to_csv(files.per_query, index=False)
        files.evaluation.write_text("{}")
        files.training.write_text("{}")
    results = load_results(tmp_path / "metrics", methods, [1])
    evaluate = EvaluateParams(ks=(1, 5, 10), rsum_short_ks=(1, 5))
    comparison = compare_results(results, CompareParams(), evaluate)
    assert display_name("toyclip") == "Toy-CLIP"
    text = comparison_section(comparison, comparison["display_names"])
    assert "| Toy-CLIP |" in text and "Toy-CLIP > CLIP" in " ".join(comparison["ranking"]["statements"])


def _write(tmp_path: Path, params: dict) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return path
