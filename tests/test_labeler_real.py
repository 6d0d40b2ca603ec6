"""Real report sentences (OpenI, public) with the labels the CheXpert rules give them, one group per rule
class that real reports exposed; plus CheXpert's own sample, labelled byte for byte as CheXpert does."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from pipeline.mimic import schema
from pipeline.mimic.labeler import label_text
from pipeline.mimic.labeler.__main__ import main as cli_main

FIXTURES = Path(__file__).parent / "fixtures"


def _cases() -> list[tuple[str, str, dict[str, float]]]:
    with open(FIXTURES / "openi_sentences.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return [
        (
            row["rule"],
            row["sentence"],
            {k: float(v) for k, v in (p.split("=") for p in row["labels"].split(";") if p)},
        )
        for row in rows
    ]


CASES = _cases()


@pytest.mark.parametrize(("rule", "sentence", "labels"), CASES, ids=[f"{c[0]}:{c[1][:40]}" for c in CASES])
def test_openi_sentence(rule: str, sentence: str, labels: dict[str, float]) -> None:
    got = {k: v for k, v in zip(schema.LABEL_COLUMNS, label_text(sentence), strict=True) if not math.isnan(v)}
    assert got == labels, f"{rule}: {sentence!r}"


def test_every_rule_class_has_real_sentences() -> None:
    rules = {c[0] for c in CASES}
    assert {"comma_list", "normal_scope", "stable", "differential", "organ_only", "no_finding"} <= rules
    assert all(sum(c[0] == r for c in CASES) >= 2 for r in rules)


def test_chexpert_sample_matches_chexpert_output_bytes(tmp_path: Path) -> None:
    sample = FIXTURES / "chexpert_sample"
    out = tmp_path / "labeled_reports.csv"
    assert cli_main([str(sample / "sample_reports.csv"), str(out)]) == 0
    assert out.read_bytes() == (sample / "labeled_reports.csv").read_bytes()
