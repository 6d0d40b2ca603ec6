"""Write the README's generated paragraphs (never by hand): the results block from `metrics/compare.json`
and the abstention block from each method's first-seed evaluation. `--check` fails when the README differs
from what the committed metrics say (a test runs it)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pipeline.report import interval, metric_label

START, END = "<!-- results:start (scripts/readme_results.py) -->", "<!-- results:end -->"
ABSTAIN_START = "<!-- abstention:start (scripts/readme_results.py) -->"
ABSTAIN_END = "<!-- abstention:end -->"


def paragraph(comparison: dict) -> str:
    names, seeds = comparison["display_names"], comparison["seeds"]
    level = round(100 * comparison["bootstrap"]["level"])
    metric = comparison["ranking"]["metric"]
    order = comparison.get("method_order") or list(comparison["methods"])
    per_method = "; ".join(
        f"{names[m]} {interval(comparison['methods'][m]['metrics'][metric])}" for m in order
    )
    spread = "mean ± sd over seeds, " if len(seeds) > 1 else ""
    runs = f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''}: {', '.join(map(str, seeds))}"
    setting = f"{runs}; {comparison['n_studies']} test studies; {spread}{level}% bootstrap CI"
    lines = [
        f"Test {metric_label(metric)} on the synthetic data ({setting}): {per_method}.",
        "",
        *(f"- {statement}" for statement in comparison["ranking"]["statements"]),
    ]
    return "\n".join(lines)


def load_abstention(metrics_dir: Path, comparison: dict) -> dict[str, dict]:
    """Each method's abstention block of its first seed's evaluation (what `retrieve` users get)."""
    seed = comparison["seeds"][0]
    found = {}
    for method in comparison.get("method_order") or list(comparison["methods"]):
        path = metrics_dir / "evaluate" / method / f"seed{seed}.json"
        block = json.loads(path.read_text(encoding="utf-8")).get("abstention")
        if block:
            found[method] = block
    return found


def _share(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.0f} %"


def _risk(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"


def abstention_paragraph(comparison: dict, abstention: dict[str, dict]) -> str:
    if not abstention:
        return "No evaluation carries an abstention result (run `dvc repro`)."
    names, first = comparison["display_names"], next(iter(abstention.values()))
    seed = comparison["seeds"][0]
    lines = [
        f"On the test split (synthetic data, seed {seed}, K = {first['k']}, target {first['target_risk']}, "
        f"δ {first['delta']}; one test set of {comparison['n_studies']} studies, so ±0.03 is noise):",
        "",
        "| method | confidence | image→text answered | risk | text→image answered | risk |",
        "|---|---|---|---|---|---|",
    ]
    for method, block in abstention.items():
        i2t, t2i = block["i2t"], block["t2i"]
        lines.append(
            f"| {names[method]} | {block['confidence']} | {_share(i2t['coverage'])} | {_risk(i2t['risk'])} "
            f"| {_share(t2i['coverage'])} | {_risk(t2i['risk'])} |"
        )
    lines += ["", "A dash: no threshold was certified, so that direction abstains on every query."]
    return "\n".join(lines)


def _replace(readme: str, start: str, end: str, body: str) -> str:
    head, _, rest = readme.partition(start)
    if not rest or end not in rest:
        raise SystemExit(f"README.md: no {start} … {end} block")
    _, _, tail = rest.partition(end)
    return f"{head}{start}\n{body}\n{end}{tail}"


def render(readme: str, comparison: dict, abstention: dict[str, dict] | None = None) -> str:
    readme = _replace(readme, START, END, paragraph(comparison))
    if abstention is None:
        return readme
    return _replace(readme, ABSTAIN_START, ABSTAIN_END, abstention_paragraph(comparison, abstention))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--readme", default="README.md", type=Path)
    parser.add_argument("--comparison", default="metrics/compare.json", type=Path)
    parser.add_argument("--check", action="store_true", help="exit 1 if the README's block is out of date")
    args = parser.parse_args()
    readme = args.readme.read_text(encoding="utf-8")
    comparison = json.loads(args.comparison.read_text(encoding="utf-8"))
    abstention = load_abstention(args.comparison.parent, comparison)
    updated = render(readme, comparison, abstention)
    if args.check:
        if updated != readme:
            sys.exit(
                f"{args.readme}: results block differs from {args.comparison}; run scripts/readme_results.py"
            )
        return
    args.readme.write_text(updated, encoding="utf-8")


if __name__ == "__main__":
    main()
