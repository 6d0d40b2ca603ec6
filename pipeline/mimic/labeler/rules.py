"""Negation and uncertainty triggers with scope, over cleaned report text.

NegBio decides negation on a dependency graph; without a parser we approximate each graph pattern by a
trigger phrase and a *scope*: the words it governs, ending at a terminator (sentence end, `;`, "but",
"however", "which", "there is" …) or a word cap. A comma ends a scope too, unless the clause goes on as a
list ("no effusion, pneumothorax, or edema"; "heart, mediastinum and hila are normal").

Every trigger belongs to one family, checked in CheXpert's order: pre-negation uncertainty, negation,
post-negation uncertainty. All triggers form one alternation, earlier families first, so where two
could start at the same word the earlier family wins ("cannot exclude" is not read as a negation).
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from typing import NamedTuple

from pipeline.mimic.labeler.trie import trie_pattern

PRE, NEG, POST = 0, 1, 2
FAMILIES = ("pre_negation_uncertainty", "negation", "post_negation_uncertainty")


class Trigger(NamedTuple):
    family: int
    pattern: str
    forward: int = 0  # word cap of the scope after the trigger (0: no forward scope)
    backward: int = 0  # word cap of the scope before the trigger (0: no backward scope)
    lists: bool = True  # whether a comma followed/preceded by a list keeps the scope open


_EXCLUDE = r"(?:entirely |completely |definitely |definitively |totally |fully |confidently |reliably )?"
_CHANGE = r"(?:(?:significant|interval|appreciable|definite|substantial|major|other|radiographic) )*change"
_NOT_SEEN = (
    r"(?:seen|identified|present|visuali[sz]ed|visible|demonstrated|detected|evident|apparent|noted|"
    r"appreciated|enlarged|observed|appreciable|definitely seen)"
)

TRIGGERS: tuple[Trigger, ...] = (
    # pre-negation uncertainty: a negation word that does not negate
    Trigger(
        PRE,
        r"(?:cannot|can not|can't|could not|unable to|not able to) (?:be )?"
        + _EXCLUDE
        + r"(?:exclude|rule out)",
        12,
    ),
    Trigger(
        PRE,
        r"(?:cannot|can not|can't|could not|may not|not) (?:be )?" + _EXCLUDE + r"(?:excluded|ruled out)",
        0,
        12,
    ),
    Trigger(PRE, r"no evidence to (?:rule out|exclude)", 12),
    Trigger(PRE, r"no new", 10),
    # negation
    Trigger(NEG, r"no(?! new\b| longer\b| " + _CHANGE + r"\b)", 12),
    Trigger(
        NEG,
        r"(?:without|absence of|negative for|free of|clear of|resolution of|removal of|history of|"
        r"rather than|neither|nor|clearing of|disappearance of|(?:to )?rule out|to exclude)",
        12,
    ),
    Trigger(NEG, r"(?:no longer|not) " + _NOT_SEEN, 0, 10),
    Trigger(
        NEG,
        r"(?:has |have )?(?:now |since |completely |nearly |essentially )?(?:resolved|cleared|removed)",
        4,
        10,
    ),
    Trigger(NEG, r"(?:absent|midline)", 0, 6),
    Trigger(NEG, r"(?:within|at the upper limits? of|upper limits? of|top|top-) ?normal(?: limits)?", 0, 10),
    Trigger(NEG, r"(?:normal|unremarkable)(?! (?:position|location|course|placement|caliber)\b)", 4, 10),
    # post-negation uncertainty
    Trigger(POST, r"no " + _CHANGE + r" (?:in|of)", 8),
    Trigger(POST, r"(?:stable|unchanged|grossly unchanged|not changed|similar)", 7, 10),
    Trigger(POST, r"(?:if any|if present)", 0, 10),
    Trigger(
        POST,
        r"not (?:well |clearly |definitely |convincingly |optimally )"
        r"(?:seen|visuali[sz]ed|evaluated|assessed|identified|demonstrated)",
        0,
        10,
    ),
    Trigger(POST, r"(?:poorly|incompletely|suboptimally|not) (?:evaluated|visuali[sz]ed|assessed)", 0, 10),
    Trigger(POST, r"(?:suspected|questionable|possible|equivocal|indeterminate|less likely)", 8, 6, False),
    Trigger(
        POST,
        r"(?:possibly|probabl[ey]|presum(?:ed|ably|ptive)|questionably|question of|suspect|"
        r"suspicious (?:for|of)|suspicion (?:for|of)|concern(?:ing)? (?:for|of)|worrisome (?:for|of)|"
        r"may|might|could|differential (?:diagnosis )?(?:includes?|including|would include|of)|"
        r"consider(?:ed)?|favou?r(?:ed|s)?|suggestion of|correlat(?:e|ion) (?:clinically )?(?:for|with)|"
        r"secondary to)",
        8,
    ),
    Trigger(POST, r"(?:versus|vs\.?|or)", 4, 4, False),
    Trigger(POST, r"(?:borderline|obscur(?:ed|es|ing))", 3, 4, False),
)

TRIGGER_RE = re.compile(
    r"\b(?:"
    + "|".join(f"(?P<t{i}>{trie_pattern([t.pattern])})" for i, t in enumerate(TRIGGERS))
    + r")(?![a-z0-9])"
)
_BY_GROUP = {f"t{i}": t for i, t in enumerate(TRIGGERS)}

_TERMINATOR_WORDS = (
    "but", "however", "although", "though", "whereas", "while", "which", "yet", "except", "aside from",
    "apart from", "other than", "nevertheless", "there (?:is|are|was|were|has been|have been)",
    "and (?:the|there|a|an)",
)  # fmt: skip
TERMINATOR_RE = re.compile(r"[.!?](?= |$)|[;:,]|\b" + trie_pattern(_TERMINATOR_WORDS) + r"\b")
_LIST_AFTER = re.compile(r"\b(?:or|nor)\b")
_LIST_BEFORE = re.compile(r"\b(?:and|or|nor)\b")

_SLASHED = (
    (re.compile(r"\bw/o\b"), "without"),
    (re.compile(r"\br/o\b"), "rule out"),
    (re.compile(r"\bs/p\b"), "status post"),
    (re.compile(r"\bw/(?=\s|[a-z])"), "with "),
    (re.compile(r"\band/or\b"), "or"),
    (re.compile(r"(?<=[a-z])/(?=[a-z])"), " or "),
)
_PARAGRAPH = re.compile(r"\n[ \t\r]*\n")
_COMMA = re.compile(r",(?=\S)")
_EMPTY_SENTENCES = re.compile(r"(?: \.)+(?= |$)")


def clean_text(text: str) -> str:
    """Lower case, expanded slashes and shorthand, paragraph breaks as sentence ends, single spaces."""
    text = text.lower()
    if "/" in text:
        for pattern, replacement in _SLASHED:
            text = pattern.sub(replacement, text)
    if "\n" in text:
        text = _PARAGRAPH.sub(" . ", text)
    if "," in text:
        text = _COMMA.sub(", ", text)
    text = " ".join(text.split())
    if " ." in text:
        text = _EMPTY_SENTENCES.sub(".", text)
    return text.strip(" .")


def _forward_cap(text: str, start: int, words: int) -> int:
    pos = start
    for _ in range(words + 1):
        nxt = text.find(" ", pos + 1)
        if nxt < 0:
            return len(text)
        pos = nxt
    return pos


def _backward_cap(text: str, end: int, words: int) -> int:
    pos = end
    for _ in range(words + 1):
        prev = text.rfind(" ", 0, pos - 1) if pos > 1 else -1
        if prev < 0:
            return 0
        pos = prev
    return pos + 1


class Terminators:
    """Terminator positions of one text, for bisecting scope limits."""

    __slots__ = ("comma", "ends", "starts", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        spans = [(m.start(), m.end()) for m in TERMINATOR_RE.finditer(text)]
        self.starts = [s for s, _ in spans]
        self.ends = [e for _, e in spans]
        self.comma = [text[s] == "," for s, _ in spans]

    def forward_end(self, start: int, cap: int, lists: bool) -> int:
        i = bisect_left(self.starts, start)
        n = len(self.starts)
        while i < n and self.starts[i] < cap:
            if not (lists and self.comma[i]):
                return self.starts[i]
            j = i + 1
            while j < n and self.comma[j]:
                j += 1
            clause_end = min(self.starts[j] if j < n else len(self.text), cap)
            if not _LIST_AFTER.search(self.text, self.ends[i], clause_end):
                return self.starts[i]
            i += 1
        return cap

    def backward_start(self, end: int, cap: int, lists: bool) -> int:
        i = bisect_right(self.ends, end) - 1
        while i >= 0 and self.ends[i] > cap:
            if not self.comma[i]:
                return self.ends[i]
            between = self.text[self.ends[i] : end]
            if not lists or not (between.strip() == "" or _LIST_BEFORE.search(between)):
                return self.ends[i]
            i -= 1
        return cap


def scopes(text: str) -> tuple[list[tuple[int, int]], list[tuple[int, int]], list[tuple[int, int]]]:
    """Character intervals [start, end) governed by each trigger family (pre, neg, post)."""
    found: tuple[list[tuple[int, int]], ...] = ([], [], [])
    terms: Terminators | None = None
    for m in TRIGGER_RE.finditer(text):
        trig = _BY_GROUP[m.lastgroup]  # type: ignore[index]
        if terms is None:
            terms = Terminators(text)
        if trig.forward:
            cap = _forward_cap(text, m.end(), trig.forward)
            found[trig.family].append((m.end(), terms.forward_end(m.end(), cap, trig.lists)))
        if trig.backward:
            cap = _backward_cap(text, m.start(), trig.backward)
            found[trig.family].append((terms.backward_start(m.start(), cap, trig.lists), m.start()))
    return found  # type: ignore[return-value]
