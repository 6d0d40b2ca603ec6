"""Data-use safety: MIMIC text, images and patient/study ids stay out of MLflow; servers the project starts
listen on 127.0.0.1 only; checkpoints load with ``weights_only=True`` and a crafted pickle is refused."""

from __future__ import annotations

import ast
import builtins
import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pandas as pd
import pytest
import torch
import yaml
from corpus import run_entry_point
from test_train import build_tiny_project

from pipeline.training.checkpoint import CheckpointError, load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
TEXT_ARTIFACTS = (".json", ".yaml", ".yml", ".csv", ".txt", ".md")


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def shingles(text: str, n: int = 4) -> set[str]:
    w = words(text)
    return {" ".join(w[i : i + n]) for i in range(len(w) - n + 1)}


def sensitive_values(project: Path) -> tuple[set[str], set[str]]:
    """(ids, 4-word report phrases) of every study the project's study CSVs hold."""
    ids, phrases = set(), set()
    for csv in (project / "studies").glob("*.csv"):
        frame = pd.read_csv(csv, dtype=str, keep_default_na=False)
        ids |= set(frame["study_id"]) | set(frame["subject_id"])
        for text in pd.concat([frame["findings"], frame["impression"]]):
            phrases |= shingles(text)
    return ids, phrases


def assert_clean(where: str, text: str, ids: set[str], phrases: set[str]) -> None:
    leaked_ids = {i for i in ids if re.search(rf"(?<!\d){i}(?!\d)", text)}
    assert not leaked_ids, f"{where}: patient/study ids {sorted(leaked_ids)[:5]}"
    leaked = shingles(text) & phrases
    assert not leaked, f"{where}: report text {sorted(leaked)[:3]}"


@pytest.fixture(scope="module")
def tracked_project(tmp_path_factory) -> tuple[Path, str]:
    """A tiny project trained and evaluated into its own MLflow store."""
    from pipeline.evaluation.run import EvaluateRequest, run_evaluation
    from pipeline.training.run import run_training

    root, request = build_tiny_project(tmp_path_factory.mktemp("safety"), "medprobclip", epochs=1)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["train"]["tracking_uri"] = uri
    params["evaluate"] = {
        "split": "validate", "threshold_split": "validate", "probe_split": "train", "ks": [1, 5],
        "rsum_short_ks": [1], "precision_ks": [1], "probe": {"epochs": 2}, "batch_size": 4,
        "robustness": {"corruptions": ["gaussian_noise"], "severities": [1]},
    }  # fmt: skip
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    out = root / "models" / "medprobclip"
    run_training(dataclasses.replace(request, out=str(out)))
    run_evaluation(
        EvaluateRequest("medprobclip", request.params, request.shards, request.tokenizer, str(out),
                        str(root / "eval.json"), str(root / "plots"), str(root / "figures"))
    )  # fmt: skip
    return root, uri


def test_mlflow_holds_no_report_text_images_or_ids(tracked_project):
    from mlflow import MlflowClient

    root, uri = tracked_project
    ids, phrases = sensitive_values(root)
    assert len(ids) > 40 and len(phrases) > 20  # the check has something to find
    client = MlflowClient(uri)
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    assert runs
    for run in runs:
        data = run.data
        for kind, items in (
            ("param", data.params),
            ("tag", data.tags),
            ("metric", dict.fromkeys(data.metrics)),
        ):
            for key, value in items.items():
                if key == "mlflow.source.name":  # the entry script's path
                    continue
                assert_clean(f"{kind} {key}", f"{key} = {value or ''}", ids, phrases)
                assert len(str(value or "")) < 2000, f"{kind} {key} is a {len(str(value))}-character blob"
        artifacts = list_artifacts(client, run.info.run_id)
        assert artifacts, "nothing was logged"
        assert not [a for a in artifacts if a.lower().endswith((".jpg", ".jpeg", ".tar"))], artifacts
        for path in artifacts:
            if path.endswith(TEXT_ARTIFACTS):
                local = client.download_artifacts(run.info.run_id, path, str(root / "downloaded"))
                assert_clean(f"artifact {path}", Path(local).read_text(errors="replace"), ids, phrases)


def list_artifacts(client, run_id: str, path: str | None = None) -> list[str]:
    out = []
    for item in client.list_artifacts(run_id, path):
        out += list_artifacts(client, run_id, item.path) if item.is_dir else [item.path]
    return out


def test_the_scan_would_catch_a_leak(tracked_project):
    root, _ = tracked_project
    ids, phrases = sensitive_values(root)
    frame = pd.read_csv(root / "studies" / "train.csv", dtype=str, keep_default_na=False)
    with pytest.raises(AssertionError, match="ids"):
        assert_clean("x", f"hard_case={frame['study_id'][0]}", ids, phrases)
    with pytest.raises(AssertionError, match="report text"):
        assert_clean("x", frame["findings"][0], ids, phrases)


