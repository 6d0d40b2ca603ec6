"""The whole DAG — data, train@method×seed, evaluate@method×seed, compare, report — under `dvc repro` in a
scratch git project, then the staleness rules: a second repro does nothing, one method's loss param
retrains only that method (every seed of it), a new seed trains only that seed, an evaluation param
re-evaluates without training."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
# A deterministic method, a probabilistic one and one with its own `train` override, two seeds each: every
# code path of the DAG at a third of the cost of all five (test_new_method checks every listed method's
# stages exist; test_train_ddp trains each method).
METHODS = ("clip", "pcmepp", "medprobclip")
SEEDS = (1, 2)
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]


def run(cwd: Path, *args: str) -> str:
    bin_dir = Path(sys.executable).parent
    env = os.environ | {
        "DVC_NO_ANALYTICS": "1",
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.org",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.org",
    }
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done.stdout + done.stderr


def dvc(cwd: Path, *args: str) -> str:
    """`dvc ...` with one local Prefect server for all flow runs (as `make repro` does)."""
    bin_dir = Path(sys.executable).parent
    return run(cwd, sys.executable, "scripts/prefect_session.py", str(bin_dir / "dvc"), *args)


def runs(stage: str, methods=METHODS, seeds=SEEDS) -> set[str]:
    return {f"{stage}@{m}-{s}" for m in methods for s in seeds}


def ran(log: str) -> set[str]:
    return {line.split("'")[1] for line in log.splitlines() if line.startswith("Running stage '")}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    where = tmp_path_factory.mktemp("full") / "project"
    where.mkdir()
    for name in ("pipeline", "stages", "scripts"):
        shutil.copytree(ROOT / name, where / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", where / "dvc.yaml")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["synthesize"] |= {
        "n_patients": 40,
        "split_fractions": {"train": 0.5, "validate": 0.25, "test": 0.25},
    }
    params["methods"], params["seeds"] = list(METHODS), list(SEEDS)
    params["train"] |= {"epochs": 1, "batch_size": 8, "warmup_steps": 1, "progress": False}
    params["evaluate"] |= {
        "ks": [1, 5, 10],
        "robustness": {"corruptions": ["gaussian_noise"], "severities": [1, 2]},
        "probe": {"epochs": 5},
    }
    (where / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (where / ".gitignore").write_text("__pycache__/\n")
    run(where, "git", "init", "-q")
    run(where, str(Path(sys.executable).parent / "dvc"), "init", "-q")
    log = dvc(where, "repro")
    assert ran(log) >= runs("train") | runs("gallery") | runs("evaluate") | {"compare", "register", "report"}
    run(where, "git", "add", "-A")
    run(where, "git", "commit", "-qm", "baseline")
    return where


def test_report_and_metrics_cover_every_method(project: Path):
    summary = (project / "reports/summary.md").read_text()
    assert "synthetic" in summary
    comparison = json.loads((project / "metrics/compare.json").read_text())
    assert comparison["seeds"] == list(SEEDS) and comparison["method_order"] == list(METHODS)
    assert "Paired differences" in summary and "Holm" in summary
    for method in METHODS:
        assert f"| {comparison['display_names'][method]} |" in summary
        assert comparison["methods"][method]["metrics"]["rsum"]["sd"] is not None
        for seed in SEEDS:
            metrics = json.loads((project / f"metrics/evaluate/{method}/seed{seed}.json").read_text())
            assert metrics["method"] == method and metrics["retrieval"]["n_queries"] > 0
            assert "retrieval_ci" in metrics
            assert (project / f"metrics/evaluate/{method}/seed{seed}-per-query.csv").is_file()
            assert (project / f"metrics/train/{method}/seed{seed}.json").is_file()
            assert (project / f"reports/figures/{method}/seed{seed}/risk_coverage.png").is_file()
    for curve in ("risk_coverage", "reliability", "robustness", "history"):
        table = (project / f"metrics/compare/{curve}.csv").read_text()
        assert all(f"\n{m}," in table for m in METHODS)
    assert "Running stage" not in dvc(project, "repro")


def test_one_method_param_retrains_only_that_method(project: Path):
    log = dvc(project, "exp", "run", "-S", "losses.medprobclip.lambda_text=0.5")
    one = ["medprobclip"]
    assert ran(log) == runs("train", one) | runs("gallery", one) | runs("evaluate", one) | {
        "compare",
        "register",
        "report",
    }


def test_an_evaluation_param_never_retrains(project: Path):
    log = dvc(project, "exp", "run", "-S", "evaluate.probe.epochs=3")
    assert ran(log) == runs("evaluate") | {"compare", "report"}


def test_a_new_seed_trains_only_that_seed(project: Path):
    """Runs after the others (it leaves three seeds in the workspace)."""
    log = dvc(project, "exp", "run", "-S", f"seeds={[*SEEDS, 3]}")
    new = runs("train", seeds=[3]) | runs("gallery", seeds=[3]) | runs("evaluate", seeds=[3])
    assert ran(log) == new | {"compare", "register", "report"}
