"""Findings / impression extraction from MIMIC-CXR free-text reports.

The rules follow the MIT-LCP section extractor that produced the released label files, with its
hand-written special cases replaced by general rules:

1. Bytes are decoded as UTF-8; undecodable bytes become U+FFFD and are counted (`decode_errors`). Text
   with NUL bytes is `binary`; text with no visible characters is `empty`. CRLF becomes LF.
2. A header is a line start, up to two spaces, a run of capitals / digits / spaces / ``()/,&_-`` (``_``
   admits de-identified headers such as ``AP CHEST, ___:``; at most 80 characters), a colon and
   whitespace. A name in lower or mixed case (``findings:``, ``Impression:``) or one glued to its text
   (``FINDINGS:No effusion``) is a header only when it is a known section or organ name (rule 3's map),
   as a human reader would take it. The banner (``FINAL REPORT``) has no colon, so text before the
   first header is the preamble.
3. Header names are lower-cased, stripped of punctuation and mapped: an exact map of variants and typos
   (`SECTION_ALIASES`); else a name containing impression/conclusion → impression, finding → findings,
   history → history, comparison → comparison, addendum → addendum; else view descriptors (``PA AND
   LATERAL VIEWS OF THE CHEST``, ``PORTABLE CHEST`` …) → findings.
4. Organ sub-headers (``LUNGS:``, ``HEART:`` …) inside a findings or impression section continue it;
   their own text (``LUNGS: Clear.``) stays in the section. Organ sub-headers with no findings or
   impression section above them (``LUNGS: … CARDIOVASCULAR: … BONES: …``) open a findings section
   (`how` = ``organ``) that the following sub-headers continue.
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

# One line at a time, with every repetition bounded: a header never needs more than 80 characters, and
# an unbounded name or blank run before the colon made a capital letter + 300 KB of spaces quadratic.
_HEADER = re.compile(r" {0,2}([A-Za-z][A-Za-z0-9 ()/,&_\-]{0,79}?)[ \t]{0,8}:")
_LINE = re.compile(r"[^\n]*")
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


def _is_header(raw: str, after: str) -> bool:
    """A capitalised name followed by whitespace is a header (rule 2); a name in lower or mixed case, or
    one glued to its text (``FINDINGS:No effusion``), only when it is a known section or organ name."""
    if not any(c.islower() for c in raw) and (after == "" or after.isspace()):
        return True
    return normalize_section_name(raw)[1] in ("alias", "organ")


def _headers(text: str) -> list[tuple[int, int, str]]:
    """(start, end, raw name) of every header: one bounded match per line, so linear in the text."""
    found = []
    for line in _LINE.finditer(text):
        start = line.start()
        match = _HEADER.match(text, start, line.end())
        if match is None:
            continue
        raw = match.group(1).strip()
        if raw and _is_header(raw, text[match.end() : match.end() + 1]):
            found.append((start, match.end(), raw))
    return found


def split_sections(text: str) -> list[Section]:
    """Split report text into sections; the preamble is a section named `preamble`."""
    sections: list[Section] = []
    headers = _headers(text)
    start = headers[0][0] if headers else len(text)
    sections.append(Section("preamble", "", "preamble", text[:start]))
    for i, (_, body_start, header) in enumerate(headers):
        end = headers[i + 1][0] if i + 1 < len(headers) else len(text)
        name, how = normalize_section_name(header)
        body = text[body_start:end]
        if name == "organ":
            prev = sections[-1]
            if prev.name in ("findings", "impression"):
                sections[-1] = Section(prev.name, prev.header, prev.how, f"{prev.text}\n{header}: {body}")
            else:  # organ sub-headers with no FINDINGS header above them are the findings (rule 4)
                sections.append(Section("findings", header, "organ", f"{header}: {body}"))
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
