"""The gallery stage, the `Retriever` and `medprobclip retrieve` on a tiny trained model."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image
from test_train import build_tiny_project

from pipeline.errors import PipelineError
from pipeline.retrieval import Hit, QueryImageError, QueryResult, RetrievalParams, Retriever
from pipeline.retrieval.bundle import BundleError

PARAMS = RetrievalParams(k=5, target_risk=0.5, delta=0.2, grid_levels=10, min_coverage=0.2, batch_size=8)


@pytest.fixture(scope="module", params=["medprobclip", pytest.param("clip", marks=pytest.mark.slow)])
def project(request, tmp_path_factory):
    """(root, model folder with best/ and retrieval/) of a one-epoch tiny model."""
    from pipeline.retrieval.gallery import make_gallery
    from pipeline.training.run import run_training

    root, train_request = build_tiny_project(tmp_path_factory.mktemp(request.param), request.param, epochs=1)
    model = root / "models" / request.param
    run_training(dataclasses.replace(train_request, out=str(model)))
    make_gallery(model, root / "shards", root / "studies", PARAMS, root / "tokenizer", method=request.param)
    return root, model


def an_image(root: Path) -> Path:
    return next((root / "mimic").rglob("*.jpg"))


def test_gallery_bundle_holds_the_splits_and_is_deterministic(project, tmp_path):
    from pipeline.retrieval.bundle import read_bundle
    from pipeline.retrieval.gallery import make_gallery

    root, model = project
    bundle = read_bundle(model / "retrieval")
    info = bundle.info
    probabilistic = model.name == "medprobclip"
    assert info["confidence"] == ("variance" if probabilistic else "top1")
    assert set(bundle.reports) == ({"mu", "logvar"} if probabilistic else {"emb"})
    n = len(bundle.report_ids)  # train 16 + validate 8, minus studies the evaluation protocol excludes
    assert 18 <= n <= 24 and len(bundle.image_ids) == n and len(bundle.report_texts) == n
    assert set(bundle.report_splits) == {"train", "validate"} and all(bundle.report_texts)
    assert all(p.endswith(".jpg") for path in bundle.image_paths for p in path.split(";"))
    confidence, rank = bundle.calibration["i2t"]  # the calibration half; the grid half places thresholds
    assert len(confidence) + len(bundle.grid["i2t"]) == bundle.report_splits.count("validate")
    assert abs(len(confidence) - len(bundle.grid["i2t"])) <= 1 and (rank >= 0).all() and (rank < n).all()
    assert set(info["calibration"]["i2t"]) >= {"threshold", "coverage", "risk", "p_value", "n_calibration"}
    assert (model / "retrieval" / "tokenizer" / "tokenizer.json").is_file()
    # same inputs → byte-identical bundle
    make_gallery(model, root / "shards", root / "studies", PARAMS, root / "tokenizer", out=tmp_path / "again")
    for path in sorted((model / "retrieval").rglob("*")):
        if path.is_file():
            assert (
                path.read_bytes() == (tmp_path / "again" / path.relative_to(model / "retrieval")).read_bytes()
            )


def test_retriever_searches_both_ways_with_an_abstention_decision(project):
    root, model = project
    retriever = Retriever.from_folder(model)
    assert retriever.method == model.name and retriever.k_default == 5 and retriever.target_risk == 0.5
    image = Image.open(an_image(root))
    results = retriever.search_images([image, image.convert("RGB")], k=3, names=["a", "b"])
    assert [r.query for r in results] == ["a", "b"]
    first = results[0]
    assert isinstance(first, QueryResult) and isinstance(first.hits[0], Hit) and len(first.hits) == 3
    assert [h.score for h in first.hits] == sorted((h.score for h in first.hits), reverse=True)
    assert {h.study_id for h in first.hits} <= set(retriever.bundle.report_ids.tolist())
    assert (first.hits[0].uncertainty is not None) == (model.name == "medprobclip")
    assert first.to_dict() == json.loads(json.dumps(first.to_dict()))
    assert set(first.to_dict()) == {"query", "abstain", "uncertainty", "hits"}
    assert set(first.to_dict()["hits"][0]) == {"study_id", "score", "uncertainty", "text"}
    threshold = retriever.uncertainty_threshold(3)
    for result in results:
        assert result.abstain == (threshold is None or result.uncertainty > threshold + 1e-9)
    texts = retriever.search_text([retriever.bundle.report_texts[0]], k=4)
    assert len(texts[0].hits) == 4 and texts[0].hits[0].text.endswith(".jpg")
    about = retriever.describe()
    assert (
        about["gallery"]["reports"] == len(retriever.bundle.report_ids)
        and "Learn-then-Test" in about["guarantee"]
    )
    assert "exchangeable" in about["guarantee"]
    # a lower target can only make abstention stricter (fewer accepted calibration queries)
    strict, loose = retriever.with_target_risk(0.05), retriever.with_target_risk(0.95)
    assert (
        strict.calibration(3).coverage <= retriever.calibration(3).coverage <= loose.calibration(3).coverage
    )


def test_abstention_on_evaluation_queries(project):
    """The evaluation's abstention block, on the validation split (the tiny fixture has no test split)."""
    from pipeline.evaluation.abstention import evaluate_abstention
    from pipeline.evaluation.params import EvaluateParams
    from pipeline.evaluation.runner import Evaluation

    root, model = project
    retriever = Retriever.from_folder(model)
    embedded = retriever.trained.embed_split(root / "shards" / "validate", EvaluateParams(batch_size=8))
    result = Evaluation()
    evaluate_abstention(result, retriever.trained, embedded, retriever.bundle)
    block = result.metrics["abstention"]
    assert (block["k"], block["target_risk"], block["delta"]) == (5, 0.5, 0.2)
    for direction in ("i2t", "t2i"):
        out = block[direction]
        # validation queries against the bundle's own calibration: the same numbers as calibration
        assert out["coverage"] == pytest.approx(out["calibration_coverage"])
        assert out["n_queries"] == len(embedded) and 0 <= out["coverage"] <= 1


