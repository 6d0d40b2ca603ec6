from __future__ import annotations

import pytest

from pipeline.mimic.sections import decode_report, extract_sections, normalize_section_name

BANNER = "                                 FINAL REPORT\n"


def report(*lines: str) -> str:
    return BANNER + "\n".join(" " + line if line else " " for line in lines) + "\n"


MODERN = report(
    "EXAMINATION:  CHEST (PA AND LAT)",
    "",
    "INDICATION:  ___F with cough  // ? pneumonia",
    "",
    "TECHNIQUE:  Chest PA and lateral",
    "",
    "COMPARISON:  ___",
    "",
    "FINDINGS: ",
    "",
    "Heart size is normal.  The mediastinal and hilar contours are normal.  No",
    "pleural effusion or pneumothorax.",
    "",
    "IMPRESSION: ",
    "",
    "No acute cardiopulmonary process.",
)


def test_modern_template():
    s = extract_sections(MODERN)
    assert s.findings == (
        "Heart size is normal. The mediastinal and hilar contours are normal. No pleural effusion or pneumothorax."
    )
    assert s.impression == "No acute cardiopulmonary process."
    assert s.comparison == "___"
    assert s.indication == "___F with cough // ? pneumonia"
    assert s.last_paragraph is None
    assert s.findings_how == "alias" and s.impression_header == "IMPRESSION"


def test_old_template_view_descriptor_is_findings():
    text = report(
        "HISTORY:  Shortness of breath.",
        "",
        "PA AND LATERAL VIEWS OF THE CHEST:  The lungs are clear.  Heart size is",
        "top normal.",
        "",
        "IMPRESSION:  No pneumonia.",
    )
    s = extract_sections(text)
    assert s.findings == "The lungs are clear. Heart size is top normal."
    assert s.findings_how == "view"
    assert s.indication == "Shortness of breath."
    assert s.impression == "No pneumonia."


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("IMPRESSON", "impression"),
        ("FINDNGS", "findings"),
        ("FINDING", "findings"),
        ("CONCLUSION", "impression"),
        ("FINDINGS AND IMPRESSION", "impression"),
        ("COMPARISONS", "comparison"),
        ("CLINICAL HISTORY", "history"),
        ("REASON FOR EXAM", "indication"),
        ("RECOMMENDATION(S)", "recommendation"),
        ("AP CHEST, ___", "findings"),
        ("PORTABLE CHEST", "findings"),
        ("CHEST, TWO VIEWS", "findings"),
        ("WET READ", "wet read"),
        ("NOTIFICATION", "notification"),
        ("LUNGS", "organ"),
        ("PERTINENT RESULTS", "pertinent results"),
    ],
)
def test_header_normalisation(header, name):
    assert normalize_section_name(header)[0] == name


def test_deidentified_view_header():
    s = extract_sections(report("AP CHEST, ___:", "", "Left PICC tip at the cavoatrial junction."))
    assert s.findings == "Left PICC tip at the cavoatrial junction."
    assert s.impression is None


def test_last_section_wins_and_empty_dropped():
    text = report(
        "FINDINGS:  First findings.",
        "",
        "IMPRESSION:  First impression.",
        "",
        "FINDINGS:  Second findings.",
        "",
        "IMPRESSION:",
        " ",
    )
    s = extract_sections(text)
    assert s.findings == "Second findings."
    assert s.impression == "First impression."


def test_merged_findings_and_impression():
    s = extract_sections(report("FINDINGS AND IMPRESSION:  Lungs are clear. No effusion."))
    assert s.findings is None
    assert s.impression == "Lungs are clear. No effusion."


def test_wet_read_addendum_and_notification_are_not_sections_we_keep():
    text = (
        " WET READ: ___ ___ 8:57 PM\n  No acute process.\n"
        " ______________________________________________________________________________\n"
        + report(
            "FINDINGS:  Small left effusion.",
            "",
            "IMPRESSION:  Small left pleural effusion.",
            "",
            "NOTIFICATION:  Findings discussed with Dr. ___ at 10:30 on ___.",
        )
    )
    s = extract_sections(text)
    assert s.findings == "Small left effusion."
    assert s.impression == "Small left pleural effusion."


