"""The paper-style report: every method's evaluation side by side in `reports/summary.md`.

Pure formatting of the comparison (`metrics/compare.json`: means, sds, CIs, significance, the ranking
sentences) and of the evaluation JSONs averaged over seeds; numbers are never recomputed here and no
ranking is written by hand, so the report always says what `dvc metrics show` says.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline.comparison import metric_label
from pipeline.metrics.zeroshot import ZERO_SHOT_CLASSES
from pipeline.mimic.schema import LABEL_COLUMNS

# MedProbCLIP paper, Table 1 (real MIMIC-CXR test split, ~1,779 studies, paper-size models).
PAPER_RETRIEVAL = {
    "CLIP": ((14.28, 33.73, 44.29, 80.94), (14.22, 34.23, 43.73, 80.89), 346.32),
    "PCME++": ((12.48, 31.53, 40.58, 77.68), (11.80, 32.32, 42.55, 78.58), 327.54),
    "CXR-CLIP": ((17.14, 41.65, 55.03, 89.94), (16.86, 41.26, 54.47, 90.39), 406.75),
    "MedProbCLIP": ((21.02, 46.88, 58.91, 92.41), (19.96, 47.44, 59.42, 92.58), 438.62),
}
PAPER_ZERO_SHOT = {"CLIP": 0.6519, "PCME++": 0.5456, "CXR-CLIP": 0.6619, "MedProbCLIP": 0.7101}
FIGURES = (
    ("risk_coverage", "risk–coverage"),
    ("reliability", "reliability"),
    ("robustness", "robustness"),
    ("probe_roc", "probe ROC"),
    ("tsne", "t-SNE"),
)


def fmt(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return str(value)
    return f"{value:.{digits}f}"


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def get(tree: Mapping[str, Any], dotted: str) -> Any:
    node: Any = tree
    for key in dotted.split("."):
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def metric_table(
    evaluations: Mapping[str, Mapping[str, Any]],
    columns: Sequence[tuple[str, str]],
    digits: int = 2,
    extra_rows: Sequence[Sequence[Any]] = (),
) -> str:
    """One row per method; `columns` = (header, dotted key in the evaluation JSON)."""
    rows = [[m] + [fmt(get(ev, key), digits) for _, key in columns] for m, ev in evaluations.items()]
    return table(["method"] + [h for h, _ in columns], [*rows, *extra_rows])


def retrieval_section(evaluations: Mapping[str, Mapping[str, Any]], ks: Sequence[int]) -> str:
    columns = [(f"i2t R@{k}", f"retrieval.i2t_r{k}") for k in ks]
    columns += [(f"t2i R@{k}", f"retrieval.t2i_r{k}") for k in ks]
    columns += [("RSUM (8)", "retrieval.rsum"), ("RSUM (6)", "retrieval.rsum6")]
    first = next(iter(evaluations.values()))
    random_row = ["*random*"] + [fmt(get(first, f"retrieval.random_r{k}")) for k in ks] * 2
    random_row += [fmt(get(first, "retrieval.random_rsum")), fmt(get(first, "retrieval.random_rsum6"))]
    paper = [
        [f"*paper: {name}*", *map(fmt, i2t), *map(fmt, t2i), fmt(rsum), "–"]
        for name, (i2t, t2i, rsum) in PAPER_RETRIEVAL.items()
    ]
    ours = metric_table(evaluations, columns, extra_rows=[random_row])
    reference = table(["method"] + [h for h, _ in columns], paper) if tuple(ks) == (1, 5, 10, 100) else ""
    text = "## Retrieval (R@K, %)\n\n" + ours + "\n"
    if reference:
        text += "\nReference, real MIMIC-CXR test split (MedProbCLIP paper, Table 1; not comparable):\n\n"
        text += reference + "\n"
    return text


def zero_shot_section(evaluations: Mapping[str, Mapping[str, Any]]) -> str:
    text = "## Zero-shot classification\n\n"
    text += "(a) MedProbCLIP protocol — accuracy of the arg-max prompt on the studies positive for each "
    text += "class:\n\n"
    columns = [(c, f"zero_shot.argmax.per_class.{c}.accuracy") for c in ZERO_SHOT_CLASSES]
    text += metric_table(evaluations, [("mean", "zero_shot.argmax.mean_accuracy"), *columns], 3) + "\n\n"
    text += "Paper, real data (mean accuracy): " + ", ".join(
        f"{k} {v:.4f}" for k, v in PAPER_ZERO_SHOT.items()
    )
    text += "\n\n(b) CLIP-XRad protocol — positive vs negative prompt; AUROC, and accuracy at the validation "
    text += "Youden threshold:\n\n"
    columns = [
        ("macro AUROC", "zero_shot.binary.macro_auroc"),
        ("macro acc.", "zero_shot.binary.macro_accuracy"),
    ]
    columns += [(c, f"zero_shot.binary.per_label.{c}.auroc") for c in ZERO_SHOT_CLASSES]
    return text + metric_table(evaluations, columns, 3) + "\n"


def selective_section(evaluations: Mapping[str, Mapping[str, Any]], ks: Sequence[int]) -> str:
    text = "## Selective retrieval (AURC / excess AURC; lower is better)\n\n"
    for direction in ("i2t", "t2i"):
        columns = [("confidence", "selective.confidence")]
        for k in ks:
            columns += [(f"AURC R@{k}", f"selective.{direction}_aurc_r{k}")]
            columns += [(f"E-AURC R@{k}", f"selective.{direction}_eaurc_r{k}")]
        text += f"{'Image→text' if direction == 'i2t' else 'Text→image'}:\n\n"
        text += metric_table(evaluations, columns, 3) + "\n\n"
    return text


def abstention_section(evaluations: Mapping[str, Mapping[str, Any]]) -> str:
    """The gallery stage's calibrated abstention on the test split: what a `medprobclip retrieve` user
    gets. Empty when no evaluation carries it (evaluated without a retrieval bundle)."""
    with_block = {m: ev for m, ev in evaluations.items() if ev.get("abstention")}
    if not with_block:
        return ""
    first = next(iter(with_block.values()))["abstention"]
    text = (
        "## Calibrated abstention (`medprobclip retrieve`)\n\n"
        f"Target: among accepted queries, the study's own report (image) is missing from the top "
        f"{first['k']} of the {first['gallery_reports']}-report gallery (train + validate) at most "
        f"{fmt(first['target_risk'])} of the time, with probability ≥ {fmt(1 - first['delta'])} "
        "(Learn-then-Test, thresholds calibrated on the validation split). Test split: the realised risk "
        "and coverage (share of queries answered); 'always' = risk with no abstention; a dash = the "
        "rule abstains on every query.\n\n"
    )
    columns = [("confidence", "abstention.confidence")]
    for d, name in (("i2t", "image→text"), ("t2i", "text→image")):
        columns += [
            (f"{name} risk", f"abstention.{d}.risk"),
            (f"{name} coverage", f"abstention.{d}.coverage"),
            (f"{name} always", f"abstention.{d}.risk_without_abstention"),
        ]
    return text + metric_table(evaluations, columns, 3) + "\n"  # a method without a bundle: dashes


def calibration_section(evaluations: Mapping[str, Mapping[str, Any]], bins: int | None) -> str:
    columns = []
    for d in ("i2t", "t2i"):
        columns += [
            (f"{d} ECE", f"calibration.{d}_ece"),
            (f"{d} mean conf.", f"calibration.{d}_mean_confidence"),
        ]
        columns += [(f"{d} top-1 acc.", f"calibration.{d}_top1_accuracy")]
    title = f"## Calibration of top-1 retrieval confidence (ECE, {bins or 15} bins)\n\n"
    return title + metric_table(evaluations, columns, 3) + "\n"


def robustness_section(evaluations: Mapping[str, Mapping[str, Any]], ks: Sequence[int]) -> str:
    keys = sorted({k for ev in evaluations.values() for k in (ev.get("robustness") or {})})
    corruptions = sorted({k.rsplit("_ratio_", 1)[0] for k in keys if not k.startswith("mean_")})
    k = 10 if 10 in ks else ks[0]
    columns = [(f"mean R@{k}", f"robustness.mean_ratio_r{k}")]
    columns += [(c.replace("_", " "), f"robustness.{c}_ratio_r{k}") for c in corruptions]
    text = f"## Robustness (image→text R@{k} with corrupted query images, relative to clean; "
    text += "mean over severities)\n\n"
    return text + metric_table(evaluations, columns, 3) + "\n"


def precision_section(evaluations: Mapping[str, Mapping[str, Any]], ks: Sequence[int]) -> str:
    columns = [(f"{d} P@{k}", f"precision.{d}_p_at_{k}") for d in ("i2t", "t2i") for k in ks]
    first = next(iter(evaluations.values()))
    random_row = ["*random*"] + [
        fmt(get(first, f"precision.{d}_random_p_at_{k}")) for d in ("i2t", "t2i") for k in ks
    ]
    text = "## Class-based Precision@K (%; relevant = shares a positive label with the query)\n\n"
    return text + metric_table(evaluations, columns, extra_rows=[random_row]) + "\n"


def probe_section(evaluations: Mapping[str, Mapping[str, Any]]) -> str:
    columns = [("macro AUROC", "probe.macro_auroc"), ("macro acc.", "probe.macro_accuracy")]
    columns += [(c, f"probe.per_label.{c}.auroc") for c in LABEL_COLUMNS]
    text = "## Linear probe on frozen image features (AUROC; accuracy at validation Youden thresholds)\n\n"
    return text + metric_table(evaluations, columns, 3) + "\n"


def training_section(training: Mapping[str, Mapping[str, Any]]) -> str:
    if not training:
        return ""
    columns = [("best epoch", "best_epoch"), ("epochs", "epochs"), ("val RSUM", "val.rsum")]
    columns += [
        ("val i2t R@10", "val.i2t_r10"),
        ("val t2i R@10", "val.t2i_r10"),
        ("final train loss", "final_train_loss"),
    ]
    return "## Training (validation split)\n\n" + metric_table(training, columns, 3) + "\n"


def interval(summary: Mapping[str, Any] | None, digits: int = 1) -> str:
    if not summary or summary.get("mean") is None:
        return "–"
    sd = f" ± {summary['sd']:.{digits}f}" if summary.get("sd") is not None else ""
    low, high = fmt(summary.get("low"), digits), fmt(summary.get("high"), digits)
    return f"{summary['mean']:.{digits}f}{sd} [{low}, {high}]"


def comparison_section(comparison: Mapping[str, Any], names: Mapping[str, str]) -> str:
    """Headline metrics with spread and intervals, every pairwise test, and the derived ranking."""
    boot, seeds = comparison["bootstrap"], comparison.get("seeds", [])
    level = round(100 * boot["level"])
    headline = comparison["headline"]
    spread = "mean ± sd over seeds" if len(seeds) > 1 else "one seed, so no seed spread"
    plural = "s" if len(seeds) != 1 else ""
    text = f"## Comparison ({len(seeds)} seed{plural}: {', '.join(map(str, seeds))})\n\n"
    text += (
        f"Each cell: {spread} [{level}% bootstrap CI]. The interval resamples the {comparison['n_studies']} "
        f"test studies ({boot['n_resamples']} paired resamples, seed {boot['seed']}, the same for every "
        "method) and, with several seeds, the seeds too (a two-level bootstrap), so it covers both the "
        "test-set and the training-seed variation.\n\n"
    )
    order = comparison.get("method_order") or list(comparison["methods"])
    rows = [
        [names.get(m, m), *(interval(comparison["methods"][m]["metrics"].get(metric)) for metric in headline)]
        for m in order
    ]
    text += table(["method", *(metric_label(m) for m in headline)], rows) + "\n\n"
    text += (
        f"Paired differences (row method − column method), {level}% CI, two-sided bootstrap p adjusted "
        f"for all {len(comparison['pairs'][headline[0]])} pairs by Holm–Bonferroni; **bold** = significant "
        f"at α = {boot['alpha']}:\n\n"
    )
    for metric in headline:
        rows = []
        for pair in comparison["pairs"][metric]:
            cell = (
                f"{pair['delta']:+.1f} [{fmt(pair['low'], 1)}, {fmt(pair['high'], 1)}], "
                f"p = {fmt(pair['p_holm'], 3)}"
            )
            rows.append(
                [
                    f"{names.get(pair['a'], pair['a'])} − {names.get(pair['b'], pair['b'])}",
                    f"**{cell}**" if pair["significant"] else cell,
                ]
            )
        text += f"{metric_label(metric)}:\n\n" + table(["pair", "Δ [CI], Holm p"], rows) + "\n\n"
    ranking = comparison.get("ranking", {})
    if ranking.get("statements"):
        text += f"**What the data support** ({metric_label(ranking['metric'])}):\n\n"
        text += "\n".join(f"- {line}" for line in ranking["statements"]) + "\n"
    return text


def ranking_paragraph(comparison: Mapping[str, Any]) -> str:
    """The README's results sentence: the same derived statements, joined."""
    return " ".join(comparison.get("ranking", {}).get("statements", []))


