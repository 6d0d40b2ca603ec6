"""Build one regular expression from many phrase patterns, factored as a trie of their literal prefixes.

Python's `re` tries the alternatives of a plain alternation one after another at every word start; a
few hundred phrases then cost a few hundred failed attempts per word. Sharing literal prefixes ("pleural
effusion", "pleural fluid", "pleural thickening" → `pleural (?:effusion|fluid|thickening)`) lets the
engine reject most words after one or two characters. The match set is unchanged; at one position a
longer literal continuation is tried before a shorter one.
"""

from __future__ import annotations

import re
from collections import defaultdict

_META = set("\\.^$*+?{}[]()|")


def _top_level_split(pattern: str) -> list[str]:
    parts, depth, start, i = [], 0, 0, 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            i += 2
            continue
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "|" and depth == 0:
            parts.append(pattern[start:i])
            start = i + 1
        i += 1
    parts.append(pattern[start:])
    return parts


def _leading_group(pattern: str) -> tuple[list[str], str] | None:
    """Alternatives and remainder of a leading flat `(?:a|b)` group that carries no quantifier."""
    if not pattern.startswith("(?:"):
        return None
    close = pattern.find(")")
    inner = pattern[3:close]
    if (
        close < 0
        or any(c in inner for c in "()[\\")
        or pattern[close + 1 : close + 2] in ("?", "*", "+", "{")
    ):
        return None
    return inner.split("|"), pattern[close + 1 :]


def split_literal(pattern: str) -> list[tuple[str, str]]:
    """(required literal prefix, regex remainder) pairs whose union matches what `pattern` matches."""
    out: list[tuple[str, str]] = []
    for part in _top_level_split(pattern):
        group = _leading_group(part)
        if group is not None:
            alternatives, rest = group
            for alt in alternatives:
                out.extend(split_literal(alt + rest))
            continue
        i = 0
        while i < len(part) and part[i] not in _META:
            i += 1
        if i < len(part) and part[i] in "?*+{" and i > 0:
            i -= 1
        out.append((part[:i], part[i:]))
    return out


def _escape(ch: str) -> str:
    return ch if ch.isalnum() or ch == " " else re.escape(ch)


def _build(items: list[tuple[str, str]]) -> str:
    groups: dict[str, list[tuple[str, str]]] = defaultdict(list)
    rests: set[str] = set()
    for literal, rest in items:
        if literal:
            groups[literal[0]].append((literal[1:], rest))
        else:
            rests.add(rest)
    branches = [_escape(ch) + _build(groups[ch]) for ch in sorted(groups)]
    branches += sorted(rests, key=lambda r: (-len(r), r))
    if len(branches) == 1 and not groups:
        return f"(?:{branches[0]})" if branches[0] else ""
    if len(branches) == 1:
        return branches[0]
    return "(?:" + "|".join(branches) + ")"


def trie_pattern(patterns: tuple[str, ...] | list[str]) -> str:
    """One regex (no anchors or boundaries) matching any of `patterns`."""
    return _build([pair for p in patterns for pair in split_literal(p)])