def test_addendum_on_top_uses_original_report():
    text = (
        "                                 FINAL ADDENDUM\n"
        " ADDENDUM:  Correction: the tube terminates 3 cm above the carina.\n"
        " \n"
        " ______________________________________________________________________________\n"
        + report("FINDINGS:  ET tube in place.", "", "IMPRESSION:  Appropriate ET tube.")
    )
    s = extract_sections(text)
    assert s.findings == "ET tube in place."
    assert s.impression == "Appropriate ET tube."


def test_organ_subheaders_stay_in_findings():
    text = report(
        "FINDINGS:",
        "LUNGS:  Clear.",
        "HEART:  Mildly enlarged.",
        "PLEURA:  No effusion.",
        "",
        "IMPRESSION:  Mild cardiomegaly.",
    )
    s = extract_sections(text)
    assert s.findings == "LUNGS: Clear. HEART: Mildly enlarged. PLEURA: No effusion."
    assert s.impression == "Mild cardiomegaly."


def test_organ_subheaders_without_findings_header_are_the_findings():
    text = report(
        "INDICATION:  Chest pain.",
        "",
        "LUNGS:  Mild bibasilar atelectasis.",
        "CARDIOVASCULAR:  The heart is enlarged.",
        "BONES:  The osseous structures are unremarkable.",
    )
    s = extract_sections(text)
    assert s.findings == (
        "LUNGS: Mild bibasilar atelectasis. CARDIOVASCULAR: The heart is enlarged. "
        "BONES: The osseous structures are unremarkable."
    )
    assert s.findings_header == "LUNGS" and s.findings_how == "organ"
    assert s.last_paragraph is None and s.indication == "Chest pain."
    assert s.n_sections == 2
    after = extract_sections(report("FINDINGS:  Clear.", "IMPRESSION:  Normal.", "LUNGS:  Clear."))
    assert after.findings == "Clear." and after.impression == "Normal. LUNGS: Clear."


@pytest.mark.parametrize(
    "header",
    ["findings:", "Findings:", "FINDINGS:", "FINDINGS:\t", "  Findings :", "FINDINGS:", "findings: "],
)
def test_headers_in_any_case_and_glued_to_their_text(header):
    s = extract_sections(f"{header}No effusion.\nimpression:No acute process.\n")
    assert s.findings == "No effusion."
    assert s.impression == "No acute process."
    assert s.findings_how == "alias"


def test_lower_case_lines_with_a_colon_are_not_headers_unless_known():
    text = report("FINDINGS:  Findings as follows: small effusion.", "note: compared with prior.")
    s = extract_sections(text)
    assert s.findings == "Findings as follows: small effusion. note: compared with prior."
    assert s.n_sections == 1
    glued = extract_sections("NOTE:see below\nFINDINGS: Clear.")
    assert glued.n_sections == 1 and glued.findings == "Clear."


def test_no_header_report_falls_back_to_last_paragraph():
    text = report("", "The lungs are clear.  No effusion.", "", "Heart size normal.")
    s = extract_sections(text)
    assert s.findings is None and s.impression is None
    assert s.last_paragraph == "The lungs are clear. No effusion. Heart size normal."


def test_neither_section_uses_text_after_first_paragraph_of_last_section():
    text = report("INDICATION:  Cough.", "", "COMPARISON:  None.", "", "Lungs are clear.")
    s = extract_sections(text)
    assert s.findings is None and s.impression is None
    assert s.last_paragraph == "Lungs are clear."


def test_crlf_and_times_in_text():
    text = report("FINDINGS:  Tube placed at 10:30 today.", "", "IMPRESSION:  OK.").replace("\n", "\r\n")
    s = extract_sections(text)
    assert s.findings == "Tube placed at 10:30 today."
    assert s.impression == "OK."


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"", "empty"),
        (b"   \n \n  ", "empty"),
        (b"\x00\x01\x02binary", "binary"),
        (MODERN.encode(), "ok"),
        ("FINDINGS:  Temp 38.5\u00b0C.".encode("latin-1"), "decode_errors"),
        (b"\xef\xbb\xbf" + MODERN.encode(), "ok"),
    ],
)
def test_decode_report(data, status):
    text, got, errors = decode_report(data)
    assert got == status
    if status == "decode_errors":
        assert errors == 1 and "\ufffd" in text


def test_non_utf8_report_still_sections():
    text, status, _ = decode_report(
        report("FINDINGS:  Temp 38\xb0.", "", "IMPRESSION:  Fine.").encode("latin-1")
    )
    assert status == "decode_errors"
    s = extract_sections(text)
    assert s.impression == "Fine."
    assert s.findings == "Temp 38\ufffd."
