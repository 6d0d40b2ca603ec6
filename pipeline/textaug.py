"""Text augmentation for a missing report section.

MedProbCLIP trains on two text sections per study; when a report has only one, the second is made from the
first by shuffling its sentences and dropping a few words. Negation cues are never dropped: "no pneumothorax"
losing its "no" would invert the label the text carries.
"""

from __future__ import annotations

import random
import re

NEGATION_CUES = frozenset(
    {
        "no",
        "not",
        "without",
        "none",
        "neither",
        "nor",
        "never",
        "negative",
        "absent",
        "absence",
        "cannot",
        "can't",
        "free",
        "excluded",
        "exclude",
        "resolved",
        "unremarkable",
        "normal",
    }
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"[a-z']+")


def split_sentences(text: str) -> list[str]:
    return [s for s in (p.strip() for p in _SENTENCE_END.split(text.strip())) if s]


def is_negation(token: str) -> bool:
    return any(w in NEGATION_CUES for w in _WORD.findall(token.lower())) or token.lower().endswith("n't")


def drop_words(sentence: str, rng: random.Random, p: float) -> str:
    """Drop each non-negation word with probability p, keeping at least one word."""
    words = sentence.split()
    kept = [w for w in words if is_negation(w) or rng.random() >= p]
    return " ".join(kept or words[:1])


def augment_text(text: str, rng: random.Random, word_dropout: float = 0.1, shuffle: bool = True) -> str:
    """A perturbed copy of `text`: sentences shuffled, a few (never negation) words dropped."""
    sentences = split_sentences(text)
    if shuffle and len(sentences) > 1:
        rng.shuffle(sentences)
    if word_dropout > 0:
        sentences = [drop_words(s, rng, word_dropout) for s in sentences]
    return " ".join(sentences)
