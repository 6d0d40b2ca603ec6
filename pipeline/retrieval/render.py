"""`medprobclip retrieve` output: JSON for programs (the issue's shape), a table for people."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Sequence

from pipeline.retrieval.retriever import QueryResult, Retriever

TEXT_WIDTH = 96


def render_json(results: Sequence[QueryResult]) -> str:
    """A list with one object per query: query, abstain, uncertainty, hits (study_id, score,
    uncertainty, text)."""
    return json.dumps([r.to_dict() for r in results], indent=2, ensure_ascii=False)


def _number(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def render_table(results: Sequence[QueryResult], retriever: Retriever, k: int) -> str:
    about = retriever.describe()
    lines = [
        f"{about['method']} (seed {about['seed']}), score {about['score']}; gallery of "
        f"{about['gallery']['reports']} reports / {about['gallery']['images']} studies "
        f"({about['gallery']['source']})",
        f"abstention: target risk {retriever.target_risk} at K={k}, δ {retriever.delta}, confidence "
        f"{about['confidence']} — {about['confidence_text']}; answer when uncertainty <= "
        f"{_number(retriever.uncertainty_threshold(k, 'i2t'))} (image → text), "
        f"<= {_number(retriever.uncertainty_threshold(k, 't2i'))} (text → image; – = always abstain).",
        "Research use only, not for diagnosis.",
    ]
    for result in results:
        verdict = (
            "ABSTAIN: not confident enough for the target risk"
            if result.abstain
            else "answer: within the calibrated risk"
        )
        lines += ["", f"query: {result.query}", f"  {verdict} (uncertainty {_number(result.uncertainty)})"]
        lines.append(f"  {'#':>2}  {'study_id':>10}  {'score':>10}  {'σ² sum':>8}  text")
        for rank, hit in enumerate(result.hits, 1):
            text = textwrap.shorten(" ".join(hit.text.split()), TEXT_WIDTH, placeholder=" …")
            sigma = _number(hit.uncertainty, 2)
            lines.append(f"  {rank:>2}  {hit.study_id:>10}  {hit.score:>10.4f}  {sigma:>8}  {text}")
    return "\n".join(lines)
