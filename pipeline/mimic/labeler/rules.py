"""Negation and uncertainty triggers with scope, over cleaned report text.

NegBio decides negation on a dependency graph; without a parser we approximate each graph pattern by a
trigger phrase and a *scope*: the words it governs, ending at a terminator (sentence end, `;`, "but",
"however", "which", "there is" …) or a word cap. A comma ends a scope too, unless the clause goes on as a
list ("no effusion, pneumothorax, or edema"; "no focal consolidation, pleural effusion, pneumothorax";
"heart, mediastinum and hila are normal"). "with" ends the scopes of "no" and "normal" only ("no
cardiomegaly with small effusions"), not those of hedges ("may be compatible with infection").

Every trigger belongs to one family, checked in CheXpert's order: pre-negation uncertainty, negation,
post-negation uncertainty. All triggers form one alternation, earlier families first, so where two
could start at the same word the earlier family wins ("cannot exclude" is not read as a negation).
A fourth family, "stable / unchanged / similar", is uncertainty for heart, silhouette, contour, size and
mediastinum mentions only (`SHAPE_WORDS`), as in CheXpert's post-negation patterns.

Scopes are found in time linear in the text: word caps look at most `_MAX_WORD` characters per word and
list checks never look past a scope's cap.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from typing import NamedTuple

from pipeline.mimic.labeler.trie import trie_pattern

PRE, NEG, POST, POST_SHAPE = 0, 1, 2, 3
FAMILIES = ("pre_negation_uncertainty", "negation", "post_negation_uncertainty", "post_negation_shape")
# CheXpert limits "stable / unchanged / similar / no change" to these head words (its
# post_negation_uncertainty patterns): "stable cardiac silhouette" is uncertain, "stable cardiomegaly" is not.
SHAPE_WORDS = re.compile(
    r"\b(?:cardiomediastin\w*|cardio-mediastinal|pericardial|mediastin\w*|contours?|configuration|"
    r"silhouettes?|size|heart|shadow)\b"
)


class Trigger(NamedTuple):
    family: int
    pattern: str
    forward: int = 0  # word cap of the scope after the trigger (0: no forward scope)
    backward: int = 0  # word cap of the scope before the trigger (0: no backward scope)
    lists: bool = True  # whether a comma followed/preceded by a list keeps the scope open
    clause: bool = False  # whether "with" also ends the scope ("no cardiomegaly with small effusions")


_EXCLUDE = r"(?:entirely |completely |definitely |definitively |totally |fully |confidently |reliably )?"
_CHANGE = r"(?:(?:significant|interval|appreciable|definite|substantial|major|other|radiographic) )*change"
_DEGREE = r"(?:(?:significantly|substantially|markedly|appreciably|grossly|particularly) )?"
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
    Trigger(PRE, r"(?:difficult|hard|impossible) to (?:be )?" + _EXCLUDE + r"(?:exclude|rule out)", 12, 12),
    Trigger(PRE, r"no new", 10),
    # negation
    Trigger(NEG, r"no(?! new\b| longer\b| " + _CHANGE + r"\b)", 16, clause=True),
    Trigger(
        NEG,
        r"(?:without|absence of|negative for|free of|clear of|resolution of|removal of|history of|"
        r"rather than|neither|nor|clearing of|disappearance of|(?:to )?rule out|to exclude)",
        12,
    ),
    Trigger(NEG, r"(?:no longer|not) " + _DEGREE + _NOT_SEEN, 0, 10),
    Trigger(
        NEG,
        r"(?:has |have )?(?:now |since |completely |nearly |essentially )?(?:resolved|cleared|removed)",
        4,
        10,
    ),
    Trigger(NEG, r"(?:absent|midline)", 0, 6),
    Trigger(
        NEG,
        r"(?:(?:within|at|near) (?:the )?(?:upper |high )?limits? of|upper limits? of|top|top-|high|"
        r"within) ?normal(?: limits)?",
        8,
        16,
        clause=True,
    ),
    Trigger(
        NEG,
        r"(?:normal|unremarkable)(?! (?:position|location|course|placement|caliber)\b)",
        8,
        14,
        clause=True,
    ),
    # post-negation uncertainty
    Trigger(POST, r"no " + _CHANGE + r" (?:in|of)", 8),
    Trigger(POST_SHAPE, r"(?:stable|unchanged|grossly unchanged|not changed|similar)", 7, 10),
    Trigger(POST, r"(?:if any|if present)", 0, 10),
    Trigger(
        POST,
        r"not (?:well |clearly |definitely |convincingly |optimally )"
        r"(?:seen|visuali[sz]ed|evaluated|assessed|identified|demonstrated)",
        0,
        10,
    ),
    Trigger(POST, r"(?:poorly|incompletely|suboptimally|not) (?:evaluated|visuali[sz]ed|assessed)", 0, 10),
    Trigger(
        POST, r"(?:suspected|questionable|question|possible|equivocal|indeterminate|less likely)", 8, 6, False
    ),
    Trigger(
        POST,
        r"(?:possibly|probabl[ey]|presum(?:ed|ably|ptive)|questionably|question of|suspect|"
        r"suspicious (?:for|of)|suspicion (?:for|of)|concern(?:ing)? (?:for|of)|worrisome (?:for|of)|"
        r"may|might|could|consider(?:ed)?|favou?r(?:ed|s)?|suggestion of|"
        r"correlat(?:e|ion) (?:clinically )?(?:for|with)|secondary to)",
        8,
    ),
    Trigger(
        POST,
        r"differential (?:diagnos[ie]s |considerations? )?(?:includes?|including|would include|of)|"
        r"differential (?:considerations?|diagnos[ie]s)",
        24,
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
    "and (?:the|there|a|an)", "with",
)  # fmt: skip
_SOFT_TERMINATORS = frozenset({"with"})  # end only the scopes of triggers marked `clause`
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


_MAX_WORD = 64  # a "word" longer than this counts as several, so a scope never scans unbounded text


def _forward_cap(text: str, start: int, words: int) -> int:
    """End of the `words`-th word after `start`; looks at most `_MAX_WORD` characters per word."""
    pos = start
    for _ in range(words + 1):
        limit = min(pos + 1 + _MAX_WORD, len(text))
        nxt = text.find(" ", pos + 1, limit)
        if nxt < 0:
            if limit >= len(text):
                return len(text)
            nxt = limit
        pos = nxt
    return pos


def _backward_cap(text: str, end: int, words: int) -> int:
    """Start of the `words`-th word before `end`; looks at most `_MAX_WORD` characters per word."""
    pos = end
    for _ in range(words + 1):
        if pos <= 1:
            return 0
        low = max(pos - 1 - _MAX_WORD, 0)
        prev = text.rfind(" ", low, pos - 1)
        if prev < 0:
            if low <= 0:
                return 0
            prev = low
        pos = prev
    return pos + 1


# A comma ends a scope unless what follows reads as one more item of a list: it holds "or"/"nor"
# before the clause ends ("no effusion, pneumothorax, or edema"), or it is a short bare noun phrase
# ("no focal consolidation, pleural effusion, pneumothorax"). A verb, a hedge or a size word starts a
# new statement ("no effusion, small pneumothorax").
_LIST_ITEM_WORDS = 6
_NEW_CLAUSE = re.compile(
    r"\b(?:is|are|was|were|be|been|has|have|had|appears?|remains?|seen|noted|present|identified|"
    r"there|this|these|it|likely|consistent|may|might|could|suggest\w*|represent\w*|compatible|"
    r"probabl[ey]|possibl[ey]|again|persist\w*|increas\w*|decreas\w*|improv\w*|worse\w*|new|"
    r"small|large|moderate|mild|minimal|tiny|trace|severe|mildly|moderately|severely|slight|slightly)\b"
)


class Terminators:
    """Terminator positions of one text, for bisecting scope limits."""

    __slots__ = ("comma", "ends", "soft", "starts", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        spans = [(m.start(), m.end()) for m in TERMINATOR_RE.finditer(text)]
        self.starts = [s for s, _ in spans]
        self.ends = [e for _, e in spans]
        self.comma = [text[s] == "," for s, _ in spans]
        self.soft = [text[s:e] in _SOFT_TERMINATORS for s, e in spans]

    def _list_continues(self, i: int, cap: int) -> bool:
        """Whether the clause after comma `i` (up to the next terminator or `cap`) is a list item."""
        n = len(self.starts)
        j = i + 1
        while j < n and (self.comma[j] or self.soft[j]) and self.starts[j] < cap:
            j += 1
        clause_end = min(self.starts[j] if j < n else len(self.text), cap)
        if _LIST_AFTER.search(self.text, self.ends[i], clause_end):
            return True
        item_end = min(self.starts[i + 1] if i + 1 < n else len(self.text), cap)
        item = self.text[self.ends[i] : item_end]
        return item.count(" ") <= _LIST_ITEM_WORDS and _NEW_CLAUSE.search(item) is None

    def forward_end(self, start: int, cap: int, lists: bool, clause: bool = False) -> int:
        i = bisect_left(self.starts, start)
        n = len(self.starts)
        while i < n and self.starts[i] < cap:
            if self.soft[i] and not clause:
                i += 1
                continue
            if not (lists and self.comma[i] and self._list_continues(i, cap)):
                return self.starts[i]
            i += 1
        return cap

    def backward_start(self, end: int, cap: int, lists: bool, clause: bool = False) -> int:
        i = bisect_right(self.ends, end) - 1
        while i >= 0 and self.ends[i] > cap:
            if self.soft[i] and not clause:
                i -= 1
                continue
            if not self.comma[i]:
                return self.ends[i]
            between = self.text[self.ends[i] : end]
            if not lists or not (between.strip() == "" or _LIST_BEFORE.search(between)):
                return self.ends[i]
            i -= 1
        return cap


Scopes = tuple[list[tuple[int, int]], list[tuple[int, int]], list[tuple[int, int]], list[tuple[int, int]]]


def scopes(text: str) -> Scopes:
    """Character intervals [start, end) governed by each trigger family (pre, neg, post, post-shape)."""
    found: Scopes = ([], [], [], [])
    terms: Terminators | None = None
    for m in TRIGGER_RE.finditer(text):
        trig = _BY_GROUP[m.lastgroup]  # type: ignore[index]
        if terms is None:
            terms = Terminators(text)
        if trig.forward:
            cap = _forward_cap(text, m.end(), trig.forward)
            found[trig.family].append((m.end(), terms.forward_end(m.end(), cap, trig.lists, trig.clause)))
        if trig.backward:
            cap = _backward_cap(text, m.start(), trig.backward)
            start = terms.backward_start(m.start(), cap, trig.lists, trig.clause)
            found[trig.family].append((start, m.start()))
    return found
