"""The retriever as a registered MLflow pyfunc model: champion choice, the pyfunc's input handling, and (slow)
a real tiny trained model logged, registered, aliased, loaded back with its signature, and served over REST
by `mlflow models serve` offline."""

from __future__ import annotations

import base64
import functools
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from pipeline.errors import PipelineError
from pipeline.retrieval.pyfunc import (
    Candidate,
    choose_champion,
    encode_image,
    input_example,
    model_signature,
    predict,
    synthetic_xray,
)
from pipeline.retrieval.retriever import read_query_image
from pipeline.retrieval.serve import UploadError


def cand(method: str, seed: int, rsum: float) -> Candidate:
    return Candidate(method, seed, Path(f"models/{method}/seed{seed}"), {"run_id": "r"}, rsum)


def test_champion_is_the_best_mean_validation_rsum_and_best_seed_within_each_method():
    candidates = [
        cand("clip", 42, 100.0), cand("clip", 43, 140.0),  # mean 120, best seed 43
        cand("medprobclip", 42, 125.0), cand("medprobclip", 43, 119.0),  # mean 122, best seed 42
        cand("pcmepp", 42, 90.0), cand("pcmepp", 43, 90.0),  # a tie: the first seed
    ]  # fmt: skip
    assert choose_champion(candidates) == ("medprobclip", {"clip": 43, "medprobclip": 42, "pcmepp": 42})
    tie = [cand("clip", 42, 100.0), cand("mcsl", 42, 100.0)]
    assert choose_champion(tie)[0] == "clip"  # ties go to the first method in params order
    with pytest.raises(PipelineError):
        choose_champion([])


@dataclass(frozen=True)
class Result:
    query: str
    kind: str
    k: int

    def to_dict(self) -> dict:
        return {
            "query": self.query,
            "abstain": False,
            "uncertainty": 0.0,
            "hits": [{"kind": self.kind}] * self.k,
        }


class Recorder:
    k_default = 4

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int]] = []

    def read_image(self, data, name="image"):
        return read_query_image(data, 32, name)

    def search_images(self, images, k=5, names=None):
        assert all(isinstance(im, Image.Image) and im.mode == "L" for im in images)
        self.calls.append(("images", len(images), k))
        return [Result(n, "image", k) for n in names]

    def search_text(self, texts, k=5):
        self.calls.append(("text", len(texts), k))
        return [Result(t, "text", k) for t in texts]


def test_predict_keeps_row_order_batches_each_direction_and_reads_k():
    image = encode_image(synthetic_xray(32))
    frame = pd.DataFrame({
        "image": [image, None, "data:image/png;base64," + image],
        "text": [None, "small left effusion", None],
        "name": ["a.png", None, None],
    })  # fmt: skip
    rec = Recorder()
    out = predict(rec, frame, {"k": 2})
    assert [r["query"] for r in out] == ["a.png", "small left effusion", "image-2"]
    assert [r["hits"][0]["kind"] for r in out] == ["image", "text", "image"] and all(
        len(r["hits"]) == 2 for r in out
    )
    assert sorted(rec.calls) == [("images", 2, 2), ("text", 1, 2)]
    assert len(predict(rec, frame.iloc[:1], None)[0]["hits"]) == 4  # the retriever's default k


@pytest.mark.parametrize(
    "row, message",
    [
        ({"image": None, "text": None}, "exactly one"),
        ({"image": "aGk=", "text": "both"}, "exactly one"),
        ({"image": "not base64 !!"}, "base64"),
        ({"image": base64.b64encode(b"hello").decode()}, "not a JPEG or PNG"),
    ],
)
def test_bad_rows_are_one_line_errors(row, message):
    with pytest.raises(UploadError, match=message):
        predict(Recorder(), pd.DataFrame([row]), {"k": 1})


@pytest.mark.parametrize(
    "k, message",
    [(0, "between 1 and"), (-3, "between 1 and"), (10_000, "between 1 and"), ("many", "whole number")],
)
def test_bad_or_unbounded_k_is_a_400_not_a_gallery_dump(k, message):
    """k is checked and capped like the page's: no REST caller pages through the (PHI) gallery."""
    frame = pd.DataFrame({"text": ["small left effusion"]})
    with pytest.raises(UploadError, match=message) as info:
        predict(Recorder(), frame, {"k": k})
    assert info.value.status == 400


def test_signature_and_input_example_agree_and_carry_no_real_image():
    signature = model_signature(7)
    assert signature.params.to_dict() == [{"name": "k", "type": "long", "default": 7, "shape": None}]
    assert set(signature.inputs.input_names()) == {"image", "text", "name"}
    assert signature.outputs.input_names() == ["query", "abstain", "uncertainty", "hits"]
    example = input_example()
    image = Image.open(io.BytesIO(base64.b64decode(example.loc[0, "image"])))
    assert image.mode == "L" and image.size == (64, 64) and example.loc[0, "name"] == "synthetic-example"


