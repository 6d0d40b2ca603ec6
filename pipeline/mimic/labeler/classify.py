"""Find mentions in a cleaned report and classify each one: positive, negative or uncertain."""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from typing import NamedTuple

from pipeline.mimic.labeler.rules import NEG, POST, POST_SHAPE, PRE, SHAPE_WORDS, clean_text, scopes
from pipeline.mimic.labeler.trie import split_literal
from pipeline.mimic.labeler.vocab import (
    HEART_FAILURE,
    INHERENTLY_UNCERTAIN_RE,
    MENTIONS,
    ORGAN_ONLY,
    SIZE_WORDS,
    alternation,
    compile_vocabulary,
)

POSITIVE, NEGATIVE, UNCERTAIN = 1.0, 0.0, -1.0
VOCABULARY = compile_vocabulary()
ANY_MENTION = alternation(tuple(p for phrases in MENTIONS.values() for p in phrases))


def _first_chars(phrases: tuple[str, ...]) -> set[str] | None:
    """Characters a mention can start with; None when a phrase starts with a pattern, not a letter."""
    literals = [literal for p in phrases for literal, _ in split_literal(p)]
    return None if any(not lit for lit in literals) else {lit[0] for lit in literals}


_FIRST = {obs: _first_chars(MENTIONS[obs]) for obs, _, _ in VOCABULARY}
_ANY_START = tuple((obs, rx) for obs, rx, _ in VOCABULARY)
_BY_FIRST_CHAR = {
    ch: tuple((obs, rx) for obs, rx, _ in VOCABULARY if _FIRST[obs] is None or ch in _FIRST[obs])
    for ch in "abcdefghijklmnopqrstuvwxyz0123456789"
}


class Mention(NamedTuple):
    observation: str
    start: int
    end: int
    text: str
    label: float


class _Cover:
    """Union of scope intervals, merged and sorted: a lookup is one bisect, so long reports stay linear."""

    __slots__ = ("ends", "starts")

    def __init__(self, intervals: list[tuple[int, int]]) -> None:
        merged: list[list[int]] = []
        for start, end in sorted(intervals):
            if end <= start:
                continue
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        self.starts = [s for s, _ in merged]
        self.ends = [e for _, e in merged]

    def __contains__(self, pos: int) -> bool:
        i = bisect_right(self.starts, pos) - 1
        return i >= 0 and pos < self.ends[i]


def _outside(hits: list[tuple[int, int, str]], blocked: list[tuple[int, int]]) -> list[tuple[int, int, str]]:
    """Hits overlapping no blocked span; `blocked` comes from one finditer, so it is sorted and disjoint."""
    starts = [s for s, _ in blocked]
    kept = []
    for hit in hits:
        i = bisect_left(starts, hit[1]) - 1
        if i < 0 or blocked[i][1] <= hit[0]:
            kept.append(hit)
    return kept


def find_mentions(text: str) -> list[tuple[str, int, int, str]]:
    """(observation, start, end, text) of every mention not overlapping an unmention, in vocabulary order.

    One scan with the union of all phrases finds where mentions start; only there is each observation's
    own regex tried, instead of one scan of the whole text per observation.
    """
    hits: dict[str, list[tuple[int, int, str]]] = {}
    for candidate in ANY_MENTION.finditer(text):
        start = candidate.start()
        for observation, mention_re in _BY_FIRST_CHAR.get(text[start], _ANY_START):
            m = mention_re.match(text, start)
            if m is not None:
                hits.setdefault(observation, []).append((start, m.end(), m.group()))
    found = []
    for observation, _, unmention_re in VOCABULARY:
        spans = hits.get(observation)
        if not spans:
            continue
        if unmention_re is not None:
            blocked = [m.span() for m in unmention_re.finditer(text)]
            if blocked:
                spans = _outside(spans, blocked)
        found.extend((observation, s, e, t) for s, e, t in spans)
    return found


_SENTENCE_END = re.compile(r"[.!?;](?= |$)")
_SENTENCE_REACH = 200  # characters each side: bounds the search in text without sentence ends


def _sentence_has(text: str, ends: list[int], start: int, end: int, words: re.Pattern[str]) -> bool:
    """Whether the sentence around [start, end) holds `words` outside the mention itself."""
    i = bisect_left(ends, start)
    lo = max(ends[i - 1] + 1 if i > 0 else 0, start - _SENTENCE_REACH)
    hi = min(ends[i] if i < len(ends) else len(text), end + _SENTENCE_REACH)
    return words.search(text, lo, start) is not None or words.search(text, end, hi) is not None


def classify(text: str, cleaned: bool = False) -> list[Mention]:
    """Every mention with its label; first rule family that covers the mention wins."""
    if not cleaned:
        text = clean_text(text)
    hits = find_mentions(text)
    if not hits:
        return []
    pre, neg, post, shape = (_Cover(intervals) for intervals in scopes(text))
    sentence_ends: list[int] | None = None
    out = []
    for observation, start, end, mention in hits:
        if start in pre:
            label = UNCERTAIN
        elif start in neg:
            label = NEGATIVE
        elif (
            start in post
            or INHERENTLY_UNCERTAIN_RE.fullmatch(mention)
            or (start in shape and SHAPE_WORDS.search(mention))
        ):
            label = UNCERTAIN
        else:
            label = POSITIVE
            organ = ORGAN_ONLY.get(observation)
            if organ is not None and organ.fullmatch(mention):
                if sentence_ends is None:
                    sentence_ends = [m.start() for m in _SENTENCE_END.finditer(text)]
                if not _sentence_has(text, sentence_ends, start, end, SIZE_WORDS):
                    continue
        out.append(Mention(observation, start, end, mention, label))
    return out


def is_heart_failure(mention: Mention) -> bool:
    return mention.label != NEGATIVE and HEART_FAILURE.search(mention.text) is not None


__all__ = [
    "NEG",
    "NEGATIVE",
    "POSITIVE",
    "POST",
    "POST_SHAPE",
    "PRE",
    "UNCERTAIN",
    "Mention",
    "classify",
    "find_mentions",
]
