"""Rule labeler: throughput (reports/s) and agreement with the shipped chexpert file on the synthetic source.

    .venv/bin/python bench/bench_labeler.py                      # generate 2,000 patients into a temp dir
    .venv/bin/python bench/bench_labeler.py --data data/synthetic # or use an existing synthetic tree

Labels are computed on the sidecar's impression, else findings (what the release labelled). The naive
baseline measured in the same run finds mentions phrase by phrase, one regex scan per phrase (the
CheXpert extractor's loop); the ratio is ours / naive on the same texts.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.mimic import schema
from pipeline.mimic.labeler import agreement, agreement_table, choose_label_text, label_reports

classify_module = importlib.import_module("pipeline.mimic.labeler.classify")
from pipeline.mimic.labeler.aggregate import aggregate  # noqa: E402
from pipeline.mimic.labeler.rules import clean_text  # noqa: E402
from pipeline.mimic.labeler.vocab import MENTIONS, UNMENTIONS  # noqa: E402


def _synthetic(data: Path | None, n_patients: int, seed: int) -> Path:
    if data is not None:
        return data
    from pipeline.synthetic.generate import SynthesizeParams, synthesize

    out = Path(tempfile.mkdtemp(prefix="bench_labeler_")) / "synthetic"
    synthesize(SynthesizeParams(seed=seed, n_patients=n_patients, images=False, workers=0), out)
    return out


def _last_paragraph(root: Path, subject_id: int, study_id: int) -> str:
    """The release's fallback text for reports with neither findings nor impression (lead's extractor)."""
    from pipeline.mimic.sections import decode_report, extract_sections

    path = root / "mimic-cxr-reports" / schema.report_relpath(subject_id, study_id)
    if not path.is_file():
        return ""
    return extract_sections(decode_report(path.read_bytes())[0]).last_paragraph or ""


def _naive_find_mentions(text: str) -> list[tuple[str, int, int, str]]:
    found = []
    for observation, phrases in _NAIVE.items():
        blocked = [m.span() for rx in _NAIVE_UN.get(observation, ()) for m in rx.finditer(text)]
        for rx in phrases:
            for m in rx.finditer(text):
                if not any(m.start() < e and m.end() > s for s, e in blocked):
                    found.append((observation, m.start(), m.end(), m.group()))
    return found


_NAIVE = {obs: [re.compile(rf"\b(?:{p})\b") for p in phrases] for obs, phrases in MENTIONS.items()}
_NAIVE_UN = {obs: [re.compile(rf"\b(?:{p})\b") for p in phrases] for obs, phrases in UNMENTIONS.items()}


def _naive_label(texts: list[str]) -> None:
    fast = classify_module.find_mentions
    classify_module.find_mentions = _naive_find_mentions
    try:
        for text in texts:
            cleaned = clean_text(text)
            if cleaned:
                aggregate(classify_module.classify(cleaned, cleaned=True))
    finally:
        classify_module.find_mentions = fast


def _rate(fn, texts: list[str]) -> float:
    start = time.perf_counter()
    fn(texts)
    return len(texts) / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, help="existing synthetic output directory (has truth.parquet)")
    parser.add_argument("--n-patients", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--workers", type=int, default=0, help="pool size for the parallel run (0: all CPUs)")
    parser.add_argument("--json", type=Path, help="also write the agreement report here")
    args = parser.parse_args()

    root = _synthetic(args.data, args.n_patients, args.seed)
    truth = pd.read_parquet(
        root / "truth.parquet", columns=["subject_id", "study_id", "findings", "impression"]
    )
    shipped = pd.read_csv(root / "mimic-cxr-jpg" / "2.1.0" / schema.CHEXPERT_FILE)
    texts = [
        choose_label_text(f, i, None) or _last_paragraph(root, subject, study)
        for subject, study, f, i in zip(
            truth.subject_id, truth.study_id, truth.findings, truth.impression, strict=True
        )
    ]
    chars = sum(map(len, texts)) / max(len(texts), 1)
    print(f"{len(texts)} reports, mean {chars:.0f} characters of labelled text, from {root}")

    label_reports(texts[:200])  # warm caches and imports
    ours = _rate(lambda t: label_reports(t, workers=1), texts)
    naive = _rate(_naive_label, texts[: max(len(texts) // 4, 1)])
    pooled = _rate(lambda t: label_reports(t, workers=args.workers), texts)
    print(f"throughput 1 core: {ours:,.0f} reports/s   naive per-phrase: {naive:,.0f} reports/s   "
          f"ratio {ours / naive:.1f}x")  # fmt: skip
    print(f"throughput pool (workers={args.workers or 'all'}): {pooled:,.0f} reports/s")

    rules = label_reports(texts)
    rules.insert(0, "study_id", truth.study_id.to_numpy())
    result = agreement(rules, shipped)
    table = agreement_table(result).set_index("label").loc[schema.CHEXPERT_ORDER]
    print(table.to_string(float_format=lambda v: f"{v:.4f}"))
    print(f"studies compared {result['n_studies']} (only rules {result['only_predicted']}, "
          f"only shipped {result['only_reference']})")  # fmt: skip
    print(f"macro-F1 over the 13 pathology labels: {result['macro_f1_pathology']:.4f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
