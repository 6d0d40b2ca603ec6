"""Tagged sentences: text plus the (observation, certainty) of every mention, as CheXpert would read it.

`sent` is memoised: the phrase builders construct each candidate sentence on every call, and the set of
distinct (text, tags) combinations is small, so a cache hit replaces parsing the tags again.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple, TypeVar

from pipeline.synthetic.rng import Rng

T = TypeVar("T")

OTHER = "Other"  # CheXpert's "other abnormalities" (emphysema, scoliosis, ...): they suppress No Finding.
POS, NEG, UNC = "pos", "neg", "unc"


class Sentence(NamedTuple):
    text: str
    mentions: tuple[tuple[str, str], ...]


@functools.lru_cache(maxsize=1 << 16)
def sent(text: str, *tags: str) -> Sentence:
    """`sent("No pleural effusion.", "Pleural Effusion:neg")`."""
    pairs = tuple((t.rsplit(":", 1)[0], t.rsplit(":", 1)[1]) for t in tags)
    return Sentence(text[0].upper() + text[1:], pairs)


def pick(rng: Rng, options: Sequence[T]) -> T:
    return options[rng.integers(len(options))]
