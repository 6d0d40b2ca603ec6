"""Write the README's results paragraph from `metrics/compare.json` (never by hand): `--check` fails when
the README's block differs from what the committed comparison says (a test runs it)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pipeline.report import interval, metric_label

START, END = "<!-- results:start (scripts/readme_results.py) -->", "<!-- results:end -->"


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


def render(readme: str, comparison: dict) -> str:
    head, _, rest = readme.partition(START)
    _, _, tail = rest.partition(END)
    if not rest or END not in rest:
        raise SystemExit(f"README.md: no {START} … {END} block")
    return f"{head}{START}\n{paragraph(comparison)}\n{END}{tail}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--readme", default="README.md", type=Path)
    parser.add_argument("--comparison", default="metrics/compare.json", type=Path)
    parser.add_argument("--check", action="store_true", help="exit 1 if the README's block is out of date")
    args = parser.parse_args()
    readme = args.readme.read_text(encoding="utf-8")
    updated = render(readme, json.loads(args.comparison.read_text(encoding="utf-8")))
    if args.check:
        if updated != readme:
            sys.exit(
                f"{args.readme}: results block differs from {args.comparison}; run scripts/readme_results.py"
            )
        return
    args.readme.write_text(updated, encoding="utf-8")


if __name__ == "__main__":
    main()