def figures_section(
    methods: Sequence[str], figures_dir: Path, relative_to: Path, seed: int | None = None
) -> str:
    rows = []
    for method in methods:
        cells = []
        for name, title in FIGURES:
            folder = figures_dir / method / (f"seed{seed}" if seed is not None else "")
            path = folder / f"{name}.png"
            if path.is_file():
                cells.append(f"[{title}]({Path(_relpath(path, relative_to)).as_posix()})")
        rows.append([method, " · ".join(cells) or "–"])
    return "## Figures\n\n" + table(["method", "figures"], rows) + "\n"


def _relpath(path: Path, start: Path) -> str:
    import os

    return os.path.relpath(path.resolve(), start.resolve())


def render(
    evaluations: Mapping[str, Mapping[str, Any]],
    training: Mapping[str, Mapping[str, Any]],
    synthetic: bool,
    figures_dir: Path,
    out_dir: Path,
    comparison: Mapping[str, Any] | None = None,
) -> str:
    """The whole report; `evaluations`/`training` are per method (averaged over seeds when there are
    several), `comparison` the compare stage's JSON."""
    if not evaluations:
        raise ValueError("no evaluations to report")
    first = next(iter(evaluations.values()))
    ks = sorted(int(k.removeprefix("i2t_r")) for k in first.get("retrieval", {}) if k.startswith("i2t_r"))
    precision_ks = sorted(
        int(k.rsplit("_", 1)[1])
        for k in first.get("precision", {})
        if k.startswith("i2t_p_at_") and k[-1].isdigit()
    )
    es = first.get("evaluation_set", {})
    source = (
        "**All numbers below come from the synthetic MIMIC-CXR-shaped dataset this pipeline generates, "
        "with tiny models. They show that the pipeline works; they say nothing about chest X-ray "
        "retrieval.** Point `data.mimic_root` / `data.reports_root` at the real release and select the "
        "`paper` profile for real numbers."
        if synthetic
        else "Data: the MIMIC-CXR-JPG release at the configured `data.mimic_root`."
    )
    evaluation_set = (
        f"Evaluation set: the `{es.get('split')}` split, {es.get('n_studies')} studies "
        f"({es.get('n_excluded')} excluded: no frontal image or no text); one query per study — image: "
        f"{es.get('query_image')}; text: {es.get('query_text')} "
        "(findings, falling back to impression, unless `evaluate.query_text: longest`)."
    )
    names = dict((comparison or {}).get("display_names") or {})
    seeds = list((comparison or {}).get("seeds") or [])
    averaged = f" Detail tables: mean over the {len(seeds)} seeds." if len(seeds) > 1 else ""
    parts: list[str] = [
        "# Retrieval report: " + ", ".join(names.get(m, m) for m in evaluations),
        source,
        evaluation_set + averaged,
        comparison_section(comparison, names) if comparison else "",
        training_section(training),
        retrieval_section(evaluations, ks),
        zero_shot_section(evaluations),
        selective_section(evaluations, ks),
        abstention_section(evaluations),
        calibration_section(evaluations, None),
        robustness_section(evaluations, ks),
        precision_section(evaluations, precision_ks),
        probe_section(evaluations),
        figures_section(list(evaluations), figures_dir, out_dir, seeds[0] if seeds else None),
    ]
    return "\n\n".join(p.strip() for p in parts if p) + "\n"
