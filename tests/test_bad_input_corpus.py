"""Runs the bad-input corpus (`corpus_release.py`, `corpus_images.py`, `corpus_training.py`) through the
real stage entry points and checks, for every case, the promised behaviour and that nothing else was lost."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pandas as pd
import pytest
import yaml
from corpus import (
    Case,
    Fails,
    Kept,
    Rejected,
    Release,
    StageRun,
    Workspace,
    copy_workspace,
    run_entry_point,
    temp_files,
)
from corpus_images import SHARD_CASES
from corpus_release import RELEASE_CASES
from corpus_training import TRAINING_CASES, TrainWorkspace

from pipeline.mimic import schema
from pipeline.synthetic.generate import SplitFractions, SynthesizeParams, synthesize

DATA_STAGES = {
    "sections": ["stages/sections.py", "--reports-root", "{reports}", "--out", "interim/sections.parquet"],
    "labels": [
        "stages/labels.py", "--mimic-root", "{root}", "--sections", "interim/sections.parquet",
        "--out", "interim/labels.parquet", "--metrics", "metrics/labels.json",
    ],
    "studies": [
        "stages/studies.py", "--mimic-root", "{root}", "--sections", "interim/sections.parquet",
        "--labels", "interim/labels.parquet", "--out-dir", "studies", "--summary", "metrics/studies.json",
    ],
}  # fmt: skip
DATA_OUTPUTS = {
    "sections": ["interim/sections.parquet"],
    "labels": ["interim/labels.parquet", "metrics/labels.json"],
    "studies": [*(f"studies/{s}.csv" for s in (*schema.SPLITS, "rejects")), "metrics/studies.json"],
}
SHARDS = ["stages/shards.py", "--studies", "studies", "--mimic-root", "{root}", "--out", "shards"]
PARAMS = {
    "sections": {"workers": 1},
    "labels": {"source": "chexpert", "workers": 1},
    "studies": {},
    "shards": {"image_size": 32, "samples_per_shard": 5, "workers": 1, "max_reject_fraction": 1.0},
}


def run_stage(ws: Workspace, argv: list[str]) -> StageRun:
    fill = {"root": str(ws.release.root), "reports": str(ws.release.reports)}
    return run_entry_point([a.format(**fill) for a in argv], ws.path)


def run_data_stages(ws: Workspace) -> dict[str, StageRun]:
    runs = {}
    for name, argv in DATA_STAGES.items():
        runs[name] = run_stage(ws, argv)
        if runs[name].code:
            break
    return runs


def read_outputs(ws: Workspace) -> dict:
    studies = {
        s: pd.read_csv(ws.path / f"studies/{s}.csv", dtype=str, keep_default_na=False) for s in schema.SPLITS
    }
    rejects = pd.read_csv(ws.path / "studies/rejects.csv", dtype=str, keep_default_na=False)
    summary = json.loads((ws.path / "metrics/studies.json").read_text())
    return {"studies": studies, "rejects": rejects, "summary": summary}


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Workspace:
    """A small synthetic release and the outputs of a clean run of every data stage and the shards."""
    path = tmp_path_factory.mktemp("good")
    fractions = SplitFractions(train=0.6, validate=0.2, test=0.2)
    synthesize(
        SynthesizeParams(n_patients=20, split_fractions=fractions, image_scale=0.05, workers=1), path / "src"
    )
    (path / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    ws = Workspace(path, Release(path / "src"), {})
    runs = run_data_stages(ws)
    assert all(r.code == 0 for r in runs.values()), runs
    ws.good.update(read_outputs(ws))
    assert run_stage(ws, SHARDS).code == 0
    ws.good["samples"] = shard_samples(path / "shards")
    assert len(ws.good["studies"]["train"]) >= 12 and len(ws.good["rejects"]) >= 1
    return ws


def all_study_ids(ws: Workspace) -> set[int]:
    """Every study the good release names in its split or metadata file."""
    ids = set()
    for name in (schema.SPLIT_FILE, schema.METADATA_FILE):
        ids |= set(pd.read_csv(ws.release.root / name, usecols=["study_id"])["study_id"].tolist())
    return ids


def rows_by_study(frames: dict[str, pd.DataFrame]) -> dict[int, dict]:
    return {int(r["study_id"]): r for f in frames.values() for r in f.to_dict("records")}


def assert_clean_failure(run: StageRun, case: Case) -> None:
    line = run.error_line()
    assert run.code == 2, f"{case}: exit {run.code}\n{run.err[-2000:]}"
    assert line and "Traceback" not in run.err, run.err[-2000:]
    for pattern in case.expect.patterns:
        assert pd.Series([line]).str.contains(pattern, regex=True).iloc[0], f"{pattern!r} not in {line!r}"


@pytest.mark.parametrize("case", RELEASE_CASES, ids=str)
def test_release_and_report_inputs(case: Case, good: Workspace, tmp_path: Path):
    ws = copy_workspace(good, tmp_path / "ws")
    for out in (p for outs in DATA_OUTPUTS.values() for p in outs):
        (ws.path / out).unlink()
    touched = set(case.corrupt(ws))
    runs = run_data_stages(ws)
    expect = case.expect
    assert not temp_files(ws.path / "interim", ws.path / "studies", ws.path / "metrics")
    if isinstance(expect, Fails):
        assert_clean_failure(runs[expect.stage], case)
        assert list(runs)[-1] == expect.stage, f"{case}: failed in {list(runs)[-1]}, not {expect.stage}"
        assert not any((ws.path / p).exists() for p in DATA_OUTPUTS[expect.stage]), "partial outputs"
        return
    assert all(r.code == 0 for r in runs.values()), {k: r.err[-1500:] for k, r in runs.items()}
    got = read_outputs(ws)
    out_rows, good_rows = rows_by_study(got["studies"]), rows_by_study(good.good["studies"])
    rejects = got["rejects"].assign(study_id=got["rejects"]["study_id"].astype(int))
    # Accounting: every study of the release, once, in an output CSV or in rejects.csv.
    listed = list(out_rows) + rejects["study_id"].tolist()
    assert len(listed) == len(set(listed)) and set(listed) == all_study_ids(good)
    assert got["summary"]["input_studies"] == len(set(listed))
    new_rejects = rejects.loc[~rejects["study_id"].isin(good.good["rejects"]["study_id"].astype(int))]
    if isinstance(expect, Rejected):
        assert touched and set(new_rejects["study_id"]) == touched
        assert set(new_rejects["reason"]) == {expect.reason}, new_rejects
        assert got["summary"]["reject_reasons"][expect.reason] >= len(touched)
    else:
        assert new_rejects.empty, new_rejects
        counters = got["summary"]["counts"] | got["summary"]["section_coverage_reports"]
        for key, value in expect.counts.items():
            assert counters[key] == value, (key, counters)
        if expect.row:
            assert touched and all(expect.row(out_rows[s]) for s in touched), {
                s: out_rows[s] for s in touched
            }
    untouched = set(good_rows) - touched
    assert {s: out_rows[s] for s in untouched if s in out_rows} == {s: good_rows[s] for s in untouched}
    if isinstance(expect, Kept) and not expect.changed:
        for split in schema.SPLITS:  # byte-identical, not just equal
            assert (ws.path / f"studies/{split}.csv").read_bytes() == (
                good.path / f"studies/{split}.csv"
            ).read_bytes()


def shard_samples(out: Path) -> dict[str, dict[str, bytes]]:
    """key → {member extension: bytes} over every split's shards."""
    samples: dict[str, dict[str, bytes]] = {}
    for tar_path in sorted(out.glob("*/shard-*.tar")):
        with tarfile.open(tar_path) as tar:
            for member in tar.getmembers():
                key, _, ext = member.name.partition(".")
                samples.setdefault(key, {})[ext] = tar.extractfile(member).read()
    return samples


