"""The evaluation flow on a tiny trained model: outputs, determinism, MLflow, bad inputs, and the report."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from test_train import build_tiny_project

from pipeline.config import ConfigError
from pipeline.errors import PipelineError

EVALUATE = {
    "split": "validate",
    "threshold_split": "validate",
    "probe_split": "train",
    "ks": [1, 5, 10],
    "rsum_short_ks": [1, 5],
    "precision_ks": [1, 5],
    "robustness": {"corruptions": ["gaussian_noise", "rotation"], "severities": [1, 3]},
    "probe": {"epochs": 10},
    "batch_size": 4,
}


@pytest.fixture(scope="module", params=["medprobclip", "clip"])
def trained(request, tmp_path_factory):
    from pipeline.evaluation.run import EvaluateRequest
    from pipeline.training.run import run_training

    root, train_request = build_tiny_project(tmp_path_factory.mktemp(request.param), request.param, epochs=1)
    params = yaml.safe_load(Path(train_request.params).read_text())
    params["evaluate"] = EVALUATE
    Path(train_request.params).write_text(yaml.safe_dump(params))
    train_request = dataclasses.replace(train_request, out=str(root / "models" / request.param))
    run_training(train_request)
    evaluate_request = EvaluateRequest(
        request.param,
        train_request.params,
        train_request.shards,
        train_request.tokenizer,
        train_request.out,
        str(root / "metrics" / f"{request.param}.json"),
        str(root / "metrics" / request.param),
        str(root / "figures" / request.param),
    )
    return root, evaluate_request


def test_evaluation_writes_every_protocol_plot_table_and_figure(trained):
    from pipeline.evaluation.run import run_evaluation

    _, request = trained
    returned = run_evaluation(request)
    metrics = json.loads(Path(request.metrics).read_text())
    assert metrics["method"] == request.method
    assert {k: returned[k] for k in metrics} == metrics  # the JSON is what the flow returns (minus timing)
    assert set(returned["seconds_by_step"]) >= {"embed_test", "retrieval", "robustness", "probe", "write"}
    n = metrics["evaluation_set"]["n_studies"]
    assert n + metrics["evaluation_set"]["n_excluded"] == 8 and n >= 6  # the fixture drops a study's text
    retrieval = metrics["retrieval"]
    assert retrieval["random_r1"] == pytest.approx(100 / n) and retrieval["n_queries"] == n
    assert retrieval["rsum"] == pytest.approx(
        sum(retrieval[f"{d}_r{k}"] for d in ("i2t", "t2i") for k in (1, 5, 10))
    )
    assert retrieval["rsum6"] == pytest.approx(
        sum(retrieval[f"{d}_r{k}"] for d in ("i2t", "t2i") for k in (1, 5))
    )
    probabilistic = request.method == "medprobclip"
    assert metrics["selective"]["confidence"] == ("variance" if probabilistic else "top1")
    assert {"i2t_aurc_r1", "t2i_eaurc_r10"} <= metrics["selective"].keys()
    assert 0.0 <= metrics["calibration"]["i2t_ece"] <= 1.0
    assert metrics["zero_shot"]["argmax"]["n"] == n and "macro_auroc" in metrics["zero_shot"]["binary"]
    assert {"mean_ratio_r1", "rotation_ratio_r10"} <= metrics["robustness"].keys()
    assert len(metrics["probe"]["per_label"]) == 14
    assert_confidence_intervals(metrics)
    tables = {p.name: pd.read_csv(p) for p in Path(request.plots).glob("*.csv")}
    assert set(tables) == {"risk_coverage.csv", "reliability.csv", "robustness.csv"}
    assert tables["robustness.csv"]["severity"].tolist() == [1, 3]
    assert "gaussian_noise_r10" in tables["robustness.csv"] and "risk_t2i_r5" in tables["risk_coverage.csv"]
    assert len(tables["reliability.csv"]) == 15
    figures = sorted(p.name for p in Path(request.figures).iterdir())
    assert figures == ["probe_roc.png", "reliability.png", "risk_coverage.png", "robustness.png", "tsne.png"]
    assert all((Path(request.figures) / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for f in figures)


def assert_confidence_intervals(metrics: dict) -> None:
    """Every headline number has a CI next to it (`*_ci` sections mirroring the point sections)."""
    assert metrics["bootstrap"] == {
        "n_resamples": 1000,
        "seed": 0,
        "level": 0.95,
        "method": "percentile",
        "unit": "test study (query)",
        "gallery": "full test set (only queries are resampled)",
    }
    retrieval = {
        k: v for k, v in metrics["retrieval"].items() if not k.startswith("random") and k != "n_queries"
    }
    assert (
        set(metrics["retrieval_ci"])
        == set(retrieval)
        == {f"{d}_r{k}" for d in ("i2t", "t2i") for k in (1, 5, 10)}
        | {
            "rsum",
            "rsum6",
        }
    )
    for name, point in retrieval.items():  # percentile intervals of a mean bracket the mean
        assert metrics["retrieval_ci"][name]["low"] <= point <= metrics["retrieval_ci"][name]["high"]
    assert set(metrics["selective_ci"]) == set(metrics["selective"]) - {"confidence"}
    assert set(metrics["calibration_ci"]) == {"i2t_ece", "t2i_ece"}
    for section in ("selective_ci", "calibration_ci"):
        assert all(set(ci) == {"low", "high"} and ci["low"] <= ci["high"] for ci in metrics[section].values())
    zero_shot = metrics["zero_shot_ci"]
    assert set(zero_shot["argmax"]["per_class"]) == set(metrics["zero_shot"]["argmax"]["per_class"])
    assert set(zero_shot["binary"]["per_label"]) == set(metrics["zero_shot"]["binary"]["per_label"])
    assert set(zero_shot["binary"]["macro_auroc"]) == {"low", "high", "n_undefined"}
    assert set(zero_shot["binary"]["per_label"]["Edema"]) == {"auroc", "accuracy"}
    assert 0 <= zero_shot["argmax"]["mean_accuracy"]["n_undefined"] <= 1000


def test_bootstrap_leaves_point_estimates_alone_and_the_per_query_table_reproduces_them(trained):
    from pipeline.comparison import PER_QUERY_COLUMNS, per_query_resamples
    from pipeline.evaluation import evaluate, load_trained
    from pipeline.evaluation.params import BootstrapParams
    from pipeline.evaluation.run import evaluate_params
    from pipeline.io import finite

    _, request = trained
    params = dataclasses.replace(evaluate_params(request.params), log_to_mlflow=False)
    model = load_trained(Path(request.model) / "best", request.tokenizer)
    results = [
        evaluate(
            model,
            Path(request.shards),
            dataclasses.replace(params, bootstrap=BootstrapParams(n, seed, level)),
        )
        for n, seed, level in ((200, 0, 0.95), (300, 1, 0.9))
    ]
    first, second = (r.metrics for r in results)
    ci = {"bootstrap", "retrieval_ci", "selective_ci", "calibration_ci", "zero_shot_ci"}
    assert {k: v for k, v in first.items() if k not in ci} == {k: v for k, v in second.items() if k not in ci}
    assert first["retrieval_ci"] != second["retrieval_ci"] and second["bootstrap"]["level"] == 0.9
    table = results[0].per_query
    assert table is not None and list(table.columns) == list(PER_QUERY_COLUMNS)
    assert len(table) == first["evaluation_set"]["n_studies"] and table["study_id"].is_unique
    assert table.equals(results[1].per_query)
    points = finite(
        {
            k: v[0]
            for k, v in per_query_resamples(
                table, np.arange(len(table))[None], params.ks, params.rsum_short_ks
            ).items()
        }
    )
    for name in ("i2t_r1", "t2i_r10", "rsum", "rsum6"):
        assert points[name] == first["retrieval"][name]
    for name in ("i2t_aurc_r1", "t2i_eaurc_r5"):
        assert points[name] == pytest.approx(first["selective"][name], abs=1e-12)
    for name in ("i2t_ece", "t2i_ece"):
        assert points[name] == pytest.approx(first["calibration"][name], abs=1e-12)


def test_evaluation_is_deterministic_and_logged_into_the_training_run(trained):
    import mlflow

    from pipeline.evaluation.run import run_evaluation
    from pipeline.tracking import run_info

    _, request = trained
    run_evaluation(request)
    first = Path(request.metrics).read_bytes(), (Path(request.plots) / "robustness.csv").read_bytes()
    run_evaluation(request)
    assert first == (
        Path(request.metrics).read_bytes(),
        (Path(request.plots) / "robustness.csv").read_bytes(),
    )
    info = run_info(request.model)
    mlflow.set_tracking_uri(info["tracking_uri"])
    run = mlflow.get_run(info["run_id"])
    assert {
        "eval.retrieval.i2t_r10",
        "eval.zero_shot.argmax.mean_accuracy",
        "val_rsum",
    } <= run.data.metrics.keys()
    assert run.data.tags["evaluate.split"] == "validate" and run.data.tags["evaluated"] == "true"
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(info["run_id"], "evaluation")}
    assert f"evaluation/{request.method}" in artifacts  # figures folder


def test_a_checkpoint_of_another_method_or_missing_shards_is_refused(trained, tmp_path):
    from pipeline.evaluation.run import run_evaluation

    _, request = trained
    other = "cxrclip" if request.method == "clip" else "pcmepp"
    with pytest.raises(PipelineError, match=f"holds a '{request.method}' model, not '{other}'"):
        run_evaluation(dataclasses.replace(request, method=other))
    with pytest.raises(PipelineError, match="no shards index"):
        run_evaluation(dataclasses.replace(request, shards=str(tmp_path)))
    with pytest.raises(PipelineError, match="no trained model"):
        run_evaluation(dataclasses.replace(request, model=str(tmp_path)))


def test_evaluate_params_reject_typos_and_bad_choices(tmp_path):
    from pipeline.evaluation.run import evaluate_params

    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"evaluate": {"query_txt": "longest"}}))
    with pytest.raises(ConfigError, match="query_text"):
        evaluate_params(path)
    path.write_text(yaml.safe_dump({"evaluate": {"robustness": {"corruptions": ["fog"]}}}))
    with pytest.raises(ConfigError, match="fog"):
        evaluate_params(path)
    path.write_text(yaml.safe_dump({"train": {}}))
    assert evaluate_params(path).ks == (1, 5, 10, 100)  # no section: the methods.md defaults


def _evaluation(method: str, r10: float) -> dict:
    retrieval = {f"{d}_r{k}": r10 * k / 10 for d in ("i2t", "t2i") for k in (1, 5, 10, 100)}
    retrieval |= {f"random_r{k}": k / 2 for k in (1, 5, 10, 100)} | {"rsum": 1.0, "rsum6": 2.0}
    return {
        "method": method,
        "evaluation_set": {
            "split": "test",
            "n_studies": 200,
            "n_excluded": 3,
            "query_image": "first frontal",
            "query_text": "findings",
        },
        "retrieval": retrieval | {"random_rsum": 3.0, "random_rsum6": 4.0},
        "precision": {"i2t_p_at_1": 50.0, "i2t_random_p_at_1": 20.0},
        "zero_shot": {"argmax": {"mean_accuracy": None, "per_class": {}}, "binary": {"macro_auroc": 0.75}},
        "selective": {"confidence": "variance", "i2t_aurc_r1": 0.5},
        "robustness": {"mean_ratio_r10": 0.9, "rotation_ratio_r10": 0.8},
    }


def test_report_puts_methods_side_by_side_and_says_the_data_is_synthetic(tmp_path):
    from pipeline.report import render

    figures = tmp_path / "reports" / "figures"
    (figures / "clip").mkdir(parents=True)
    (figures / "clip" / "tsne.png").write_bytes(b"png")
    evaluations = {"clip": _evaluation("clip", 20.0), "medprobclip": _evaluation("medprobclip", 30.0)}
    text = render(evaluations, {"clip": {"best_epoch": 3}}, True, figures, tmp_path / "reports")
    assert "synthetic" in text and "200 studies (3 excluded" in text
    assert "| clip | 2.00 | 10.00 | 20.00 | 200.00 |" in text
    assert "| medprobclip | 3.00 | 15.00 | 30.00 | 300.00 |" in text
    assert "| *random* | 0.50 | 2.50 | 5.00 | 50.00 |" in text and "*paper: MedProbCLIP*" in text
    assert "| clip | – |" in text  # a metric that could not be computed (null) shows as a dash
    assert "[t-SNE](figures/clip/tsne.png)" in text and "| medprobclip | – |" in text
    real = render(evaluations, {}, False, figures, tmp_path / "reports")
    assert "synthetic" not in real.split("\n\n")[1]
    with pytest.raises(ValueError, match="no evaluations"):
        render({}, {}, True, figures, tmp_path)


def test_report_shows_the_calibrated_abstention_per_method(tmp_path):
    from pipeline.report import render

    block = {"k": 50, "target_risk": 0.7, "delta": 0.1, "confidence": "variance", "gallery_reports": 1356}
    block |= {
        "i2t": {"risk": 0.6, "coverage": 0.5, "risk_without_abstention": 0.75},
        "t2i": {"risk": None, "coverage": 0.0, "risk_without_abstention": 0.8},
    }
    evaluations = {
        "clip": _evaluation("clip", 20.0),
        "medprobclip": _evaluation("medprobclip", 30.0) | {"abstention": block},
    }
    text = render(evaluations, {}, True, tmp_path, tmp_path)
    assert "## Calibrated abstention" in text and "top 50 of the 1356-report gallery" in text
    assert "| medprobclip | variance | 0.600 | 0.500 | 0.750 | – | 0.000 | 0.800 |" in text
    assert "| clip | – |" in text.split("## Calibrated abstention")[1].split("##")[0]
    assert "## Calibrated abstention" not in render(
        {"clip": _evaluation("clip", 20.0)}, {}, True, tmp_path, tmp_path
    )