def test_abstention_refuses_a_bundle_calibrated_on_other_queries(project):
    """The evaluation scores the bundle's rule only on the queries it was calibrated for."""
    from pipeline.evaluation.abstention import evaluate_abstention
    from pipeline.evaluation.params import EvaluateParams
    from pipeline.evaluation.runner import Evaluation

    root, model = project
    retriever = Retriever.from_folder(model)
    params = EvaluateParams(batch_size=8, query_text="longest")
    embedded = retriever.trained.embed_split(root / "shards" / "validate", params)
    with pytest.raises(PipelineError, match="query_text='findings'"):
        evaluate_abstention(Evaluation(), retriever.trained, embedded, retriever.bundle, params)
    with pytest.raises(PipelineError, match="target risk must lie in"):
        Retriever(retriever.trained, retriever.bundle, target_risk=1.5)


def test_retrieve_cli_defaults_to_the_calibrated_k(project, capsys, monkeypatch):
    """Without --k, retrieve uses the bundle's k (the one its threshold was calibrated at)."""
    root, model = project
    load = Retriever.from_folder

    def with_k3(*args, **kwargs):
        retriever = load(*args, **kwargs)
        retriever.k_default = 3  # neither the fixture's 5 nor any fixed CLI default
        return retriever

    monkeypatch.setattr(Retriever, "from_folder", with_k3)
    code, out, _ = run_cli(
        ["retrieve", str(an_image(root)), "--model", str(model), "--format", "json"], capsys
    )
    assert code == 0 and len(json.loads(out)[0]["hits"]) == 3


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    from pipeline.cli import main

    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_retrieve_cli_json_and_table(project, capsys):
    root, model = project
    image = str(an_image(root))
    code, out, _ = run_cli(["retrieve", image, "--model", str(model), "--k", "4", "--format", "json"], capsys)
    assert code == 0
    results = json.loads(out)
    assert len(results) == 1 and results[0]["query"] == image and len(results[0]["hits"]) == 4
    assert isinstance(results[0]["abstain"], bool) and isinstance(results[0]["uncertainty"], float)
    code, out, _ = run_cli(
        [
            "retrieve",
            "--text",
            "No pleural effusion.",
            "--model",
            str(model),
            "--k",
            "2",
            "--target-risk",
            "0.9",
        ],
        capsys,
    )
    assert code == 0 and "query: No pleural effusion." in out and "Research use only" in out


