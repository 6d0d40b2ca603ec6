from __future__ import annotations

import json

import pandas as pd
import pytest

from pipeline.cli import main
from pipeline.mimic import schema
from pipeline.synthetic.generate import SynthesizeParams, synthesize


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    synthesize(SynthesizeParams(n_patients=40, images=False, workers=1), out)
    return out


def test_studies_command_writes_every_output(release, tmp_path, capsys):
    root = release / "mimic-cxr-jpg/2.1.0"
    code = main(
        ["studies", "--mimic-root", str(root), "--reports-root", str(release / "mimic-cxr-reports"),
         "--out", str(tmp_path), "--labels", "negbio", "--max-images", "1", "--absolute-paths",
         "--workers", "1"]
    )  # fmt: skip
    assert code == 0
    assert "studies (train" in capsys.readouterr().out
    summary = json.loads((tmp_path / "summary.json").read_text())
    frames = {s: pd.read_csv(tmp_path / f"{s}.csv") for s in schema.SPLITS}
    rejects = pd.read_csv(tmp_path / "rejects.csv")
    split_studies = pd.read_csv(root / schema.SPLIT_FILE)["study_id"].nunique()
    assert sum(len(f) for f in frames.values()) + len(rejects) == split_studies
    assert summary["output_studies"]["total"] == sum(len(f) for f in frames.values())
    train = frames["train"]
    assert (train["n_images"] == 1).all()
    assert train["image_paths"].str.startswith(str(root.resolve())).all()
    negbio = pd.read_csv(root / schema.NEGBIO_FILE).set_index("study_id")
    got = train.set_index("study_id")[schema.LABEL_COLUMNS]
    pd.testing.assert_frame_equal(got, negbio.loc[got.index, schema.LABEL_COLUMNS], check_dtype=False)


def test_user_errors_exit_2_with_one_line(tmp_path, capsys):
    code = main(
        [
            "studies",
            "--mimic-root",
            str(tmp_path),
            "--reports-root",
            str(tmp_path),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert schema.METADATA_FILE in err


def test_label_reports_command(tmp_path):
    src = tmp_path / "reports.csv"
    pd.DataFrame({"Report Impression": ["No pleural effusion. Mild cardiomegaly.", ""]}).to_csv(
        src, index=False
    )
    assert main(["label-reports", str(src), str(tmp_path / "out.csv"), "--workers", "1"]) == 0
    out = pd.read_csv(tmp_path / "out.csv")
    assert list(out.columns) == ["Report Impression", *schema.CHEXPERT_ORDER]
    assert out.loc[0, "Cardiomegaly"] == 1.0 and out.loc[0, "Pleural Effusion"] == 0.0
