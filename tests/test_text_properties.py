"""Property-based tests: random and adversarial report text through the section extractor and the labeler.

Invariants: no exception; sections are whitespace-normalised pieces of the input; labels are 1, 0, -1 or
blank and No Finding is never 0 or -1; cleaning is idempotent and labelling cleaned text changes nothing;
the batch API agrees with the one-report API. Examples are derandomized, so CI is deterministic.
The time bounds are per character and generous: they catch quadratic behaviour (a capital letter followed
by 64 KB of spaces took 32 s before), not a slow machine.
"""

from __future__ import annotations

import math
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.mimic import schema
from pipeline.mimic.labeler import clean_text, label_reports, label_text
from pipeline.mimic.sections import extract_sections, split_sections

CI = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

TOKENS = (
    "FINDINGS:", "IMPRESSION:", "findings:", "Impression:", "LUNGS:", "HEART:", "BONES:", "FINAL REPORT",
    "INDICATION:", "PA AND LATERAL VIEWS OF THE CHEST:", "AP CHEST, ___:", "A", "Z", ":", " ", "  ", "\n",
    "\n\n", "\r\n", "\t", ",", ".", ";", "/", "w/", "1.", "___", "XXXX", "no ", "No ", "not ", "without ",
    "effusion", "pleural effusion", "pneumothorax", "cardiomegaly", "heart size", "normal", "stable ",
    "possible ", "or ", "cannot exclude ", "atelectasis", "edema", "opacity", "nodule", "with ",
    "differential diagnosis includes ", "\u00e9", "\ufffd", "(", ")", "-",
)  # fmt: skip
REPORT = st.one_of(
    st.text(max_size=400),
    st.lists(st.sampled_from(TOKENS), max_size=80).map("".join),
)
FIELDS = ("findings", "impression", "last_paragraph", "comparison", "indication")


def _pieces_of(out: str, text: str) -> bool:
    """Every word of `out` occurs in `text` (sub-headers come back as ``NAME:``, so colons are ignored)."""
    return all(word.rstrip(":") in text for word in out.split())


@CI
@given(REPORT)
def test_sections_are_normalised_pieces_of_the_input(text: str) -> None:
    s = extract_sections(text)
    for name in FIELDS:
        value = getattr(s, name)
        if value is not None:
            assert value and value == " ".join(value.split())
            assert _pieces_of(value, text.replace("\r", "\n"))
    assert s.n_sections == len(split_sections(text.replace("\r\n", "\n").replace("\r", "\n"))) - 1
    assert (s.findings is None) == (s.findings_header is None)
    assert s.last_paragraph is None or (s.findings is None and s.impression is None)


@CI
@given(REPORT)
def test_section_headers_with_text_are_found_whatever_the_case(text: str) -> None:
    body = " ".join(text.split()).replace(":", " ") or "clear"
    for header in ("FINDINGS:", "findings:", "Findings:", "FINDINGS: ", "FINDINGS:\n"):
        s = extract_sections(f"{header}{body}\nIMPRESSION: done.")
        assert s.findings == " ".join(body.split())
        assert s.impression == "done."


@CI
@given(REPORT)
def test_labels_are_valid_and_stable_under_cleaning(text: str) -> None:
    labels = label_text(text)
    assert len(labels) == len(schema.LABEL_COLUMNS)
    assert all(math.isnan(v) or v in (1.0, 0.0, -1.0) for v in labels)
    no_finding = labels[schema.LABEL_COLUMNS.index("No Finding")]
    assert math.isnan(no_finding) or no_finding == 1.0
    cleaned = clean_text(text)
    assert clean_text(cleaned) == cleaned
    again = label_text(cleaned)
    assert all(a == b or (math.isnan(a) and math.isnan(b)) for a, b in zip(labels, again, strict=True))


@settings(CI, max_examples=40)
@given(st.lists(REPORT, min_size=1, max_size=8))
def test_batch_api_agrees_with_one_report_api(texts: list[str]) -> None:
    frame = label_reports(texts)
    for i, text in enumerate(texts):
        row = frame.iloc[i].tolist()
        one = label_text(text)
        assert all(a == b or (math.isnan(a) and math.isnan(b)) for a, b in zip(row, one, strict=True))


ADVERSARIAL = {
    "capital then spaces": lambda n: "A" + " " * (n - 1),
    "capitals then tabs and a colon": lambda n: "A" + "\t" * (n - 2) + ":",
    "capital words, no colon": lambda n: ("ABC " * n)[:n],
    "header characters": lambda n: ("A(/,&_-" * n)[:n],
    "glued headers": lambda n: ("FINDINGS:x " * n)[:n],
    "newlines": lambda n: "\n" * n,
    "negated comma list": lambda n: ("no effusion, " * n)[:n],
    "comma runs": lambda n: ("no" + "," * 50 + " ") * (n // 53),
    "triggers without spaces": lambda n: ("no." * n)[:n],
    "one long word": lambda n: "no " + "a" * n,
    "slashes": lambda n: ("a/" * n)[:n],
    "empty sentences": lambda n: (" ." * n)[: n - 1] + "x",
    "stable organ words": lambda n: ("stable heart " * n)[:n],
    "report-like": lambda n: (
        "No pleural effusion, pneumothorax or edema. The heart is normal in size. Possible atelectasis "
        "versus pneumonia. " * n
    )[:n],
}
_SIZE = 1 << 17
_SECONDS_PER_CHAR = 50e-6  # real reports run at well under 10 µs per character


@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_adversarial_text_is_linear_time(name: str) -> None:
    text = ADVERSARIAL[name](_SIZE)
    for parse in (extract_sections, label_text):
        start = time.perf_counter()
        parse(text)
        elapsed = time.perf_counter() - start
        assert elapsed < 1.0 + _SECONDS_PER_CHAR * len(text), f"{parse.__name__} on {name}: {elapsed:.2f}s"