@pytest.mark.parametrize(
    "case", ["missing", "not_an_image", "empty", "bad_model", "no_bundle", "no_query", "bad_risk"]
)
def test_retrieve_cli_bad_inputs_are_one_line_errors(project, capsys, tmp_path, case):
    root, model = project
    image = str(an_image(root))
    args = {
        "missing": ["retrieve", str(tmp_path / "nope.jpg"), "--model", str(model)],
        "not_an_image": ["retrieve", str(root / "params.yaml"), "--model", str(model)],
        "empty": ["retrieve", str(tmp_path / "empty.png"), "--model", str(model)],
        "bad_model": ["retrieve", image, "--model", str(tmp_path / "nowhere")],
        "no_bundle": ["retrieve", image, "--model", str(tmp_path)],
        "no_query": ["retrieve", "--model", str(model)],
        "bad_risk": ["retrieve", image, "--model", str(model), "--target-risk", "1.5"],
    }[case]
    (tmp_path / "empty.png").write_bytes(b"")
    code, out, err = run_cli(args, capsys)
    assert code == 2 and out == "" and err.startswith("error: ") and err.count("\n") == 1, err


def test_a_bundle_of_another_model_version_is_refused(project, tmp_path):
    _, model = project
    copy = tmp_path / "model"
    shutil.copytree(model / "best", copy / "best")
    shutil.copytree(model / "retrieval", copy / "retrieval")
    info = json.loads((copy / "retrieval" / "retrieval.json").read_text())
    (copy / "retrieval" / "retrieval.json").write_text(json.dumps(info | {"model_sha256": "0" * 64}))
    with pytest.raises(BundleError, match="another version"):
        Retriever.from_folder(copy)
    (copy / "retrieval" / "gallery.safetensors").write_bytes(b"junk")
    with pytest.raises(BundleError, match="damaged"):
        Retriever.from_folder(copy)


def test_query_image_errors_are_pipeline_errors(project):
    _, model = project
    retriever = Retriever.from_folder(model)
    with pytest.raises(QueryImageError, match="not a usable X-ray image"):
        retriever.read_image(b"<html>not found</html>", "page.html")
    assert issubclass(QueryImageError, PipelineError)
    with pytest.raises(PipelineError, match="empty"):
        retriever.search_text(["  "])


def test_user_reports_csv_gallery(project, tmp_path):
    from pipeline.retrieval.gallery import GalleryError, make_gallery, read_reports_csv

    root, model = project
    csv = tmp_path / "mine.csv"
    csv.write_text(
        'study_id,text\n1,"Small left pleural effusion."\n2,"No acute cardiopulmonary process."\n3,"Mild edema."\n'
    )
    assert read_reports_csv(csv) == (
        [1, 2, 3],
        ["Small left pleural effusion.", "No acute cardiopulmonary process.", "Mild edema."],
    )
    out = tmp_path / "model"
    shutil.copytree(model / "best", out / "best")
    make_gallery(
        out,
        root / "shards",
        root / "studies",
        dataclasses.replace(PARAMS, reports=str(csv)),
        root / "tokenizer",
    )
    results = Retriever.from_folder(out).search_images([Image.open(an_image(root))], k=5)
    assert sorted(h.study_id for h in results[0].hits) == [1, 2, 3]  # k capped at the gallery size
    (tmp_path / "bad.csv").write_text("study_id,text\nx,hello\n")
    with pytest.raises(GalleryError, match="bad.csv:2: study_id 'x' is not a whole number"):
        read_reports_csv(tmp_path / "bad.csv")
    (tmp_path / "cols.csv").write_text("id,body\n1,hello\n")
    with pytest.raises(GalleryError, match="needs a study_id column"):
        read_reports_csv(tmp_path / "cols.csv")


