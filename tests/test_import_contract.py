"""The import layering is a checked contract (`make lint` runs lint-imports): the real tree keeps it, and a
deliberately bad import in a copy of the tree breaks it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(tree: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=tree, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture
def tree_copy(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "pipeline", tmp_path / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_tree_keeps_every_contract(tree_copy: Path):
    run = lint_imports(tree_copy)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "0 broken" in run.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("losses/clip.py", "import mlflow", "needs no orchestration or tracking"),
        ("metrics/retrieval.py", "from pipeline import flows", "needs no orchestration or tracking"),
        ("training/loop.py", "import prefect", "Only pipeline.flows imports prefect"),
        (
            "evaluation/runner.py",
            "from pipeline.training import loop",
            "only through the exported checkpoint",
        ),
        ("training/run.py", "from pipeline import flows", "never imports its orchestration"),
    ],
)
def test_a_bad_import_breaks_its_contract(tree_copy: Path, module: str, line: str, contract: str):
    path = tree_copy / "pipeline" / module
    path.write_text(path.read_text(encoding="utf-8") + f"\n{line}  # deliberately bad\n", encoding="utf-8")
    run = lint_imports(tree_copy)
    assert run.returncode != 0
    summary = " ".join(run.stdout.split())  # lint-imports wraps long contract names
    after = summary[summary.index(contract) :]
    verdicts = [after.find(word) for word in (" KEPT", " BROKEN")]
    assert -1 < verdicts[1] < (verdicts[0] if verdicts[0] >= 0 else len(after)), (
        "contract not reported broken"
    )
