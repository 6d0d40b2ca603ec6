"""Findings / impression extraction from MIMIC-CXR free-text reports.

The rules follow the MIT-LCP section extractor that produced the released label files, with its
hand-written special cases replaced by general rules:

1. Bytes are decoded as UTF-8; undecodable bytes become U+FFFD and are counted (`decode_errors`). Text
   with NUL bytes is `binary`; text with no visible characters is `empty`. CRLF becomes LF.
2. A header is a line start, up to two spaces, a run of capitals / digits / spaces / ``()/,&_-`` (``_``
   admits de-identified headers such as ``AP CHEST, ___:``), a colon and whitespace. The banner
   (``FINAL REPORT``) has no colon, so text before the first header is the preamble.
3. Header names are lower-cased, stripped of punctuation and mapped: an exact map of variants and typos
   (`SECTION_ALIASES`); else a name containing impression/conclusion → impression, finding → findings,
   history → history, comparison → comparison, addendum → addendum; else view descriptors (``PA AND
   LATERAL VIEWS OF THE CHEST``, ``PORTABLE CHEST`` …) → findings.
4. Organ sub-headers (``LUNGS:``, ``HEART:`` …) inside a findings or impression section continue it;
   their own text (``LUNGS: Clear.``) stays in the section.
5. Empty sections are dropped; the *last* findings and the *last* impression section win.
6. With neither, ``last_paragraph`` is the last section without its first paragraph (for a report with
   no header that drops the banner); if nothing is left, the whole last section.
7. Returned texts are whitespace-normalised (``" ".join(text.split())``); absent sections are ``None``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SECTION_ALIASES: dict[str, str] = {
    # findings
    "finding": "findings",
    "findings": "findings",
    "findngs": "findings",
    "findigns": "findings",
    "fidings": "findings",
    "finidngs": "findings",
    "findins": "findings",
    "findinds": "findings",
    "fndings": "findings",
    "report": "findings",
    "description": "findings",
    # impression
    "impression": "impression",
    "impressions": "impression",
    "impresson": "impression",
    "imppression": "impression",
    "impressiom": "impression",
    "impresion": "impression",
    "imprssion": "impression",
    "impession": "impression",
    "impression and recommendation": "impression",
    "conclusion": "impression",
    "conclusions": "impression",
    "summary": "impression",
    "opinion": "impression",
    "findings and impression": "impression",
    "findings impression": "impression",
    "impression and findings": "impression",
    # indication / history
    "indication": "indication",
    "indications": "indication",
    "indcation": "indication",
    "reason for exam": "indication",
    "reason for examination": "indication",
    "reason for study": "indication",
    "clinical indication": "indication",
    "history": "history",
    "clinical history": "history",
    "patient history": "history",
    "hx": "history",
    "clinical information": "history",
    "clinical info": "history",
    # comparison
    "comparison": "comparison",
    "comparisons": "comparison",
    "comparision": "comparison",
    "comparsion": "comparison",
    "compared": "comparison",
    "prior": "comparison",
    "prior studies": "comparison",
    "prior study": "comparison",
    # administrative
    "technique": "technique",
    "techniques": "technique",
    "examination": "examination",
    "exam": "examination",
    "procedure": "examination",
    "study": "examination",
    "type of examination": "examination",
    "wet read": "wet read",
    "notification": "notification",
    "notifications": "notification",
    "recommendation": "recommendation",
    "recommendations": "recommendation",
    "recommendation s": "recommendation",
    "addendum": "addendum",
    "final addendum": "addendum",
    "reference exam": "comparison",
}
_KEYWORDS: tuple[tuple[str, str], ...] = (
    ("impression", "impression"),
    ("conclusion", "impression"),
    ("finding", "findings"),
    ("history", "history"),
    ("comparison", "comparison"),
    ("addendum", "addendum"),
    ("indication", "indication"),
)
_VIEW_WORDS = re.compile(
    r"\b(chest|portable|views?|radiographs?|frontal|lateral|pa|ap|supine|upright|semi-upright|erect|cxr)\b"
)
ORGAN_SUBHEADERS = frozenset(
    {
        "lungs", "lung", "lungs and airways", "airways", "heart", "cardiac", "cardiovascular",
        "heart and mediastinum", "mediastinum", "mediastinum and hila", "cardiomediastinal",
        "cardiomediastinal silhouette", "hila", "hilar", "pleura", "pleural", "pleural spaces", "bones",
        "bony structures", "osseous structures", "osseous", "musculoskeletal", "skeleton", "soft tissues",
        "chest wall", "lines and tubes", "tubes and lines", "lines tubes", "tubes lines", "lines", "tubes",
        "catheters", "support devices", "devices", "upper abdomen", "abdomen", "aorta", "vasculature",
        "pulmonary vasculature", "diaphragm",
    }
)  # fmt: skip

_HEADER = re.compile(r"(?m)^ {0,2}([A-Z][A-Z0-9 ()/,&_\-]*?)[ \t]*:(?=\s|$)")
_PARAGRAPH = re.compile(r"\n[ \t]*\n")
_NAME_CLEAN = re.compile(r"[^a-z ]+")


def normalize_section_name(raw: str) -> tuple[str, str]:
    """Map a raw header to (canonical name, how it was mapped)."""
    name = " ".join(_NAME_CLEAN.sub(" ", raw.lower()).split())
    if name in SECTION_ALIASES:
        return SECTION_ALIASES[name], "alias"
    if name in ORGAN_SUBHEADERS:
        return "organ", "organ"
    for word, canonical in _KEYWORDS:
        if word in name:
            return canonical, "keyword"
    if _VIEW_WORDS.search(name):
        return "findings", "view"
    return name, "other"


@dataclass(frozen=True, slots=True)
class Section:
    name: str
    header: str
    how: str
    text: str


def split_sections(text: str) -> list[Section]:
    """Split report text into sections; the preamble is a section named `preamble`."""
    sections: list[Section] = []
    matches = list(_HEADER.finditer(text))
    start = matches[0].start() if matches else len(text)
    sections.append(Section("preamble", "", "preamble", text[:start]))
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        header = match.group(1).strip()
        name, how = normalize_section_name(header)
        body = text[match.end() : end]
        if name == "organ" and sections[-1].name in ("findings", "impression"):
            prev = sections[-1]
            sections[-1] = Section(prev.name, prev.header, prev.how, f"{prev.text}\n{header}: {body}")
            continue
        sections.append(Section(name, header, how, body))
    return sections


def _norm(text: str) -> str | None:
    out = " ".join(text.split())
    return out or None


def _last_paragraph(section: Section) -> str | None:
    paragraphs = [p for p in _PARAGRAPH.split(section.text) if p.strip()]
    if len(paragraphs) > 1:
        return _norm(" ".join(paragraphs[1:]))
    if section.name == "preamble":
        return None
    return _norm(section.text)


@dataclass(frozen=True, slots=True)
class ReportSections:
    findings: str | None
    impression: str | None
    last_paragraph: str | None
    comparison: str | None
    indication: str | None
    findings_header: str | None
    findings_how: str | None
    impression_header: str | None
    impression_how: str | None
    n_sections: int


def extract_sections(text: str) -> ReportSections:
    """Extract the sections of one decoded report (rules in the module docstring)."""
    sections = split_sections(text.replace("\r\n", "\n").replace("\r", "\n"))
    last: dict[str, Section] = {}
    for section in sections:
        if section.name != "preamble" and _norm(section.text) is not None:
            last[section.name] = section
    findings, impression = last.get("findings"), last.get("impression")
    fallback = None
    if findings is None and impression is None:
        nonempty = [s for s in sections if _norm(s.text) is not None]
        fallback = _last_paragraph(nonempty[-1]) if nonempty else None
    indication = last.get("indication") or last.get("history")
    return ReportSections(
        findings=_norm(findings.text) if findings else None,
        impression=_norm(impression.text) if impression else None,
        last_paragraph=fallback,
        comparison=_norm(last["comparison"].text) if "comparison" in last else None,
        indication=_norm(indication.text) if indication else None,
        findings_header=findings.header if findings else None,
        findings_how=findings.how if findings else None,
        impression_header=impression.header if impression else None,
        impression_how=impression.how if impression else None,
        n_sections=len(sections) - 1,
    )


def decode_report(data: bytes) -> tuple[str, str, int]:
    """Decode report bytes → (text, status, number of undecodable bytes).

    Status is `ok`, `decode_errors` (some bytes were not UTF-8), `binary` (NUL bytes) or `empty`.
    """
    if b"\x00" in data:
        return "", "binary", 0
    try:
        text, errors = data.decode("utf-8"), 0
    except UnicodeDecodeError:
        text = data.decode("utf-8", errors="replace")
        errors = text.count("\ufffd")
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text.strip():
        return text, "empty", errors
    return text, ("decode_errors" if errors else "ok"), errors