@pytest.mark.parametrize("method", ["clip", "cxrclip", "mcsl", "pcmepp", "medprobclip"])
def test_gallery_scorer_is_the_methods_score_and_search_matches_brute_force(method):
    """The prepared fast paths (cosine, CSD, ELK) give `loss.similarity`'s scores, the blocked top-k gives a
    full sort's order, and the own-item ranks count exactly the other items scoring at least as high."""
    import torch

    from pipeline.losses import create_loss
    from pipeline.retrieval.search import GalleryScorer, ranks_against_gallery, topk_search

    loss = create_loss(method, embed_dim=8).eval()
    g = torch.Generator().manual_seed(0)

    def rows(n: int) -> dict:
        if loss.probabilistic:
            return {"mu": torch.randn(n, 8, generator=g), "logvar": 0.5 * torch.randn(n, 8, generator=g)}
        return {"emb": torch.nn.functional.normalize(torch.randn(n, 8, generator=g), dim=-1)}

    gallery, queries, own = rows(50), rows(7), rows(7)
    scorer = GalleryScorer(loss, gallery)
    assert scorer.kind == {"pcmepp": "csd", "medprobclip": "elk"}.get(method, "cosine")
    full = loss.similarity(queries, gallery)
    torch.testing.assert_close(scorer.scores(queries), full, rtol=1e-5, atol=1e-4)
    _, index = topk_search(scorer, queries, k=6, block=16)  # blocks smaller than the gallery
    expected = full.sort(dim=1, descending=True, stable=True)
    assert torch.equal(index, expected.indices[:, :6])
    exclude = torch.tensor([3, -1, 10, -1, 0, 49, -1])
    rank, top = ranks_against_gallery(scorer, queries, own, exclude, k=2, block=16)
    own_score = loss.similarity(queries, own).diagonal()
    for i in range(7):
        others = (
            torch.cat([full[i, : max(exclude[i], 0)], full[i, exclude[i] + 1 :]])
            if exclude[i] >= 0
            else full[i]
        )
        assert rank[i] == int((others >= own_score[i] - 1e-5).sum())
        best = torch.cat([others, own_score[i : i + 1]]).sort(descending=True).values[:2]
        torch.testing.assert_close(top[i], best, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("method", ["clip", "medprobclip"])
def test_an_exact_duplicate_of_the_own_item_counts_against_it_whatever_the_block(method):
    """A gallery copy of the own report scored through another block shape still ties (counted against)."""
    import torch

    from pipeline.losses import create_loss
    from pipeline.retrieval.search import GalleryScorer, ranks_against_gallery

    loss = create_loss(method, embed_dim=64).eval()
    g = torch.Generator().manual_seed(1)
    if loss.probabilistic:
        gallery = {"mu": 3 * torch.randn(40, 64, generator=g), "logvar": torch.randn(40, 64, generator=g)}
    else:
        gallery = {"emb": torch.randn(40, 64, generator=g)}
    queries = {key: value[:9] + 0.1 for key, value in gallery.items()}
    own = {key: value[:9].clone() for key, value in gallery.items()}  # copies of gallery rows 0-8, kept in
    scorer = GalleryScorer(loss, gallery)
    none = torch.full((9,), -1)
    for block in (1, 7, 40):
        rank, _ = ranks_against_gallery(scorer, queries, own, none, block=block)
        strictly_better = (scorer.scores(queries) > scorer.scores(queries).diagonal()[:, None] + 1e-3).sum(1)
        assert torch.all(rank >= strictly_better + 1), (block, rank)


def test_gallery_stage_entry_point(project, tmp_path, monkeypatch, capsys):
    """`stages/gallery.py` as DVC runs it: params.yaml's retrieval section (defaults here), one summary line."""
    import importlib.util
    import sys

    root, model = project
    spec = importlib.util.spec_from_file_location(
        "gallery_stage", Path(__file__).parents[1] / "stages/gallery.py"
    )
    stage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage)
    argv = ["gallery.py", model.name, "--params", str(root / "params.yaml"), "--model", str(model)]
    argv += ["--shards", str(root / "shards"), "--studies", str(root / "studies")]
    argv += ["--tokenizer", str(root / "tokenizer"), "--out", str(tmp_path / "bundle")]
    monkeypatch.setattr(sys, "argv", argv)
    stage.main()
    assert "image→text at K=50, target risk 0.7" in capsys.readouterr().out
    assert json.loads((tmp_path / "bundle" / "retrieval.json").read_text())["params"]["k"] == 50
    monkeypatch.setattr(sys, "argv", [*argv[:-2], "--studies", str(tmp_path), "--out", str(tmp_path / "b2")])
    with pytest.raises(PipelineError, match="study CSV missing"):
        stage.main()