# -- servers ------------------------------------------------------------------------------------------


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a socket in LISTEN state on `port` (from /proc/net/tcp{,6})."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


LOOPBACK = {"0100007F", "00000000000000000000000001000000"}  # 127.0.0.1 and ::1 as /proc writes them


@pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="needs Linux /proc/net/tcp")
def test_prefect_server_of_flow_runs_listens_on_loopback_only(prefect_server):
    from prefect.settings import PREFECT_API_URL

    port = urlparse(PREFECT_API_URL.value()).port
    addresses = listening_addresses(port)
    assert addresses and addresses <= LOOPBACK, addresses


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="needs Linux /proc/net/tcp")
def test_prefect_session_server_listens_on_loopback_only(tmp_path):
    probe = (
        f"import os, sys, urllib.parse; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
        "from test_data_use_safety import listening_addresses; "
        "print(sorted(listening_addresses(urllib.parse.urlparse(os.environ['PREFECT_API_URL']).port)))"
    )
    env = os.environ | {"PREFECT_HOME": str(tmp_path / "prefect")}
    env.pop("PREFECT_API_URL", None)
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "prefect_session.py"), sys.executable, "-c", probe],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    addresses = set(json.loads(done.stdout.strip().splitlines()[-1].replace("'", '"')))
    assert addresses and addresses <= LOOPBACK, addresses


def test_no_server_command_of_the_project_binds_every_interface():
    files = [
        ROOT / "README.md",
        ROOT / "Makefile",
        *ROOT.glob("scripts/*.py"),
        *ROOT.glob("pipeline/**/*.py"),
    ]
    for path in files:
        text = path.read_text()
        assert "0.0.0.0" not in text, path
        for line in text.splitlines():
            if re.search(r"(mlflow ui|mlflow server|prefect server start)", line):
                # loopback, or an address the reader must choose on purpose (a multi-host cluster)
                assert re.search(r"--host (127\.0\.0\.1|<)", line), f"{path}: {line.strip()}"


# -- checkpoints --------------------------------------------------------------------------------------


def torch_load_calls(path: Path) -> list[ast.Call]:
    tree = ast.parse(path.read_text(), str(path))
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "load"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "torch"
    ]


def test_every_torch_load_is_weights_only():
    patterns = ("pipeline/**/*.py", "stages/*.py", "scripts/*.py", "bench/*.py", "tests/*.py")
    here = Path(__file__).name  # this file loads a crafted pickle unsafely on purpose, once
    sources = [p for pattern in patterns for p in ROOT.glob(pattern) if p.name != here]
    calls = [(p, c) for p in sources for c in torch_load_calls(p)]
    assert calls, "the scan found no torch.load at all"
    for path, call in calls:
        flag = {k.arg: k.value for k in call.keywords}.get("weights_only")
        assert isinstance(flag, ast.Constant) and flag.value is True, f"{path}:{call.lineno}"
    for path in (ROOT / "pipeline").rglob("*.py"):
        assert not re.search(r"\bpickle\.loads?\(|\bjoblib\.load\(", path.read_text()), path


class _Payload:
    """Unpickling this opens (creates) `target`: a stand-in for arbitrary code in a checkpoint."""

    def __init__(self, target: Path) -> None:
        self.target = str(target)

    def __reduce__(self):
        return (builtins.open, (self.target, "w"))


def test_a_crafted_checkpoint_is_refused_without_running_it(tmp_path):
    marker, path = tmp_path / "pwned", tmp_path / "last.pt"
    torch.save({"format": 1, "model": {}, "x": _Payload(marker)}, path)
    with pytest.raises(CheckpointError, match=r"last.pt: unreadable checkpoint, refused"):
        load_checkpoint(path)
    assert not marker.exists()
    torch.load(path, weights_only=False)  # proof that the payload is live
    assert marker.exists()


def test_training_refuses_a_crafted_resume_checkpoint(tmp_path):
    root, _ = build_tiny_project(tmp_path, "clip", epochs=1)
    marker, state = root / "pwned", root / "models" / "clip" / "state"
    state.mkdir(parents=True)
    torch.save({"format": 1, "fingerprint": "x", "x": _Payload(marker)}, state / "last.pt")
    argv = ["stages/train.py", "clip", "--in-process", "--params", "params.yaml", "--shards", "shards",
            "--tokenizer", "tokenizer", "--out", "models/clip"]  # fmt: skip
    run = run_entry_point(argv, root)
    assert run.code == 2 and "last.pt: unreadable checkpoint" in run.error_line(), run.err[-2000:]
    assert not marker.exists()
