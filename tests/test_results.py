"""The method × seed results tree: `run_files` agrees with dvc.yaml's naming; seed means are exact."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.errors import PipelineError
from pipeline.results import load_results, mean_tree, run_files

ROOT = Path(__file__).resolve().parents[1]


def resolved_paths(stage: dict, method: str, seed: int, data: dict) -> set[str]:
    """Every path a matrix stage names, with `${item.*}` and `${data.*}` filled in."""
    text = yaml.safe_dump({k: stage[k] for k in ("cmd", "outs", "metrics", "plots") if k in stage})
    text = text.replace("${item.method}", method).replace("${item.seed}", str(seed))
    for key, value in data.items():
        text = text.replace(f"${{data.{key}}}", str(value))
    return {word.rstrip(":") for word in text.split() if "/" in word}


def test_run_files_match_the_paths_dvc_yaml_writes():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    data = yaml.safe_load((ROOT / "params.yaml").read_text())["data"]
    files = run_files(data["metrics_dir"], "clip", 7)
    evaluate = resolved_paths(stages["evaluate"], "clip", 7, data)
    train = resolved_paths(stages["train"], "clip", 7, data)
    assert {str(files.evaluation), str(files.per_query), str(files.plots)} <= evaluate
    assert {str(files.training), str(files.history)} <= train


def test_mean_tree_averages_numbers_and_keeps_settings():
    runs = [
        {"retrieval": {"rsum": 10.0, "n": 5}, "confidence": "top1", "ece": None},
        {"retrieval": {"rsum": 14.0, "n": 5}, "confidence": "top1", "ece": 0.1},
    ]
    assert mean_tree(runs) == {"retrieval": {"rsum": 12.0, "n": 5}, "confidence": "top1", "ece": None}


def test_a_listed_run_without_files_is_a_clear_error(tmp_path: Path):
    with pytest.raises(PipelineError, match=r"seed3\.json: missing; run `dvc repro`"):
        load_results(tmp_path, ["clip"], [3])
    with pytest.raises(PipelineError, match="at least one"):
        load_results(tmp_path, [], [1])


def test_readme_results_block_is_the_committed_comparison():
    """The README's results paragraph is generated from metrics/compare.json, never written by hand."""
    import json
    import sys

    sys.path.insert(0, str(ROOT / "scripts"))
    from readme_results import load_abstention, render

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    comparison = json.loads((ROOT / "metrics/compare.json").read_text(encoding="utf-8"))
    abstention = load_abstention(ROOT / "metrics", comparison)
    assert render(readme, comparison, abstention) == readme, "run .venv/bin/python scripts/readme_results.py"
