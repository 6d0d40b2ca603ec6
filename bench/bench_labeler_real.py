"""Rule labeler on real reports: OpenI with NegBio's gold, beside the synthetic agreement.

    .venv/bin/python bench/bench_labeler_real.py                       # OpenI + a fresh synthetic release
    .venv/bin/python bench/bench_labeler_real.py --synthetic data/synthetic --json /tmp/real.json

Scoring follows `../shared/data/openi/README.md`: the text is FINDINGS + IMPRESSION, 9 gold findings map to
CheXpert labels (Mass or Nodule → Lung Lesion, normal → No Finding), a label counts as positive when it is
1, and uncertain (-1) labels are scored both ways. A fixed 30% of the reports (by a hash of the uid) is a
hold-out that rule development did not look at; it is reported separately. The synthetic agreement is the
macro-F1 over the 13 pathology labels against the shipped chexpert file (as `metrics/labels.json`), which
is circular: our generator wrote those reports.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.mimic.labeler import classify, label_reports  # noqa: E402
from pipeline.mimic.labeler.classify import NEGATIVE, POSITIVE  # noqa: E402

GOLD_MAP: dict[str, tuple[str, ...]] = {
    "Atelectasis": ("Atelectasis",),
    "Cardiomegaly": ("Cardiomegaly",),
    "Pleural Effusion": ("Effusion",),
    "Pneumonia": ("Pneumonia",),
    "Pneumothorax": ("Pneumothorax",),
    "Consolidation": ("Consolidation",),
    "Edema": ("Edema",),
    "Lung Lesion": ("Mass", "Nodule"),
    "No Finding": ("normal",),
}
CONVENTIONS = ("uncertain_negative", "uncertain_positive")


def load_openi(folder: Path) -> tuple[list[str], list[str], pd.DataFrame]:
    """(uids, texts, gold 0/1 per CheXpert label) in report order."""
    reports = pd.read_csv(folder / "reports-dev.csv", dtype=str, keep_default_na=False)
    gold = pd.read_csv(folder / "gold-dev.csv").set_index("filename").loc[reports.uid]
    texts = [f"{f} {i}".strip() for f, i in zip(reports.findings, reports.impression, strict=True)]
    truth = pd.DataFrame({c: gold[list(g)].max(axis=1).to_numpy() == 1 for c, g in GOLD_MAP.items()})
    return reports.uid.tolist(), texts, truth


def holdout_mask(uids: list[str], tenths: int = 3) -> np.ndarray:
    """A fixed hold-out: the reports whose sha256(uid) modulo 10 is below `tenths` (about 30%)."""
    return np.array([int(hashlib.sha256(u.encode()).hexdigest(), 16) % 10 < tenths for u in uids])


def score(labels: pd.DataFrame, truth: pd.DataFrame, mask: np.ndarray, convention: str) -> dict:
    """Per-label precision/recall/F1 and their macro-F1 on the rows in `mask`."""
    out: dict[str, dict[str, float | int]] = {}
    for name in GOLD_MAP:
        y = truth[name].to_numpy()[mask]
        pred = labels[name].to_numpy()[mask]
        positive = (pred == POSITIVE) | ((pred == -1.0) if convention == "uncertain_positive" else False)
        tp = int((y & positive).sum())
        out[name] = {
            "precision": tp / max(int(positive.sum()), 1),
            "recall": tp / max(int(y.sum()), 1),
            "f1": 2 * tp / max(int(y.sum()) + int(positive.sum()), 1),
            "support": int(y.sum()),
        }
    return {"macro_f1": float(np.mean([v["f1"] for v in out.values()])), "labels": out}


def error_patterns(texts: list[str], labels: pd.DataFrame, truth: pd.DataFrame, top: int = 4) -> dict:
    """Most frequent causes of false positives / negatives per label (uncertain counted as negative).

    A false positive is named by the mention text that was labelled positive; a false negative by the
    label its mentions got ("negated: no pneumothorax", "uncertain: atelectasis") or "not mentioned".
    """
    found: dict[str, dict[str, Counter]] = {n: {"fp": Counter(), "fn": Counter()} for n in GOLD_MAP}
    for i, text in enumerate(texts):
        mentions = None
        for name in GOLD_MAP:
            if name == "No Finding":
                continue
            predicted, gold = labels[name].iat[i] == POSITIVE, bool(truth[name].iat[i])
            if predicted == gold:
                continue
            mentions = classify(text) if mentions is None else mentions
            own = [m for m in mentions if m.observation == name]
            if predicted:
                found[name]["fp"].update(m.text for m in own if m.label == POSITIVE)
            elif not own:
                found[name]["fn"]["not mentioned"] += 1
            else:
                kind = {NEGATIVE: "negated"}.get(own[0].label, "uncertain")
                found[name]["fn"][f"{kind}: {own[0].text}"] += 1
    return {n: {k: c.most_common(top) for k, c in v.items()} for n, v in found.items() if n != "No Finding"}


def synthetic_agreement(path: Path | None, n_patients: int) -> tuple[float, Path]:
    """Macro-F1 (13 pathology labels) of the rules against the shipped chexpert file of a synthetic tree."""
    sys.path.insert(0, str(ROOT / "bench"))
    import bench_labeler  # the same texts the synthetic benchmark labels

    from pipeline.mimic import schema
    from pipeline.mimic.labeler import agreement, choose_label_text

    root = bench_labeler._synthetic(path, n_patients, 42)
    truth = pd.read_parquet(
        root / "truth.parquet", columns=["subject_id", "study_id", "findings", "impression"]
    )
    shipped = pd.read_csv(root / "mimic-cxr-jpg" / "2.1.0" / schema.CHEXPERT_FILE)
    texts = [
        choose_label_text(f, i, None) or bench_labeler._last_paragraph(root, s, st)
        for s, st, f, i in zip(
            truth.subject_id, truth.study_id, truth.findings, truth.impression, strict=True
        )
    ]
    rules = label_reports(texts)
    rules.insert(0, "study_id", truth.study_id.to_numpy())
    return float(agreement(rules, shipped)["macro_f1_pathology"]), root


def _table(results: dict[str, dict]) -> str:
    header = f"{'label':20s}" + "".join(f"{k:>27s}" for k in results)
    lines = [header, f"{'':20s}" + "      P      R     F1   n  " * len(results)]
    for name in GOLD_MAP:
        row = f"{name:20s}"
        for res in results.values():
            v = res["labels"][name]
            row += f" {v['precision']:6.3f} {v['recall']:6.3f} {v['f1']:6.3f} {v['support']:4d}"
        lines.append(row)
    lines.append(f"{'macro-F1':20s}" + "".join(f"{r['macro_f1']:27.4f}" for r in results.values()))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--openi", type=Path, default=ROOT.parent / "shared" / "data" / "openi")
    parser.add_argument("--holdout-tenths", type=int, default=3, help="hold-out size in tenths")
    parser.add_argument("--synthetic", type=Path, help="existing synthetic tree (default: generate one)")
    parser.add_argument("--n-patients", type=int, default=600, help="patients when generating")
    parser.add_argument("--no-synthetic", action="store_true", help="skip the synthetic agreement")
    parser.add_argument("--json", type=Path, help="also write every number here")
    args = parser.parse_args()

    uids, texts, truth = load_openi(args.openi)
    hold = holdout_mask(uids, args.holdout_tenths)
    start = time.perf_counter()
    labels = label_reports(texts, workers=1)
    rate = len(texts) / (time.perf_counter() - start)
    parts = {"development": ~hold, "hold-out": hold, "all": np.ones(len(uids), dtype=bool)}
    results = {
        f"{part}/{conv}": score(labels, truth, mask, conv)
        for part, mask in parts.items()
        for conv in CONVENTIONS
    }
    print(f"OpenI: {len(texts)} reports ({int((~hold).sum())} development, {int(hold.sum())} hold-out), "
          f"labelled at {rate:,.0f} reports/s on one core")  # fmt: skip
    for conv in CONVENTIONS:
        print(f"\n{conv.replace('_', ' = ')}:")
        print(_table({part: results[f"{part}/{conv}"] for part in parts}))
    patterns = error_patterns(texts, labels, truth)
    print("\ntop error patterns (all reports, uncertain = negative):")
    for name, kinds in patterns.items():
        for kind, items in kinds.items():
            if items:
                print(f"  {name:17s} {kind}: " + "; ".join(f"{t!r} ×{c}" for t, c in items))
    summary = {k: round(v["macro_f1"], 4) for k, v in results.items()}
    if not args.no_synthetic:
        synthetic, root = synthetic_agreement(args.synthetic, args.n_patients)
        summary["synthetic_agreement_macro_f1_pathology"] = round(synthetic, 4)
        print(f"\nmacro-F1 real (OpenI, all, uncertain = negative) {summary['all/uncertain_negative']:.4f}   "
              f"synthetic agreement with the shipped labels {synthetic:.4f} ({root})")  # fmt: skip
    if args.json:
        args.json.write_text(
            json.dumps({"summary": summary, "results": results, "errors": patterns}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
