"""Agreement of two label tables (rules vs a shipped file): per-label confusion over {1, 0, -1, blank},
accuracy and macro-F1, plus the macro-F1 averaged over the 13 pathology labels.

Blank is a class of its own: "not mentioned" disagreeing with "negative" is a real labeller difference.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from pipeline.mimic import schema

CATEGORIES = ("1", "0", "-1", "blank")
_CODE = {1.0: 0, 0.0: 1, -1.0: 2}


def _codes(values: pd.Series, name: str) -> np.ndarray:
    array = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isnan(array) & ~np.isin(array, list(_CODE))
    if bad.any():
        raise ValueError(
            f"{name}: label values must be 1, 0, -1 or blank; found {sorted(set(array[bad]))[:5]}"
        )
    codes = np.full(array.shape, 3, dtype=np.int64)
    for value, code in _CODE.items():
        codes[array == value] = code
    return codes


def _round(x: float) -> float | None:
    return None if math.isnan(x) else round(float(x), 6)


def label_agreement(reference: pd.Series, predicted: pd.Series, name: str = "label") -> dict:
    """Confusion (rows: reference, columns: predicted), accuracy, per-class F1 and macro-F1 for one label.

    Macro-F1 averages the classes present in either table, so a label nobody uses does not count as 0.
    """
    ref, pred = _codes(reference, f"reference {name}"), _codes(predicted, f"predicted {name}")
    confusion = np.zeros((4, 4), dtype=np.int64)
    np.add.at(confusion, (ref, pred), 1)
    tp = np.diag(confusion).astype(np.float64)
    support, predicted_n = confusion.sum(1), confusion.sum(0)
    present = (support + predicted_n) > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(present, 2 * tp / (support + predicted_n), np.nan)
    n = int(confusion.sum())
    return {
        "n": n,
        "accuracy": _round(tp.sum() / n) if n else None,
        "macro_f1": _round(float(np.nanmean(f1))) if present.any() else None,
        "f1": {c: _round(f1[i]) for i, c in enumerate(CATEGORIES)},
        "confusion": {
            r: {c: int(confusion[i, j]) for j, c in enumerate(CATEGORIES)} for i, r in enumerate(CATEGORIES)
        },
    }


def agreement(
    predicted: pd.DataFrame,
    reference: pd.DataFrame,
    key: str = "study_id",
    labels: list[str] | None = None,
) -> dict:
    """Per-label agreement of `predicted` (e.g. rules) with `reference` (e.g. the shipped chexpert file).

    Rows are matched on `key` when both tables have it (else on the index); studies present in only one
    table are counted, not compared. The result is JSON-ready (DVC metrics).
    """
    labels = list(schema.LABEL_COLUMNS if labels is None else labels)
    for table, what in ((predicted, "predicted"), (reference, "reference")):
        missing = [c for c in labels if c not in table.columns]
        if missing:
            raise ValueError(f"{what} labels lack columns {missing}")
    if key in predicted.columns and key in reference.columns:
        for table, what in ((predicted, "predicted"), (reference, "reference")):
            if table[key].duplicated().any():
                raise ValueError(f"{what} labels have duplicate {key} values")
        left, right = predicted.set_index(key), reference.set_index(key)
    else:
        left, right = predicted, reference
    common = left.index.intersection(right.index, sort=False).sort_values()
    per_label = {
        name: label_agreement(right.loc[common, name], left.loc[common, name], name) for name in labels
    }
    pathology = [per_label[n]["macro_f1"] for n in schema.PATHOLOGY_LABELS if n in per_label]
    pathology = [v for v in pathology if v is not None]
    accuracies = [v["accuracy"] for v in per_label.values() if v["accuracy"] is not None]
    return {
        "n_studies": len(common),
        "only_predicted": len(left.index.difference(right.index)),
        "only_reference": len(right.index.difference(left.index)),
        "macro_f1_pathology": _round(float(np.mean(pathology))) if pathology else None,
        "accuracy_mean": _round(float(np.mean(accuracies))) if accuracies else None,
        "labels": per_label,
    }


def agreement_table(result: dict) -> pd.DataFrame:
    """One row per label (accuracy, macro-F1, F1 per class) for reading or CSV."""
    rows = []
    for name, entry in result["labels"].items():
        row = {"label": name, "n": entry["n"], "accuracy": entry["accuracy"], "macro_f1": entry["macro_f1"]}
        row.update({f"f1_{c}": entry["f1"][c] for c in CATEGORIES})
        rows.append(row)
    return pd.DataFrame(rows)