def study_csv_ids(ws: Workspace) -> list[int]:
    return [
        int(s)
        for split in schema.SPLITS
        for s in pd.read_csv(ws.path / f"studies/{split}.csv", usecols=["study_id"], dtype=str)["study_id"]
    ]


@pytest.mark.parametrize("case", SHARD_CASES, ids=str)
def test_image_and_study_csv_inputs(case: Case, good: Workspace, tmp_path: Path):
    ws = copy_workspace(good, tmp_path / "ws")
    for path in sorted((ws.path / "shards").rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    touched = set(case.corrupt(ws))
    run = run_stage(ws, SHARDS)
    expect = case.expect
    assert not temp_files(ws.path / "shards")
    if isinstance(expect, Fails):
        assert_clean_failure(run, case)
        assert not list((ws.path / "shards").rglob("index.json")), "a split was published"
        assert not (ws.path / "shards" / "summary.json").exists()
        return
    assert run.code == 0, run.err[-2000:]
    samples = shard_samples(ws.path / "shards")
    rejects = pd.read_csv(ws.path / "shards" / "rejects.csv", dtype=str, keep_default_na=False)
    summary = json.loads((ws.path / "shards" / "summary.json").read_text())
    study_rejects = rejects.loc[rejects["image_path"] == ""]
    # Accounting: every study CSV row is a shard sample or a study-level reject; every image is kept or rejected.
    rows = study_csv_ids(ws)
    assert len(samples) + len(study_rejects) == len(rows) == summary["n_studies_in"]
    assert {int(k[1:]) for k in samples} | set(map(int, study_rejects["study_id"])) == set(rows)
    kept_images = sum(1 for s in samples.values() for ext in s if ext.startswith("img"))
    assert kept_images + summary["n_rejected_images"] == summary["n_images_in"]
    if isinstance(expect, Rejected):
        assert expect.reason in set(rejects["reason"]), rejects
        if touched:
            assert set(map(int, rejects["study_id"])) == touched, rejects
    else:
        assert rejects.empty, rejects
        formats = {k: v for split in summary["splits"].values() for k, v in split["image_formats"].items()}
        for key, value in expect.counts.items():
            assert formats.get(key) == value, formats
    untouched = {f"s{s}" for s in rows} - {f"s{s}" for s in touched}
    for key in untouched & good.good["samples"].keys():
        if key in samples:
            assert samples[key] == good.good["samples"][key], key
    if isinstance(expect, Kept) and not expect.changed:
        assert samples == good.good["samples"]


def test_the_corpus_covers_every_stage_with_thirty_cases_or_more():
    cases = RELEASE_CASES + SHARD_CASES + TRAINING_CASES
    assert len(cases) >= 30 and len({c.name for c in cases}) == len(cases)
    stages = {c.expect.stage for c in cases if isinstance(c.expect, Fails)}
    assert stages >= {"sections", "labels", "studies", "shards", "train", "evaluate"}


EVALUATE = {
    "split": "validate",
    "threshold_split": "validate",
    "probe_split": "train",
    "ks": [1, 5],
    "rsum_short_ks": [1, 5],
    "precision_ks": [1],
    "robustness": {"corruptions": ["gaussian_noise"], "severities": [1]},
    "probe": {"epochs": 2},
    "batch_size": 4,
}


def training_argv(ws: TrainWorkspace) -> tuple[None, list[str]]:
    common = ["--params", "params.yaml", "--shards", "shards", "--tokenizer", "tokenizer"]
    model = f"models/{ws.method}"
    if ws.evaluate:
        outs = ["--metrics", "eval/m.json", "--plots", "eval/plots", "--figures", "eval/figures"]
        return None, ["stages/evaluate.py", ws.method, "--in-process", *common, "--model", model, *outs]
    return None, ["stages/train.py", ws.method, "--in-process", *common, "--out", model]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    from test_train import build_tiny_project

    root, _ = build_tiny_project(tmp_path_factory.mktemp("trained"), "clip", epochs=1)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["evaluate"] = EVALUATE
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    module, argv = training_argv(TrainWorkspace(root))
    run = run_entry_point(argv, root, module=module)
    assert run.code == 0, run.err[-3000:]
    return root


@pytest.mark.parametrize("case", TRAINING_CASES, ids=str)
def test_training_and_evaluation_inputs(case: Case, trained: Path, tmp_path: Path):
    import shutil

    shutil.copytree(trained, tmp_path / "ws")
    ws = TrainWorkspace(tmp_path / "ws")
    case.corrupt(ws)
    module, argv = training_argv(ws)
    run = run_entry_point(argv, ws.path, module=module)
    expect = case.expect
    assert not temp_files(ws.path / "models", ws.path / "eval")
    outputs = [ws.path / "eval"] if ws.evaluate else [ws.model / "best", ws.model / "metrics.json"]
    if isinstance(expect, Fails):
        assert expect.stage == ("evaluate" if ws.evaluate else "train")
        assert_clean_failure(run, case)
        assert not any(p.exists() for p in outputs), "partial outputs"
        return
    assert run.code == 0, run.err[-3000:]
    assert expect.message in run.err
    assert all(p.exists() for p in outputs)
    if not ws.evaluate:
        assert json.loads((ws.model / "metrics.json").read_text())["epochs"] == 1


@pytest.mark.parametrize(
    ("evaluate", "edit", "pattern"),
    [
        (False, {"batch_size": 0}, r"params.yaml:train: batch_size must be >= 1"),
        (False, {"epochs": 2.0}, r"params.yaml:train.epochs: expected an integer"),
        (True, {"ks": [0.5]}, r"params.yaml:evaluate.ks\[0\]: expected an integer"),
    ],
)
def test_training_params_are_checked_before_any_server_starts(
    trained: Path, tmp_path: Path, monkeypatch, evaluate, edit, pattern
):
    """Without --in-process the stages run Prefect flows; a params error must be found before the flows
    (and the Prefect server, 12-20 s) are even imported, with no traceback and no `:train:` emoji."""
    import shutil

    import pipeline.prefect_env

    def no_flows():
        raise AssertionError("the Prefect flows were loaded before the parameters were checked")

    monkeypatch.setattr(pipeline.prefect_env, "load_flows", no_flows)
    shutil.copytree(trained, tmp_path / "ws")
    ws = TrainWorkspace(tmp_path / "ws", evaluate=evaluate)
    ws.edit_params(lambda p: p["evaluate" if evaluate else "train"].update(edit))
    _, argv = training_argv(ws)
    argv.remove("--in-process")
    run = run_entry_point(argv, ws.path)
    assert_clean_failure(run, Case("prefect", lambda w: [], Fails("train", (pattern,))))
