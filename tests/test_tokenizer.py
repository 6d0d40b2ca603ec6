"""WordPiece tokenizer: HF-format round trip, byte-identical across processes, the DVC stage entry."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from corpus import run_entry_point

from pipeline.errors import PipelineError
from pipeline.tokenizer import TokenizerParams, read_report_texts, save_tokenizer, train_wordpiece

ROOT = Path(__file__).resolve().parents[1]
WORDS = [
    "lungs",
    "clear",
    "no",
    "pleural",
    "effusion",
    "pneumothorax",
    "mild",
    "bibasilar",
    "atelectasis",
    "heart",
    "size",
    "normal",
    "opacity",
]
TEXTS = [" ".join(WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(9)) + "." for i in range(120)]
PARAMS = TokenizerParams(vocab_size=150, min_frequency=2, max_length=16)


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_autotokenizer_loads_saved_folder(tmp_path):
    from transformers import AutoTokenizer

    save_tokenizer(train_wordpiece([*TEXTS, "", None, "   "], PARAMS), tmp_path / "tok")
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "tok"), local_files_only=True)
    enc = tok(["Bibasilar atelectasis.", "No effusion " * 20], padding="max_length", truncation=True)
    assert len(enc["input_ids"][0]) == len(enc["input_ids"][1]) == 16
    first = enc["input_ids"][0]
    assert first[0] == tok.cls_token_id and tok.sep_token_id in first and first[-1] == tok.pad_token_id
    assert tok.decode(first, skip_special_tokens=True) == "bibasilar atelectasis."
    assert tok.unk_token_id not in first and len(tok) <= PARAMS.vocab_size


def test_training_is_byte_identical_across_processes(tmp_path):
    save_tokenizer(train_wordpiece(TEXTS, PARAMS), tmp_path / "here")
    script = textwrap.dedent(
        f"""
        from tests.test_tokenizer import PARAMS, TEXTS
        from pipeline.tokenizer import save_tokenizer, train_wordpiece
        save_tokenizer(train_wordpiece(TEXTS, PARAMS), {str(tmp_path / "there")!r})
        """
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"}
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, check=True, timeout=120)
    assert digest(tmp_path / "here") == digest(tmp_path / "there")


def test_blank_corpus_is_an_error():
    with pytest.raises(PipelineError, match="no report text"):
        train_wordpiece(["", "  ", None])


def write_inputs(tmp_path: Path, frame: pd.DataFrame) -> list[str]:
    (tmp_path / "params.yaml").write_text(
        "tokenizer:\n  vocab_size: 150\n  min_frequency: 2\n", encoding="utf-8"
    )
    frame.to_csv(tmp_path / "train.csv", index=False)
    return ["--params", str(tmp_path / "params.yaml"), "--train-csv", str(tmp_path / "train.csv")]


def test_stage_writes_tokenizer_from_study_csv(tmp_path):
    frame = pd.DataFrame(
        {"study_id": range(60), "findings": TEXTS[:60], "impression": [""] * 30 + TEXTS[60:90]}
    )
    args = write_inputs(tmp_path, frame)
    assert run_entry_point(["stages/tokenizer.py", *args, "--out", str(tmp_path / "out")], tmp_path).code == 0
    assert {"tokenizer.json", "tokenizer_config.json"} <= {p.name for p in (tmp_path / "out").iterdir()}
    assert read_report_texts(tmp_path / "train.csv")[:3] == [TEXTS[0], "", TEXTS[1]]


def test_stage_reports_bad_inputs(tmp_path):
    args = [
        "stages/tokenizer.py",
        *write_inputs(tmp_path, pd.DataFrame({"study_id": [1], "findings": ["x"]})),
    ]
    run = run_entry_point([*args, "--out", str(tmp_path / "out")], tmp_path)
    assert run.code == 2 and run.err.startswith("error: ") and "missing column(s) ['impression']" in run.err
    (tmp_path / "params.yaml").write_text("tokenizer:\n  vocab_sise: 10\n", encoding="utf-8")
    run = run_entry_point([*args, "--out", str(tmp_path / "out")], tmp_path)
    assert run.code == 2 and "did you mean 'vocab_size'" in run.err
    assert not (tmp_path / "out").exists()
