"""A scalar random generator with the subset of numpy's `Generator` API the text path uses.

Report and metadata generation makes ~100 scalar draws per study; numpy pays ~1–30 µs per scalar call
and ~45 µs to seed a generator, Mersenne Twister ~0.1 µs and ~8 µs. Streams are keyed by integer
tuples (seed, stream, id...) so every study's draws are independent of worker count and order. Python's
`random.Random` is stable across platforms and versions for integer seeds, `random()`, `getrandbits()`,
`shuffle()` and the Gaussian/exponential draws used here, so output stays byte-identical.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")
_MASK = (1 << 64) - 1


class Rng(random.Random):
    """`random.Random` keyed by integer tuples, with numpy-style `integers`/`choice`/`normal`/…."""

    @classmethod
    def of(cls, *keys: int) -> Rng:
        """Generator for a key tuple; keys of different lengths never share a seed."""
        seed = len(keys)
        for key in keys:
            seed = (seed << 64) | (int(key) & _MASK)
        return cls(seed)

    def integers(self, low: int, high: int | None = None) -> int:
        """Uniform int in [low, high) (or [0, low) with one argument), like `Generator.integers`."""
        if high is None:
            low, high = 0, low
        return low + int(self.random() * (high - low))  # bias < 2^-40 for the small ranges used here

    def choice(self, options: Sequence[T], p: Sequence[float] | None = None) -> T:  # type: ignore[override]
        """One element, uniformly or with probabilities `p` (need not be normalised)."""
        if p is None:
            return options[int(self.random() * len(options))]
        x = self.random() * sum(p)
        for option, weight in zip(options, p, strict=True):
            x -= weight
            if x < 0:
                return option
        return options[-1]

    def sample_weighted(self, n_options: int, k: int, weights: Sequence[float]) -> list[int]:
        """`k` distinct indices drawn one at a time with probability ∝ the remaining weights."""
        left = list(range(n_options))
        out = []
        for _ in range(k):
            i = self.choice(range(len(left)), [weights[j] for j in left])
            out.append(left.pop(i))
        return out

    def normal(self, loc: float = 0.0, scale: float = 1.0) -> float:
        return self.normalvariate(loc, scale)

    def exponential(self, scale: float = 1.0) -> float:
        return self.expovariate(1.0 / scale)

    def permutation(self, n: int) -> list[int]:
        order = list(range(n))
        self.shuffle(order)
        return order