# -- a real tiny trained model (slow) ------------------------------------------------------------------


@functools.cache
def tiny_retrieval_model(method: str = "medprobclip") -> Path:
    """models/<method>/seed42 of a tiny project trained for one epoch, with its retrieval bundle; built once
    per session (tests/test_serve_browser.py reuses it). Returns the model folder."""
    import dataclasses
    import tempfile

    from test_train import build_tiny_project

    from pipeline.retrieval.gallery import make_gallery
    from pipeline.retrieval.params import RetrievalParams
    from pipeline.training.run import run_training

    root, request = build_tiny_project(
        Path(tempfile.mkdtemp(prefix=f"retrieval-{method}-")), method, epochs=1
    )
    folder = root / "models" / method / "seed42"
    run_training(dataclasses.replace(request, out=str(folder)))
    params = RetrievalParams(k=5, target_risk=0.8, grid_levels=10)
    make_gallery(folder, root / "shards", root / "studies", params, root / "tokenizer", method=method)
    return folder


def gallery_texts(folder: Path) -> list[str]:
    return pd.read_csv(folder / "retrieval" / "reports.csv", keep_default_na=False)["text"].tolist()


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    """Both tiny models trained and registered through the register stage's code path into a fresh store
    (the session's store also holds the end-to-end test's `medprobclip-*` models and their versions)."""
    import mlflow

    from pipeline.retrieval.pyfunc import register_models
    from pipeline.tracking import run_info

    store = tmp_path_factory.mktemp("mlflow-registry")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}/mlflow.db")
        folders = {m: tiny_retrieval_model(m) for m in ("medprobclip", "clip")}
        candidates = [
            Candidate("medprobclip", 42, folders["medprobclip"], run_info(folders["medprobclip"]), 60.0),
            Candidate("clip", 42, folders["clip"], run_info(folders["clip"]), 50.0),
        ]
        record = register_models(candidates)
        mlflow.set_tracking_uri(candidates[0].run["tracking_uri"])
        yield folders, candidates, record
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])


@pytest.mark.slow
def test_registered_champion_loads_with_a_signature_and_answers_like_the_retriever(registered):
    import mlflow

    from pipeline.retrieval import Retriever
    from pipeline.retrieval.pyfunc import load_retriever_from_mlflow

    folders, _candidates, record = registered
    assert (
        record["champion"]["method"] == "medprobclip"
        and record["champion"]["uri"] == "models:/medprobclip-medprobclip@champion"
    )
    assert {(r["method"], r["version"]) for r in record["models"]} == {("medprobclip", 1), ("clip", 1)}
    model = mlflow.pyfunc.load_model("models:/medprobclip-medprobclip@champion")
    signature = model.metadata.signature
    assert signature is not None and signature.params.to_dict()[0]["name"] == "k"
    assert set(signature.inputs.input_names()) == {"image", "text", "name"}
    out = model.predict(input_example(), params={"k": 3})
    assert (
        len(out) == 1
        and set(out[0]) == {"query", "abstain", "uncertainty", "hits"}
        and len(out[0]["hits"]) == 3
    )
    direct = Retriever.from_folder(folders["medprobclip"])
    expected = direct.search_images(
        [direct.read_image(base64.b64decode(input_example().loc[0, "image"]))],
        k=3,
        names=["synthetic-example"],
    )
    assert out[0] == expected[0].to_dict()  # the registered model is the same class, same answer
    texts = model.predict(
        pd.DataFrame({"text": ["No pleural effusion. Heart size is normal."]}), params={"k": 2}
    )
    assert len(texts[0]["hits"]) == 2 and all(h["uncertainty"] is not None for h in texts[0]["hits"])
    loaded = load_retriever_from_mlflow("models:/medprobclip-clip@best")
    assert isinstance(loaded, Retriever) and loaded.method == "clip"
    with pytest.raises(PipelineError, match="cannot load the MLflow model"):
        load_retriever_from_mlflow("models:/medprobclip-nothing@champion")


@pytest.mark.slow
def test_champion_moves_without_new_versions_and_the_run_shows_its_model(registered):
    import mlflow

    from pipeline.retrieval.pyfunc import register_models

    _folders, candidates, _ = registered
    client = mlflow.MlflowClient()
    again = register_models([candidates[0], Candidate(**{**vars(candidates[1]), "val_rsum": 70.0})])
    assert again["champion"]["method"] == "clip"
    assert {(r["method"], r["version"]) for r in again["models"]} == {
        ("medprobclip", 1),
        ("clip", 1),
    }  # unchanged: reused
    assert int(client.get_model_version_by_alias("medprobclip-clip", "champion").version) == 1
    with pytest.raises(mlflow.exceptions.MlflowException):
        client.get_model_version_by_alias("medprobclip-medprobclip", "champion")  # one champion only
    for c in candidates:  # the training run's "Models" column: the logged model belongs to it
        models = mlflow.search_logged_models(experiment_ids=[c.run["experiment_id"]], output_format="list")
        assert any(m.source_run_id == c.run["run_id"] for m in models)


@pytest.mark.slow
def test_no_report_text_in_registry_tags_or_run_params(registered):
    import mlflow

    folders, candidates, _record = registered
    client = mlflow.MlflowClient()
    phrases = {t for f in folders.values() for t in gallery_texts(f) if t}
    assert phrases
    seen = []
    for c in candidates:
        run = client.get_run(c.run["run_id"])
        seen += [*run.data.params.values(), *run.data.tags.values()]
        for version in client.search_model_versions(f"name = 'medprobclip-{c.method}'"):
            seen += [*version.tags.values(), version.description or ""]
        seen.append(client.get_registered_model(f"medprobclip-{c.method}").description or "")
    blob = "\n".join(seen)
    leaked = [t for t in phrases if t in blob]
    assert not leaked, leaked[:3]
    assert "protected health information" in client.get_registered_model("medprobclip-clip").description


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_mlflow_models_serve_answers_a_rest_query_offline(registered):
    import httpx
    import mlflow

    uri = registered[1][0].run["tracking_uri"]
    client = mlflow.MlflowClient(uri)
    holders = [m.name for m in client.search_registered_models() if "champion" in m.aliases]
    assert len(holders) == 1  # whichever method the tests above left as champion
    port = free_port()
    # `models serve` runs `uvicorn` from PATH: the environment's bin, as in an activated venv / `make`
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = os.environ | {"MLFLOW_TRACKING_URI": uri, "PATH": path}
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{holders[0]}@champion",
         "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, server.stderr.read()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                assert time.monotonic() < deadline, "mlflow models serve did not start"
                time.sleep(0.5)
        image = encode_image(synthetic_xray(80))
        body = {
            "dataframe_split": {"columns": ["image", "name"], "data": [[image, "a.png"]]},
            "params": {"k": 4},
        }
        answer = httpx.post(f"http://127.0.0.1:{port}/invocations", json=body, timeout=60)
        assert answer.status_code == 200, answer.text
        predictions = answer.json()["predictions"]
        assert (
            len(predictions) == 1 and predictions[0]["query"] == "a.png" and len(predictions[0]["hits"]) == 4
        )
        assert isinstance(predictions[0]["abstain"], bool) and isinstance(
            predictions[0]["uncertainty"], float
        )
        bad = {"dataframe_split": {"columns": ["image"], "data": [["bm90IGFuIGltYWdl"]]}}
        refused = httpx.post(f"http://127.0.0.1:{port}/invocations", json=bad, timeout=60)
        assert refused.status_code == 400 and "not a JPEG or PNG" in refused.text
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
def test_register_stage_reads_params_and_training_metrics_and_writes_its_record(registered, tmp_path):
    """stages/register.py as `dvc repro` runs it: methods × seeds from params.yaml, validation RSUM from
    metrics/train, model folders from models/; unchanged folders reuse their versions."""
    import yaml

    folders, _, _ = registered
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"methods": ["clip", "medprobclip"], "seeds": [42]}))
    for method, rsum in (("clip", 80.0), ("medprobclip", 90.0)):
        (tmp_path / "models" / method).mkdir(parents=True)
        (tmp_path / "models" / method / "seed42").symlink_to(folders[method])
        train = tmp_path / "metrics" / "train" / method
        train.mkdir(parents=True)
        (train / "seed42.json").write_text(json.dumps({"val": {"rsum": rsum}}))
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, str(root / "stages" / "register.py"), "--models-dir", "models", "--metrics-dir", "metrics",
         "--out", "metrics/register.json"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((tmp_path / "metrics" / "register.json").read_text())
    assert record["champion"]["method"] == "medprobclip" and record["champion"]["val_rsum"] == 90.0
    assert [(r["method"], r["version"]) for r in record["models"]] == [("clip", 1), ("medprobclip", 1)]
    assert "champion models:/medprobclip-medprobclip@champion" in done.stdout
    (tmp_path / "metrics" / "train" / "clip" / "seed42.json").write_text("{}")
    failed = subprocess.run(
        [sys.executable, str(root / "stages" / "register.py"), "--models-dir", "models", "--metrics-dir", "metrics",
         "--out", "metrics/register.json"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert failed.returncode == 2 and failed.stderr.strip().splitlines()[-1].startswith(
        "error: clip seed 42: no validation RSUM"
    )
